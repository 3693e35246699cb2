//! Records come back as written; duplicates are refused.

use super::*;

/// Keys are found by digest (deleted ones too), with the pepper id they were hashed with.
pub async fn find_key_by_digest(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let a = ctx.create(ctx.new_key("a")).await;
    let b = ctx.create(ctx.new_key("b")).await;
    for created in [&a, &b] {
        let found = ctx.store.find_key_by_digest(&digest_of(&created.secret)).await.expect("find");
        assert_eq!(found.as_ref(), Some(&created.key));
    }
    assert_eq!(ctx.store.find_key_by_digest(&KeyDigest([7; 32])).await.expect("find"), None);

    let peppered =
        ctx.service.clone().with_hasher(KeyHasher::hmac("p1", b"a pepper of thirty-two bytes!!!!".to_vec()));
    let c = peppered.create_key(ctx.new_key("peppered"), &Actor::system()).await.expect("create");
    let hashed = peppered.hasher().hash(&c.secret);
    let found = ctx.store.find_key_by_digest(&hashed.digest).await.expect("find").expect("found");
    assert_eq!(found.id, c.key.id);
    assert_eq!(found.hash.pepper_id.as_deref(), Some("p1"));
    assert_eq!(ctx.store.find_key_by_digest(&digest_of(&c.secret)).await.expect("find"), None);

    ctx.service.revoke_key(ctx.ws.id, a.key.id, &Actor::system()).await.expect("revoke");
    ctx.service.delete_key(ctx.ws.id, a.key.id, &Actor::system()).await.expect("delete");
    let gone = ctx.store.find_key_by_digest(&digest_of(&a.secret)).await.expect("find").expect("kept");
    assert!(gone.deleted_at.is_some());
}

/// A key's record (key, workspace, plan) is found by digest in one call, deleted keys too, and
/// is exactly what the three separate reads return.
pub async fn find_key_record_by_digest(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let a = ctx.create(ctx.new_key("a")).await;
    let b = ctx.create(ctx.new_key("b")).await;
    let workspace = ctx.store.get_workspace(ctx.ws.id).await.expect("get").expect("workspace");
    let plan = ctx.store.get_plan(&workspace.plan_id).await.expect("get").expect("plan");
    for created in [&a, &b] {
        let found = ctx.store.find_key_record_by_digest(&digest_of(&created.secret)).await.expect("find");
        let expected =
            KeyRecord { key: created.key.clone(), workspace: workspace.clone(), plan: plan.clone() };
        assert_eq!(found, Some(expected));
    }
    assert_eq!(ctx.store.find_key_record_by_digest(&KeyDigest([7; 32])).await.expect("find"), None);

    ctx.service.revoke_key(ctx.ws.id, a.key.id, &Actor::system()).await.expect("revoke");
    ctx.service.delete_key(ctx.ws.id, a.key.id, &Actor::system()).await.expect("delete");
    let gone = ctx.store.find_key_record_by_digest(&digest_of(&a.secret)).await.expect("find").expect("kept");
    assert!(gone.key.deleted_at.is_some());
    assert_eq!(gone.key, ctx.stored(a.key.id).await);
}

