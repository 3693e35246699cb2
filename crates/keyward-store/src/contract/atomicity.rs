//! Compare-and-swap and all-or-nothing writes: concurrent changes leave one consistent result, every change is written with its audit event, guards hold under concurrency.

use super::*;

/// Two rotations of one key racing each other: one wins, the other is refused, one successor.
pub async fn concurrent_rotations_leave_one_successor(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    for round in 0..6 {
        let grace = (round % 2 == 1).then(|| Duration::hours(1));
        let old = ctx.key(&format!("race {round}")).await;
        let spawn = || {
            let (service, ws, id) = (ctx.service.clone(), ctx.ws.id, old.id);
            tokio::spawn(async move { service.rotate_key(ws, id, grace, &Actor::system()).await })
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = tokio::join!(a, b);
        let results = [a.expect("task"), b.expect("task")];
        let winners: Vec<&CreatedKey> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one rotation succeeds: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.code(), ErrorCode::Conflict, "round {round}: {e}");
            }
        }
        let successors: Vec<ApiKey> =
            ctx.all_keys(ctx.ws.id).await.into_iter().filter(|k| k.rotated_from == Some(old.id)).collect();
        assert_eq!(ids(&successors), vec![winners[0].key.id], "round {round}: one live successor");
        assert_eq!(ctx.stored(old.id).await.rotated_to, Some(winners[0].key.id));
        assert_eq!(ctx.count_events(old.id, AuditAction::KeyRotated).await, 1);
    }
}

/// The store's rotation is a compare-and-swap: of two rotations from one version, one lands.
pub async fn store_rotation_is_compare_and_swap(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    for _ in 0..3 {
        let old = ctx.create(NewKey { credits: Some(10), ..ctx.new_key("cas") }).await.key;
        let now = ctx.now();
        let attempt = |claimed| {
            let (retired, new) = rotation_of(&old, now, claimed);
            let ev = raw_event(AuditAction::KeyRotated, old.workspace_id, old.id, now);
            let store = ctx.store.clone();
            let version = old.version;
            tokio::spawn(async move {
                let r = store.rotate_key(&retired, version, &new, &ev).await;
                (r, new, ev)
            })
        };
        let (a, b) = tokio::join!(attempt(Some(999)), attempt(None));
        let (a, b) = (a.expect("task"), b.expect("task"));
        let (won, lost) = match (a.0.is_ok(), b.0.is_ok()) {
            (true, false) => (a, b),
            (false, true) => (b, a),
            _ => panic!("expected one success and one conflict, got {:?} and {:?}", a.0, b.0),
        };
        assert_eq!(lost.0, Err(StoreError::Conflict));
        assert_eq!(ctx.stored(old.id).await.rotated_to, Some(won.1.id));
        assert_eq!(ctx.stored(old.id).await.credits, Some(0));
        assert_eq!(ctx.stored(won.1.id).await.credits, Some(10), "the stored balance, not the caller's");
        assert_eq!(ctx.store.get_key(lost.1.id).await.expect("get"), None, "the loser left no key");
        let events = ctx.events(old.id).await;
        assert!(events.iter().any(|e| e.id == won.2.id));
        assert!(!events.iter().any(|e| e.id == lost.2.id), "the loser left no audit event");
    }
}

/// A reader never sees a rotation half-done: the successor never exists beside an old key that
/// is not yet marked rotated, and the old key never disappears.
pub async fn rotation_is_never_seen_half_done(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    for _ in 0..8 {
        let old = ctx.key("watched").await;
        let (retired, new) = rotation_of(&old, ctx.now(), None);
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, done) = (ctx.store.clone(), done.clone());
            let (old_digest, new_digest, new_id) = (old.hash.digest, new.hash.digest, new.id);
            tokio::spawn(async move {
                let mut after = 0;
                let mut reads = 0u32;
                while after < 3 {
                    if done.load(Ordering::SeqCst) {
                        after += 1;
                    }
                    reads += 1;
                    // Successor first: once it is visible, the old key must already say so.
                    let succ = store.find_key_by_digest(&new_digest).await.expect("find");
                    let o =
                        store.find_key_by_digest(&old_digest).await.expect("find").expect("old key vanished");
                    if succ.is_some() {
                        assert_eq!(o.rotated_to, Some(new_id), "successor visible, old key not rotated");
                        assert_eq!(o.status, KeyStatus::Revoked, "successor visible, old key not revoked");
                    }
                    // Old key first: once it says rotated, the successor must exist.
                    let o =
                        store.find_key_by_digest(&old_digest).await.expect("find").expect("old key vanished");
                    let succ = store.find_key_by_digest(&new_digest).await.expect("find");
                    if o.rotated_to.is_some() || o.status == KeyStatus::Revoked {
                        assert!(succ.is_some(), "old key rotated, successor missing");
                    }
                    tokio::task::yield_now().await;
                }
                reads
            })
        };
        tokio::task::yield_now().await;
        let ev = raw_event(AuditAction::KeyRotated, old.workspace_id, old.id, ctx.now());
        ctx.store.rotate_key(&retired, old.version, &new, &ev).await.expect("rotate");
        done.store(true, Ordering::SeqCst);
        let reads = reader.await.expect("reader saw a half-done rotation");
        assert!(reads >= 3);
    }
}

