//! Bulk inserts (imports): all or nothing, with their audit events and the key limit.

use super::*;

fn imported(ws: WorkspaceId, now: chrono::DateTime<chrono::Utc>) -> (ApiKey, AuditEvent) {
    let mut key = raw_key(ws, now);
    key.imported_at = Some(now);
    key.prefix = String::new();
    key.last4 = String::new();
    let ev = raw_event(AuditAction::KeyImported, ws, key.id, now);
    (key, ev)
}

async fn audit_of(ctx: &Fixture, key: KeyId) -> Vec<AuditEvent> {
    ctx.store
        .list_audit(&AuditQuery { key_id: Some(key), limit: 10, ..AuditQuery::default() })
        .await
        .expect("audit")
}

/// `insert_keys` stores every key with its event, or, when one row is refused (a digest that
/// exists, or that the batch holds twice), none of them and no event.
pub async fn insert_keys_is_all_or_nothing(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let (ws, now) = (ctx.ws.id, ctx.now());
    let batch: Vec<_> = (0..3).map(|_| imported(ws, now)).collect();
    ctx.store.insert_keys(&batch, None).await.expect("insert");
    for (key, ev) in &batch {
        assert_eq!(ctx.stored(key.id).await, *key);
        assert_eq!(ctx.store.find_key_by_digest(&key.hash.digest).await.expect("find").as_ref(), Some(key));
        assert_eq!(audit_of(&ctx, key.id).await, vec![ev.clone()]);
    }

    // The last row's digest is stored already.
    let mut refused: Vec<_> = (0..3).map(|_| imported(ws, now)).collect();
    refused[2].0.hash = batch[0].0.hash.clone();
    assert_eq!(ctx.store.insert_keys(&refused, None).await, Err(StoreError::Duplicate));
    // Twice in the batch.
    let mut twice: Vec<_> = (0..3).map(|_| imported(ws, now)).collect();
    twice[2].0.hash = twice[0].0.hash.clone();
    assert_eq!(ctx.store.insert_keys(&twice, None).await, Err(StoreError::Duplicate));
    for (key, _) in refused.iter().chain(&twice) {
        assert_eq!(ctx.store.get_key(key.id).await.expect("get"), None, "a refused batch left a key");
        assert!(audit_of(&ctx, key.id).await.is_empty(), "a refused batch left an event");
    }
    assert_eq!(ctx.all_keys(ws).await.len(), 3);
    assert_eq!(ctx.store.insert_keys(&[], None).await, Ok(()));
}

/// With a key limit, a batch that would exceed it stores nothing; one that fits is stored.
pub async fn insert_keys_respects_the_key_limit(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let ws = limited_workspace(&ctx, 3).await;
    let now = ctx.now();
    let one = imported(ws.id, now);
    ctx.store.insert_keys(std::slice::from_ref(&one), Some(3)).await.expect("one");
    let three: Vec<_> = (0..3).map(|_| imported(ws.id, now)).collect();
    assert_eq!(ctx.store.insert_keys(&three, Some(3)).await, Err(StoreError::KeyLimitReached));
    assert_eq!(ctx.store.count_live_keys(ws.id).await.expect("count"), 1);
    ctx.store.insert_keys(&three[..2], Some(3)).await.expect("two fit");
    assert_eq!(ctx.store.count_live_keys(ws.id).await.expect("count"), 3);
}