/// Every field of a key is stored and read back exactly (times to the millisecond).
pub async fn key_round_trips_every_field(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let new = NewKey {
        scopes: scopes("orders:read products:*"),
        resources: vec!["site-1".into(), "site-2".into()],
        active: false,
        expires_at: Some(ctx.now() + Duration::days(30)),
        rate_limit: Some(RateLimitPolicy::new([
            RateLimitWindow::per_minute(10),
            RateLimitWindow::per_hour(100),
        ])),
        concurrency_limit: Some(3),
        credits: Some(500),
        ip_allowlist: vec!["198.51.100.7/32".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
        metadata: BTreeMap::from([("team".into(), "ops".into()), ("env".into(), "ci ✓".into())]),
        ..ctx.new_key("Everything — set")
    };
    let actor = Actor { ip: Some("2001:db8::1".into()), ..Actor::system() };
    let created = ctx.service.create_key(new, &actor).await.expect("create");
    assert_eq!(ctx.stored(created.key.id).await, created.key);
    let listed = ctx.all_keys(ctx.ws.id).await;
    assert_eq!(listed, vec![created.key.clone()]);

    // Every optional field set, including those only rotation, revocation and usage write.
    let now = ctx.now();
    let mut raw = raw_key(ctx.ws.id, now);
    raw.environment = KeyEnvironment::Test;
    raw.status = KeyStatus::Revoked;
    raw.deleted_at = Some(now + Duration::milliseconds(5));
    raw.revoked_at = Some(now + Duration::milliseconds(4));
    raw.updated_at = now + Duration::milliseconds(6);
    raw.last_used_at = Some(now + Duration::milliseconds(3));
    raw.expires_at = Some(now + Duration::days(1));
    raw.rotated_from = Some(KeyId::new());
    raw.rotated_to = Some(KeyId::new());
    raw.grace_ends_at = Some(now + Duration::hours(2));
    raw.hash.pepper_id = Some("pepper-7".into());
    raw.credits = Some(-3);
    raw.concurrency_limit = Some(u32::MAX);
    raw.version = 42;
    raw.leaked_at = Some(now + Duration::milliseconds(7));
    raw.leak_source = Some("https://github.com/acme/app/blob/main/.env".into());
    raw.imported_at = Some(now + Duration::milliseconds(8));
    ctx.store
        .insert_key(&raw, None, &raw_event(AuditAction::KeyCreated, ctx.ws.id, raw.id, now))
        .await
        .expect("insert");
    assert_eq!(ctx.stored(raw.id).await, raw);
    assert_eq!(ctx.store.find_key_by_digest(&raw.hash.digest).await.expect("find"), Some(raw));
}

/// Duplicate ids and digests are refused with `Duplicate`, leaving no trace.
pub async fn duplicates_are_rejected(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let now = ctx.now();
    let first = ctx.key("first").await;
    let same_id = ApiKey { id: first.id, ..raw_key(ctx.ws.id, now) };
    let ev = raw_event(AuditAction::KeyCreated, ctx.ws.id, first.id, now);
    assert_eq!(ctx.store.insert_key(&same_id, None, &ev).await, Err(StoreError::Duplicate));
    let same_digest = ApiKey { hash: first.hash.clone(), ..raw_key(ctx.ws.id, now) };
    let ev2 = raw_event(AuditAction::KeyCreated, ctx.ws.id, same_digest.id, now);
    assert_eq!(ctx.store.insert_key(&same_digest, None, &ev2).await, Err(StoreError::Duplicate));
    assert_eq!(ctx.store.get_key(same_digest.id).await.expect("get"), None);
    assert_eq!(ctx.stored(first.id).await, first);
    let events =
        ctx.store.list_audit(&AuditQuery { limit: 1000, ..AuditQuery::default() }).await.expect("audit");
    assert!(events.iter().all(|e| e.id != ev.id && e.id != ev2.id));

    let ws_event = AuditEvent { action: AuditAction::WorkspaceCreated, key_id: None, ..ev.clone() };
    let ws_event = AuditEvent { id: AuditEventId::new(), ..ws_event };
    assert_eq!(ctx.store.insert_workspace(&ctx.ws, &ws_event).await, Err(StoreError::Duplicate));
    let missing = Workspace { id: WorkspaceId::new(), ..ctx.ws.clone() };
    assert_eq!(ctx.store.update_workspace(&missing, &ws_event).await, Err(StoreError::NotFound));
    assert_eq!(ctx.store.get_workspace(missing.id).await.expect("get"), None);
}

/// Plans are created or replaced; workspaces are created, changed and listed oldest first.
pub async fn plans_and_workspaces(store: Arc<dyn KeyStore>) {
    let ctx = setup(store).await;
    let sys = Actor::system();
    let pro = Plan {
        id: "pro".into(),
        name: "Professional".into(),
        api_access: true,
        max_keys: Some(5),
        key_rate_limit: RateLimitPolicy::new([RateLimitWindow::per_minute(600)]),
    };
    ctx.service.save_plan(pro.clone(), &sys).await.expect("save");
    assert_eq!(ctx.service.get_plan(&pro.id).await.expect("get"), pro);
    let changed = Plan { name: "Pro".into(), max_keys: None, api_access: false, ..pro.clone() };
    ctx.service.save_plan(changed.clone(), &sys).await.expect("replace");
    assert_eq!(ctx.service.get_plan(&pro.id).await.expect("get"), changed);
    let plans = ctx.service.list_plans().await.expect("list");
    assert_eq!(plans, vec![Plan::default_plan(), changed], "one row per plan, by id");
    expect_err(ctx.service.get_plan(&"missing".into()).await, ErrorCode::NotFound);

    ctx.clock.advance(Duration::seconds(1));
    let new = NewWorkspace {
        rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_second(3)])),
        ..NewWorkspace::sandbox("Sandbox").with_plan("pro".into())
    };
    let sandbox = ctx.service.create_workspace(new, &sys).await.expect("create");
    assert_eq!(ctx.service.get_workspace(sandbox.id).await.expect("get"), sandbox);
    assert_eq!(sandbox.environment, WorkspaceEnvironment::Sandbox);
    let unknown = NewWorkspace::live("Nowhere").with_plan("missing".into());
    expect_err(ctx.service.create_workspace(unknown, &sys).await, ErrorCode::ValidationFailed);

    let patch = WorkspacePatch {
        name: Some("Renamed".into()),
        plan_id: Some("default".into()),
        rate_limit: Some(None),
        ip_allowlist: Some(vec!["203.0.113.0/24".parse().unwrap(), "2001:db8::1/128".parse().unwrap()]),
    };
    let updated = ctx.service.update_workspace(sandbox.id, patch, &sys).await.expect("update");
    assert_eq!(updated.ip_allowlist.len(), 2);
    assert_eq!(
        (updated.name.as_str(), updated.plan_id.0.as_str(), &updated.rate_limit),
        ("Renamed", "default", &None)
    );
    assert_eq!(ctx.service.get_workspace(sandbox.id).await.expect("get"), updated);
    let sandbox_key =
        ctx.service.create_key(NewKey::new(sandbox.id, "test key"), &sys).await.expect("create");
    assert!(sandbox_key.secret.expose_secret().starts_with("kw_test_"), "sandbox workspaces issue test keys");

    ctx.clock.advance(Duration::seconds(1));
    let third = ctx.service.create_workspace(NewWorkspace::live("Third"), &sys).await.expect("create");
    let listed: Vec<WorkspaceId> =
        ctx.service.list_workspaces().await.expect("list").iter().map(|w| w.id).collect();
    assert_eq!(listed, vec![ctx.ws.id, sandbox.id, third.id], "oldest first");
    expect_err(ctx.service.get_workspace(WorkspaceId::new()).await, ErrorCode::NotFound);
}
