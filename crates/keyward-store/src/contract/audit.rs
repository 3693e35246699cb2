//! The audit log (filters, pages, retention) and daily usage.

use super::*;

/// Audit events filter by workspace, key, action and time, and page newest first.
pub async fn audit_list_filters_and_pages(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let (ws, sys) = (ctx.ws.id, Actor::system());
    let other = ctx.service.create_workspace(NewWorkspace::live("Other"), &sys).await.expect("workspace");
    let t0 = ctx.now();
    let k1 = ctx.key("k1").await;
    ctx.clock.advance(Duration::hours(1));
    let t1 = ctx.now();
    ctx.service
        .update_key(ws, k1.id, KeyPatch { name: Some("n".into()), ..KeyPatch::default() }, &sys)
        .await
        .expect("update");
    let k2 = ctx.key("k2").await;
    ctx.clock.advance(Duration::hours(1));
    ctx.service.deactivate_key(ws, k1.id, &sys).await.expect("deactivate");
    ctx.service.create_key(NewKey::new(other.id, "elsewhere"), &sys).await.expect("create");

    let c = &ctx;
    let list = |filter: AuditFilter| async move {
        c.service.audit_events(Some(ws), filter).await.expect("audit").items
    };
    let everything = list(AuditFilter { limit: Some(100), ..AuditFilter::default() }).await;
    assert!(everything.iter().all(|e| e.workspace_id == Some(ws)), "other workspaces' events are not listed");
    assert!(everything.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    // workspace.created, key.created x2, key.updated, key.deactivated
    assert_eq!(everything.len(), 5);

    let for_k1 = list(AuditFilter { key_id: Some(k1.id), ..AuditFilter::default() }).await;
    let actions: Vec<AuditAction> = for_k1.iter().map(|e| e.action).collect();
    assert_eq!(actions, vec![AuditAction::KeyDeactivated, AuditAction::KeyUpdated, AuditAction::KeyCreated]);
    let created = list(AuditFilter { action: Some(AuditAction::KeyCreated), ..AuditFilter::default() }).await;
    assert_eq!(created.iter().map(|e| e.key_id).collect::<Vec<_>>(), vec![Some(k2.id), Some(k1.id)]);
    let since = list(AuditFilter { since: Some(t1), ..AuditFilter::default() }).await;
    assert_eq!(since.len(), 3, "since is inclusive");
    assert!(since.iter().all(|e| e.at >= t1));
    let until = list(AuditFilter { until: Some(t1), ..AuditFilter::default() }).await;
    assert_eq!(until.len(), 2, "until is exclusive");
    assert!(until.iter().all(|e| e.at == t0));
    let window = list(AuditFilter {
        since: Some(t1),
        until: Some(t1 + Duration::minutes(1)),
        key_id: Some(k2.id),
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(window.iter().map(|e| e.action).collect::<Vec<_>>(), vec![AuditAction::KeyCreated]);

    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = ctx
            .service
            .audit_events(
                Some(ws),
                AuditFilter { cursor: cursor.take(), limit: Some(2), ..AuditFilter::default() },
            )
            .await
            .expect("page");
        assert!(page.items.len() <= 2);
        paged.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, everything);

    let bad = AuditFilter { cursor: Some("???".into()), ..AuditFilter::default() };
    expect_err(ctx.service.audit_events(Some(ws), bad).await, ErrorCode::ValidationFailed);
    let zero = AuditFilter { limit: Some(0), ..AuditFilter::default() };
    expect_err(ctx.service.audit_events(Some(ws), zero).await, ErrorCode::ValidationFailed);
    let global =
        ctx.service.audit_events(None, AuditFilter { limit: Some(100), ..AuditFilter::default() }).await;
    let global = global.expect("audit");
    assert!(global.items.iter().any(|e| e.workspace_id == Some(other.id)));
    assert!(
        global.items.iter().any(|e| e.workspace_id.is_none()),
        "plan events are listed without a workspace"
    );
}

/// Purging removes events older than the retention (90 days by default) and keeps the rest.
pub async fn audit_purge_keeps_recent_events(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let all = |store: Arc<dyn KeyStore>| async move {
        store.list_audit(&AuditQuery { limit: 1000, ..AuditQuery::default() }).await.expect("audit")
    };
    ctx.key("old").await;
    let old = all(ctx.store.clone()).await;
    assert_eq!(old.len(), 3, "plan.saved, workspace.created, key.created");
    ctx.clock.advance(Duration::days(89));
    assert_eq!(ctx.service.purge_audit().await.expect("purge"), 0, "nothing is old enough yet");
    ctx.clock.advance(Duration::days(2));
    let recent = ctx.key("recent").await;
    assert_eq!(ctx.service.purge_audit().await.expect("purge"), 3);
    let left = all(ctx.store.clone()).await;
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].key_id, left[0].action), (Some(recent.id), AuditAction::KeyCreated));

    let weekly = ctx.service.clone().with_audit_retention(Duration::days(7));
    ctx.clock.advance(Duration::days(8));
    let newest = ctx.key("newest").await;
    assert_eq!(weekly.purge_audit().await.expect("purge"), 1);
    let left = all(ctx.store.clone()).await;
    assert_eq!(left.iter().map(|e| e.key_id).collect::<Vec<_>>(), vec![Some(newest.id)]);

    // The cut-off itself is kept: only strictly older events go.
    assert_eq!(ctx.store.purge_audit(ctx.now()).await.expect("purge"), 0);
    assert_eq!(ctx.store.purge_audit(ctx.now() + Duration::milliseconds(1)).await.expect("purge"), 1);
}