/// `update_key` from a stale version is a `Conflict` and writes neither the row nor the event.
pub async fn update_key_conflicts_on_a_stale_version(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let stale = ctx.key("original").await;
    let fresh = ctx
        .service
        .update_key(
            ctx.ws.id,
            stale.id,
            KeyPatch { name: Some("fresh".into()), ..KeyPatch::default() },
            &Actor::system(),
        )
        .await
        .expect("update");
    let mut write = ApiKey { name: "stale write".into(), version: stale.version + 1, ..stale.clone() };
    let ev = raw_event(AuditAction::KeyUpdated, ctx.ws.id, stale.id, ctx.now());
    assert_eq!(ctx.store.update_key(&write, stale.version, &ev).await, Err(StoreError::Conflict));
    assert_eq!(ctx.stored(stale.id).await, fresh);
    assert!(ctx.events(stale.id).await.iter().all(|e| e.id != ev.id), "no audit event for a lost write");

    write.version = fresh.version + 1;
    let ev = raw_event(AuditAction::KeyUpdated, ctx.ws.id, stale.id, ctx.now());
    ctx.store.update_key(&write, fresh.version, &ev).await.expect("from the current version");
    assert_eq!(ctx.stored(stale.id).await.name, "stale write");
    assert!(ctx.events(stale.id).await.iter().any(|e| e.id == ev.id));
    assert_eq!(ctx.store.update_key(&write, fresh.version, &ev).await, Err(StoreError::Conflict));
}

/// `update_key` never writes credits or the last use: those have their own writers.
pub async fn update_key_leaves_credits_and_last_use(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let snapshot = ctx.create(NewKey { credits: Some(10), ..ctx.new_key("metered") }).await.key;
    ctx.store.consume_credits(snapshot.id, 4).await.expect("consume");
    let used = ctx.now() + Duration::seconds(5);
    let mut batch = UsageBatch::default();
    batch.add(snapshot.id, used);
    ctx.store.record_usage(&batch).await.expect("record");

    let write = ApiKey {
        name: "renamed".into(),
        credits: Some(999),
        last_used_at: Some(used - Duration::days(1)),
        version: snapshot.version + 1,
        ..snapshot.clone()
    };
    let ev = raw_event(AuditAction::KeyUpdated, ctx.ws.id, snapshot.id, ctx.now());
    ctx.store.update_key(&write, snapshot.version, &ev).await.expect("update");
    let stored = ctx.stored(snapshot.id).await;
    assert_eq!(stored.name, "renamed");
    assert_eq!(stored.credits, Some(6), "update_key must not write credits");
    assert_eq!(stored.last_used_at, Some(used), "update_key must not write last_used_at");
}

/// Each write and its audit event commit together: when one fails, neither is kept.
pub async fn writes_are_atomic_with_their_audit_event(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let (ws, now) = (ctx.ws.id, ctx.now());
    let existing = ctx.events(ctx.key("witness").await.id).await[0].clone();
    let reuse = |action, key: KeyId| AuditEvent { action, key_id: Some(key), ..existing.clone() };

    let fresh = raw_key(ws, now);
    assert!(ctx.store.insert_key(&fresh, None, &reuse(AuditAction::KeyCreated, fresh.id)).await.is_err());
    assert_eq!(ctx.store.get_key(fresh.id).await.expect("get"), None, "key kept without its event");

    let key = ctx.create(NewKey { credits: Some(8), ..ctx.new_key("k") }).await.key;
    let write = ApiKey { name: "changed".into(), version: key.version + 1, ..key.clone() };
    assert!(
        ctx.store.update_key(&write, key.version, &reuse(AuditAction::KeyUpdated, key.id)).await.is_err()
    );
    assert_eq!(ctx.stored(key.id).await, key, "update kept without its event");

    let (retired, new) = rotation_of(&key, now, None);
    assert!(
        ctx.store
            .rotate_key(&retired, key.version, &new, &reuse(AuditAction::KeyRotated, key.id))
            .await
            .is_err()
    );
    assert_eq!(ctx.stored(key.id).await, key, "rotation half kept");
    assert_eq!(ctx.store.get_key(new.id).await.expect("get"), None);

    // A successor whose digest is taken: the compare-and-swap of the old key is undone too.
    let (retired, mut new) = rotation_of(&key, now, None);
    new.hash = key.hash.clone();
    let ev = raw_event(AuditAction::KeyRotated, ws, key.id, now);
    assert_eq!(ctx.store.rotate_key(&retired, key.version, &new, &ev).await, Err(StoreError::Duplicate));
    assert_eq!(ctx.stored(key.id).await, key, "rotation half kept");
    assert!(ctx.events(key.id).await.iter().all(|e| e.id != ev.id));

    let plan = Plan { id: "atomic".into(), ..Plan::default_plan() };
    assert!(ctx.store.save_plan(&plan, &reuse(AuditAction::PlanSaved, key.id)).await.is_err());
    assert_eq!(ctx.store.get_plan(&plan.id).await.expect("get"), None, "plan kept without its event");
    let other = Workspace { id: WorkspaceId::new(), ..ctx.ws.clone() };
    assert!(ctx.store.insert_workspace(&other, &reuse(AuditAction::WorkspaceCreated, key.id)).await.is_err());
    assert_eq!(
        ctx.store.get_workspace(other.id).await.expect("get"),
        None,
        "workspace kept without its event"
    );
}

