//! Key limits and credits, decided atomically under concurrency.

use super::*;

/// Concurrent creates at the limit: exactly as many succeed as the plan allows.
pub async fn concurrent_creates_at_the_key_limit(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let ws = limited_workspace(&ctx, 3).await;
    let ws_id = ws.id;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let service = ctx.service.clone();
            tokio::spawn(async move {
                service.create_key(NewKey::new(ws_id, &format!("racer {i}")), &Actor::system()).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::KeyLimitReached, "{e}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(ctx.store.count_live_keys(ws.id).await.expect("count"), 3);
    assert_eq!(ctx.all_keys(ws.id).await.len(), 3);

    // The same race straight at the store.
    let ws2 = limited_workspace(&ctx, 2).await;
    let now = ctx.now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = ctx.store.clone();
            let key = raw_key(ws2.id, now);
            let ev = raw_event(AuditAction::KeyCreated, ws2.id, key.id, now);
            tokio::spawn(async move { store.insert_key(&key, Some(2), &ev).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, StoreError::KeyLimitReached),
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(ctx.store.count_live_keys(ws2.id).await.expect("count"), 2);
}

/// The store counts keys that are neither revoked nor deleted, and a refused insert leaves nothing.
pub async fn store_key_limit_counts_only_live_keys(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let (ws, now) = (ctx.ws.id, ctx.now());
    let insert = |key: ApiKey, max: Option<u32>| {
        let store = ctx.store.clone();
        async move {
            let ev = raw_event(AuditAction::KeyCreated, key.workspace_id, key.id, now);
            let r = store.insert_key(&key, max, &ev).await;
            (r, ev)
        }
    };
    let deleted = ApiKey { deleted_at: Some(now), ..raw_key(ws, now) };
    let revoked = ApiKey { status: KeyStatus::Revoked, revoked_at: Some(now), ..raw_key(ws, now) };
    let inactive = ApiKey { status: KeyStatus::Inactive, ..raw_key(ws, now) };
    for key in [deleted, revoked, inactive] {
        insert(key, None).await.0.expect("insert");
    }
    assert_eq!(ctx.live().await, 1, "only the inactive key is live");
    insert(raw_key(ws, now), Some(2)).await.0.expect("second live key fits under 2");
    let refused = raw_key(ws, now);
    let (r, ev) = insert(refused.clone(), Some(2)).await;
    assert_eq!(r, Err(StoreError::KeyLimitReached));
    assert_eq!(ctx.store.get_key(refused.id).await.expect("get"), None);
    assert!(ctx.events(refused.id).await.iter().all(|e| e.id != ev.id), "no audit event for a refused key");
    insert(raw_key(ws, now), None).await.0.expect("no limit");
    assert_eq!(ctx.live().await, 3);
}

/// Consuming credits: unlimited keys, remaining balance, and refusals that take nothing.
pub async fn consume_credits_outcomes(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let s = &ctx.store;
    let paid = ctx.create(NewKey { credits: Some(5), ..ctx.new_key("paid") }).await.key;
    assert_eq!(s.consume_credits(paid.id, 2).await.expect("consume"), CreditOutcome::Remaining(3));
    assert_eq!(s.consume_credits(paid.id, 4).await.expect("consume"), CreditOutcome::Insufficient(3));
    assert_eq!(ctx.stored(paid.id).await.credits, Some(3), "a refusal takes nothing");
    assert_eq!(s.consume_credits(paid.id, 3).await.expect("consume"), CreditOutcome::Remaining(0));
    assert_eq!(s.consume_credits(paid.id, 1).await.expect("consume"), CreditOutcome::Insufficient(0));
    assert_eq!(ctx.stored(paid.id).await.credits, Some(0));

    let free = ctx.key("unlimited").await;
    assert_eq!(s.consume_credits(free.id, 1_000).await.expect("consume"), CreditOutcome::Unlimited);
    assert_eq!(ctx.stored(free.id).await.credits, None);
    let empty = ctx.create(NewKey { credits: Some(0), ..ctx.new_key("empty") }).await.key;
    assert_eq!(s.consume_credits(empty.id, 1).await.expect("consume"), CreditOutcome::Insufficient(0));
    assert_eq!(s.consume_credits(KeyId::new(), 1).await, Err(StoreError::NotFound));
    assert_eq!(ctx.stored(paid.id).await.version, paid.version, "credits are not a change of the record");
}

/// Concurrent consumption never overdraws: with 10 credits, exactly 10 of 20 requests pass.
pub async fn concurrent_consumption_never_goes_negative(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let key = ctx.create(NewKey { credits: Some(10), ..ctx.new_key("metered") }).await.key;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = ctx.store.clone();
            tokio::spawn(async move { store.consume_credits(key.id, 1).await })
        })
        .collect();
    let mut remaining = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task").expect("consume") {
            CreditOutcome::Remaining(n) => remaining.push(n),
            CreditOutcome::Insufficient(n) => {
                assert_eq!(n, 0);
                refused += 1;
            }
            CreditOutcome::Unlimited => panic!("the key has credits"),
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, (0..10).collect::<Vec<i64>>(), "each credit is taken exactly once");
    assert_eq!(refused, 10);
    assert_eq!(ctx.stored(key.id).await.credits, Some(0));
}