/// Usage adds up per key and UTC day; the last use only moves forward.
pub async fn usage_counts_per_day(store: Arc<dyn KeyStore>) {
    let ctx = setup_at(store, ManualClock::new(at(2025, 1, 11, 12, 0))).await;
    let (k1, k2) = (ctx.key("k1").await, ctx.key("k2").await);
    let (d1, d2) = (day(2025, 1, 10), day(2025, 1, 11));
    let mut batch = UsageBatch::default();
    for _ in 0..3 {
        batch.add(k1.id, at(2025, 1, 10, 10, 0));
    }
    batch.add(k1.id, at(2025, 1, 11, 9, 0));
    batch.add(k2.id, at(2025, 1, 10, 23, 59));
    batch.add(k2.id, at(2025, 1, 10, 23, 59));
    ctx.store.record_usage(&batch).await.expect("record");
    let mut earlier = UsageBatch::default();
    earlier.add(k1.id, at(2025, 1, 10, 8, 0));
    earlier.add(k1.id, at(2025, 1, 10, 8, 30));
    // A key the store does not know must not make the whole batch fail (it would be retried forever).
    earlier.add(KeyId::new(), at(2025, 1, 10, 8, 30));
    ctx.store.record_usage(&earlier).await.expect("record");
    ctx.store.record_usage(&UsageBatch::default()).await.expect("an empty batch is fine");

    let u = |key: KeyId, count: u64, day: NaiveDate| UsageDay { key_id: key, day, count };
    assert_eq!(ctx.store.usage(k1.id, d1, d2).await.expect("usage"), vec![u(k1.id, 5, d1), u(k1.id, 1, d2)]);
    assert_eq!(ctx.store.usage(k1.id, d2, d2).await.expect("usage"), vec![u(k1.id, 1, d2)]);
    assert_eq!(ctx.store.usage(k2.id, d1, d2).await.expect("usage"), vec![u(k2.id, 2, d1)]);
    assert!(ctx.store.usage(k2.id, d2, day(2025, 2, 1)).await.expect("usage").is_empty());
    assert_eq!(ctx.stored(k1.id).await.last_used_at, Some(at(2025, 1, 11, 9, 0)), "never moves back");
    assert_eq!(ctx.stored(k2.id).await.last_used_at, Some(at(2025, 1, 10, 23, 59)));
    assert_eq!(ctx.stored(k1.id).await.version, k1.version, "usage is not a change of the record");

    assert_eq!(
        ctx.service.usage(ctx.ws.id, k1.id, 2).await.expect("usage"),
        vec![u(k1.id, 5, d1), u(k1.id, 1, d2)]
    );
    assert_eq!(ctx.service.usage(ctx.ws.id, k1.id, 1).await.expect("usage"), vec![u(k1.id, 1, d2)]);
    for days in [0, 367] {
        expect_err(ctx.service.usage(ctx.ws.id, k1.id, days).await, ErrorCode::ValidationFailed);
    }

    // A batch of more rows than a backend writes in one statement is written whole.
    let k3 = ctx.key("k3").await;
    let mut many = UsageBatch::default();
    let first = at(2020, 1, 1, 12, 0);
    for n in 0..2500 {
        many.add(k3.id, first + Duration::days(n));
    }
    ctx.store.record_usage(&many).await.expect("record");
    let (from, to) = (first.date_naive(), (first + Duration::days(2499)).date_naive());
    let days = ctx.store.usage(k3.id, from, to).await.expect("usage");
    assert_eq!(days.len(), 2500);
    assert!(days.iter().all(|d| d.count == 1));
    assert_eq!(ctx.stored(k3.id).await.last_used_at, Some(first + Duration::days(2499)));
}