fn admin_key(ctx: &Fixture, name: &str) -> NewKey {
    ctx.new_key(name).with_scopes("keys:*".parse().expect("scopes"))
}

/// A [`KeyGuard::KeepsKeyAdmin`] write that would leave the workspace without a key able to
/// manage keys is refused with `LastAdminKey`, writes nothing (no change, no audit event); with
/// another admin key left it goes through.
pub async fn guarded_updates_keep_a_key_admin(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let only = ctx.create(admin_key(&ctx, "only admin")).await.key;
    // A key that cannot manage keys, an expired admin and an inactive admin do not count.
    ctx.create(ctx.new_key("reader").with_scopes("keys:read".parse().expect("scopes"))).await;
    ctx.create(NewKey { active: false, ..admin_key(&ctx, "inactive admin") }).await;
    let expiring = ctx
        .create(NewKey { expires_at: Some(ctx.now() + Duration::seconds(5)), ..admin_key(&ctx, "expiring") })
        .await
        .key;
    ctx.clock.advance(Duration::seconds(10));
    let now = ctx.now();
    let guard = KeyGuard::KeepsKeyAdmin { now };
    let mut write = only.clone();
    write.status = KeyStatus::Revoked;
    write.version += 1;
    let ev = raw_event(AuditAction::KeyRevoked, only.workspace_id, only.id, now);
    assert_eq!(
        ctx.store.update_key_guarded(&write, only.version, &ev, guard).await,
        Err(StoreError::LastAdminKey)
    );
    assert_eq!(ctx.stored(only.id).await.status, KeyStatus::Active, "nothing changed");
    assert!(!ctx.events(only.id).await.iter().any(|e| e.id == ev.id), "no audit event");
    assert!(ctx.stored(expiring.id).await.expires_at.is_some());

    ctx.create(admin_key(&ctx, "second admin")).await;
    ctx.store.update_key_guarded(&write, only.version, &ev, guard).await.expect("another admin remains");
    assert_eq!(ctx.stored(only.id).await.status, KeyStatus::Revoked);
}

/// Two guarded writes switching off the workspace's last two admin keys at once: exactly one
/// succeeds, whichever, so the workspace is never left without one.
pub async fn concurrent_guarded_updates_keep_a_key_admin(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    for _ in 0..5 {
        let a = ctx.create(admin_key(&ctx, "a")).await.key;
        let b = ctx.create(admin_key(&ctx, "b")).await.key;
        let now = ctx.now();
        let switch_off = |key: &ApiKey| {
            let mut write = key.clone();
            write.status = KeyStatus::Inactive;
            write.version += 1;
            let ev = raw_event(AuditAction::KeyDeactivated, key.workspace_id, key.id, now);
            let (store, expected) = (ctx.store.clone(), key.version);
            tokio::spawn(async move {
                store.update_key_guarded(&write, expected, &ev, KeyGuard::KeepsKeyAdmin { now }).await
            })
        };
        let (ra, rb) = tokio::join!(switch_off(&a), switch_off(&b));
        let (ra, rb) = (ra.expect("task"), rb.expect("task"));
        assert!(ra.is_ok() != rb.is_ok(), "exactly one may succeed: {ra:?}, {rb:?}");
        assert!(
            [ra, rb].contains(&Err(StoreError::LastAdminKey)),
            "the other is refused as the last admin key"
        );
        let admins = ctx.all_keys(ctx.ws.id).await.iter().filter(|k| k.can_manage_keys(now)).count();
        assert_eq!(admins, 1);
        // Leave no admin key behind for the next round.
        for k in ctx.all_keys(ctx.ws.id).await.into_iter().filter(|k| k.can_manage_keys(now)) {
            let mut write = k.clone();
            write.status = KeyStatus::Revoked;
            write.version += 1;
            let ev = raw_event(AuditAction::KeyRevoked, k.workspace_id, k.id, now);
            ctx.store.update_key(&write, k.version, &ev).await.expect("unguarded");
        }
    }
}
