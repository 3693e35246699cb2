//! Listing: status filters, newest first, keyset pagination that holds under inserts.

use super::*;

/// The status filter returns exactly the keys with that status, never deleted ones.
pub async fn list_filters_by_status(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let active = ctx.key("active").await;
    let revoked = ctx.key("revoked").await;
    let inactive1 = ctx.create(NewKey { active: false, ..ctx.new_key("inactive 1") }).await.key;
    let inactive2 = ctx.key("inactive 2").await;
    let deleted = ctx.key("deleted").await;
    let sys = Actor::system();
    ctx.service.deactivate_key(ctx.ws.id, inactive2.id, &sys).await.expect("deactivate");
    ctx.service.revoke_key(ctx.ws.id, revoked.id, &sys).await.expect("revoke");
    ctx.service.revoke_key(ctx.ws.id, deleted.id, &sys).await.expect("revoke");
    ctx.service.delete_key(ctx.ws.id, deleted.id, &sys).await.expect("delete");

    let list = |status| {
        let service = ctx.service.clone();
        let ws = ctx.ws.id;
        async move {
            let page =
                service.list_keys(ws, KeyFilter { status, ..KeyFilter::default() }).await.expect("list");
            assert!(page.next_cursor.is_none());
            let mut got = ids(&page.items);
            got.sort();
            got
        }
    };
    let sorted = |mut v: Vec<KeyId>| {
        v.sort();
        v
    };
    assert_eq!(list(Some(KeyStatus::Active)).await, vec![active.id]);
    assert_eq!(list(Some(KeyStatus::Inactive)).await, sorted(vec![inactive1.id, inactive2.id]));
    assert_eq!(list(Some(KeyStatus::Revoked)).await, vec![revoked.id]);
    assert_eq!(list(None).await, sorted(vec![active.id, revoked.id, inactive1.id, inactive2.id]));
}

/// Pages walk the keys newest first, each exactly once; cursors and limits are validated.
pub async fn list_paginates_newest_first(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(ctx.key(&format!("key {i}")).await.id);
    }
    let newest_first: Vec<KeyId> = created.iter().rev().copied().collect();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor = None;
    loop {
        let page = ctx
            .service
            .list_keys(ctx.ws.id, KeyFilter { cursor: cursor.take(), limit: Some(7), ..KeyFilter::default() })
            .await
            .expect("page");
        sizes.push(page.items.len());
        seen.extend(ids(&page.items));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(sizes, vec![7, 7, 7, 4]);
    assert_eq!(seen, newest_first);

    let default = ctx.service.list_keys(ctx.ws.id, KeyFilter::default()).await.expect("default page");
    assert_eq!(ids(&default.items), newest_first[..20].to_vec());
    assert!(default.next_cursor.is_some());
    let exact = ctx.service.list_keys(ctx.ws.id, KeyFilter { limit: Some(25), ..KeyFilter::default() }).await;
    let exact = exact.expect("exact page");
    assert_eq!(exact.items.len(), 25);
    assert_eq!(exact.next_cursor, None, "no cursor when nothing follows");
    let max = ctx.service.list_keys(ctx.ws.id, KeyFilter { limit: Some(100), ..KeyFilter::default() }).await;
    assert_eq!(max.expect("max page").items.len(), 25);

    for limit in [0, 101] {
        let r =
            ctx.service.list_keys(ctx.ws.id, KeyFilter { limit: Some(limit), ..KeyFilter::default() }).await;
        expect_err(r, ErrorCode::ValidationFailed);
    }
    for bad in ["not a cursor!", "AAAA", ""] {
        let filter = KeyFilter { cursor: Some(bad.into()), ..KeyFilter::default() };
        expect_err(ctx.service.list_keys(ctx.ws.id, filter).await, ErrorCode::ValidationFailed);
    }

    // The store's keyset: `before` is exclusive.
    let q = KeyListQuery {
        workspace_id: ctx.ws.id,
        status: None,
        now: chrono::Utc::now(),
        before: Some(created[10]),
        limit: 3,
    };
    let older = ctx.store.list_keys(&q).await.expect("list");
    assert_eq!(ids(&older), vec![created[9], created[8], created[7]]);
}

/// Keys created while a client pages never make it see a key twice or miss an older one.
pub async fn pagination_is_stable_under_concurrent_inserts(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let mut existing = Vec::new();
    for i in 0..30 {
        existing.push(ctx.key(&format!("old {i}")).await.id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let inserter = {
        let (service, ws, stop) = (ctx.service.clone(), ctx.ws.id, stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 200 {
                service.create_key(NewKey::new(ws, "new"), &Actor::system()).await.expect("create");
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let filter = KeyFilter { cursor: cursor.take(), limit: Some(4), ..KeyFilter::default() };
        let page = ctx.service.list_keys(ctx.ws.id, filter).await.expect("page");
        seen.extend(ids(&page.items));
        // Make sure keys are inserted between every two pages, whatever the scheduling.
        ctx.key("between pages").await;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    stop.store(true, Ordering::SeqCst);
    inserter.await.expect("inserter");

    let unique: HashSet<KeyId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a key was listed twice");
    for id in &existing {
        assert!(unique.contains(id), "key {id} that existed before paging was missed");
    }
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "pages must run newest first");
}

/// The status filter judges a rotated key by its grace period: once it has ended the key is
/// listed as revoked, not as active (or inactive).
pub async fn list_filter_sees_ended_grace_as_revoked(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let old = ctx.key("old").await;
    ctx.service
        .rotate_key(ctx.ws.id, old.id, Some(Duration::seconds(30)), &Actor::system())
        .await
        .expect("rotate");
    let ids = |status, now| {
        let q = KeyListQuery { workspace_id: ctx.ws.id, status: Some(status), now, before: None, limit: 100 };
        let store = ctx.store.clone();
        async move { store.list_keys(&q).await.expect("list").into_iter().map(|k| k.id).collect::<Vec<_>>() }
    };
    let now = ctx.now();
    assert!(ids(KeyStatus::Active, now).await.contains(&old.id), "in grace: active");
    assert!(!ids(KeyStatus::Revoked, now).await.contains(&old.id));
    let later = now + Duration::seconds(31);
    assert!(!ids(KeyStatus::Active, later).await.contains(&old.id), "grace over: not active");
    assert!(ids(KeyStatus::Revoked, later).await.contains(&old.id), "grace over: revoked");
    assert_eq!(ids(KeyStatus::Active, later).await.len(), 1, "only the successor");
}