/// The audit hash chain: every workspace's events (and those of no workspace) form a chain that
/// holds after any number of writes, concurrent ones included, and after purges, which leave an
/// anchor the remaining events follow.
pub async fn audit_chain_holds_across_writes_and_purges(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let sys = Actor::system();
    let other = ctx.service.create_workspace(NewWorkspace::live("Other"), &sys).await.expect("workspace");
    let first = ctx.key("first").await;
    ctx.service.deactivate_key(ctx.ws.id, first.id, &sys).await.expect("deactivate");
    // Writers of one chain at once (renames take no workspace lock): none may fork it.
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(ctx.key(&format!("k{i}")).await);
    }
    let writes: Vec<_> = keys
        .iter()
        .map(|k| {
            let (service, ws, id) = (ctx.service.clone(), ctx.ws.id, k.id);
            tokio::spawn(async move {
                let patch = KeyPatch { name: Some("renamed".into()), ..KeyPatch::default() };
                service.update_key(ws, id, patch, &Actor::system()).await
            })
        })
        .collect();
    for w in writes {
        w.await.expect("task").expect("rename");
    }
    ctx.service.create_key(NewKey::new(other.id, "elsewhere"), &sys).await.expect("create");

    let chains = ctx.store.verify_audit(None, &[]).await.expect("verify");
    assert!(chains.iter().all(|c| c.broken.is_none()), "{chains:#?}");
    let ours = chains.iter().find(|c| c.workspace_id == Some(ctx.ws.id)).expect("the workspace's chain");
    // workspace.created, key.created, key.deactivated, 4 x key.created, 4 x key.updated
    assert_eq!((ours.events, ours.head_seq, ours.anchor_seq), (11, 11, 0));
    assert!(chains.iter().any(|c| c.workspace_id == Some(other.id)));
    assert!(chains.iter().any(|c| c.workspace_id.is_none()), "plan changes have a chain of their own");
    let one = ctx.store.verify_audit(Some(other.id), &[]).await.expect("verify one");
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].workspace_id, one[0].events), (Some(other.id), 2));

    // Purged: what is left still follows on from the anchor.
    ctx.clock.advance(Duration::days(91));
    ctx.key("after").await;
    assert_eq!(ctx.service.purge_audit().await.expect("purge"), 14);
    let chains = ctx.store.verify_audit(Some(ctx.ws.id), &[]).await.expect("verify");
    assert_eq!(chains[0].broken, None, "{chains:#?}");
    assert_eq!((chains[0].anchor_seq, chains[0].events, chains[0].head_seq), (11, 1, 12));
    ctx.key("later").await;
    let chains = ctx.store.verify_audit(Some(ctx.ws.id), &[]).await.expect("verify");
    assert_eq!((chains[0].broken.clone(), chains[0].events), (None, 2));
}
