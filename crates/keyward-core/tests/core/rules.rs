//! The lifecycle rules of `KeyService`, on the in-memory store: what any backend gives users,
//! tested without I/O. What a store itself must guarantee is keyward-store's contract suite.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use keyward_core::testing::MemoryStore;
use keyward_core::testing::fixture::*;
use keyward_core::{
    Actor, ApiKeySecret, AuditAction, AuditEvent, AuditFilter, AuditQuery, CreditOutcome, CreditRefill,
    ErrorCode, KeyFilter, KeyHasher, KeyId, KeyPatch, KeyStatus, KeyStore, NewKey, NewWorkspace, Plan,
    RateLimitPolicy, RateLimitWindow, RefillInterval, WorkspacePatch,
};
use serde_json::json;

fn memory() -> Arc<dyn KeyStore> {
    Arc::new(MemoryStore::new())
}

/// Creating a key returns its plaintext once; only its hash and display parts are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_plaintext_once() {
    let store = memory();
    let ctx = setup(store).await;
    let actor = Actor { ip: Some("203.0.113.9".into()), ..Actor::system() };
    let created = ctx
        .service
        .create_key(ctx.new_key("CI pipeline").with_scopes(scopes("keys:read")), &actor)
        .await
        .expect("create");
    let plain = created.secret.expose_secret().to_owned();
    ctx.service.format().parse(&plain).expect("well-formed key");
    assert!(plain.starts_with("kw_live_"), "a live workspace issues live keys");
    assert!(!format!("{created:?}").contains(&plain), "Debug of CreatedKey must not show the key");

    let stored = ctx.stored(created.key.id).await;
    assert_eq!(stored, created.key);
    assert_eq!(stored.hash, KeyHasher::sha256().hash(&ApiKeySecret::from(plain.as_str())));
    assert_eq!(stored.prefix.chars().count(), 12);
    assert_eq!(stored.prefix, plain[..12]);
    assert_eq!(stored.last4, plain[plain.len() - 4..]);
    assert_eq!(stored.created_ip.as_deref(), Some("203.0.113.9"));

    // No stretch of the key beyond the displayed prefix may appear in anything stored.
    let listed = ctx.service.list_keys(ctx.ws.id, KeyFilter::default()).await.expect("list");
    let dump = format!("{stored:?} {listed:?} {:?}", ctx.events(stored.id).await);
    for start in 5..=plain.len() - 8 {
        let window = &plain[start..start + 8];
        assert!(!dump.contains(window), "stored data contains part of the plaintext: {window}");
    }

    let other = ctx.create(ctx.new_key("other")).await;
    assert_ne!(other.secret.expose_secret(), plain);
    assert_ne!(other.key.hash, stored.hash);
}

/// Another workspace's key is invisible: every operation on it answers NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_workspace_keys_are_not_found() {
    let store = memory();
    let ctx = setup(store).await;
    let sys = Actor::system();
    let other = ctx.service.create_workspace(NewWorkspace::live("Other"), &sys).await.expect("workspace");
    let key = ctx.key("mine").await;
    let (o, id) = (other.id, key.id);
    let s = &ctx.service;
    expect_err(s.get_key(o, id).await, ErrorCode::NotFound);
    expect_err(
        s.update_key(o, id, KeyPatch { name: Some("x".into()), ..KeyPatch::default() }, &sys).await,
        ErrorCode::NotFound,
    );
    expect_err(s.activate_key(o, id, &sys).await, ErrorCode::NotFound);
    expect_err(s.deactivate_key(o, id, &sys).await, ErrorCode::NotFound);
    expect_err(s.rotate_key(o, id, None, &sys).await, ErrorCode::NotFound);
    expect_err(s.revoke_key(o, id, &sys).await, ErrorCode::NotFound);
    expect_err(s.delete_key(o, id, &sys).await, ErrorCode::NotFound);
    expect_err(s.usage(o, id, 7).await, ErrorCode::NotFound);
    assert!(s.list_keys(o, KeyFilter::default()).await.expect("list").items.is_empty());
    assert_eq!(ctx.stored(id).await, key, "nothing changed");
    assert_eq!(ctx.events(id).await.len(), 1, "only key.created");
}

/// Updating settings keeps the key's id and value; every setting is written and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_changes_settings_but_not_the_value() {
    let store = memory();
    let ctx = setup(store).await;
    let created = ctx.create(NewKey { credits: Some(10), ..ctx.new_key("before") }).await;
    let before = created.key;
    ctx.clock.advance(Duration::minutes(1));
    let patch = KeyPatch {
        name: Some("after".into()),
        scopes: Some(scopes("orders:write")),
        resources: Some(vec!["site-9".into()]),
        active: Some(false),
        expires_at: Some(Some(ctx.now() + Duration::days(2))),
        rate_limit: Some(Some(RateLimitPolicy::new([RateLimitWindow::per_second(2)]))),
        concurrency_limit: Some(Some(4)),
        metadata: Some(BTreeMap::from([("k".into(), "v".into())])),
        refill: Some(Some(CreditRefill { interval: RefillInterval::Daily, amount: 10, day: None })),
        ip_allowlist: Some(vec!["203.0.113.9/24".parse().unwrap()]),
        credits_low_threshold: Some(Some(3)),
    };
    let after = ctx.service.update_key(ctx.ws.id, before.id, patch, &Actor::system()).await.expect("update");
    assert_eq!(after.credits_low_threshold, Some(3));
    assert_eq!(after.name, "after");
    assert_eq!(after.scopes, scopes("orders:write"));
    assert_eq!(after.resources, vec!["site-9".to_owned()]);
    assert_eq!(after.status, KeyStatus::Inactive);
    assert_eq!(after.expires_at, Some(ctx.now() + Duration::days(2)));
    assert_eq!(after.rate_limit, Some(RateLimitPolicy::new([RateLimitWindow::per_second(2)])));
    assert_eq!(after.concurrency_limit, Some(4));
    assert_eq!(after.metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(after.refill.map(|r| r.amount), Some(10));
    assert_eq!(after.ip_allowlist, vec!["203.0.113.0/24".parse().unwrap()], "normalised");
    assert_eq!(after.updated_at, ctx.now());
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        (after.id, &after.hash, &after.prefix, &after.last4),
        (before.id, &before.hash, &before.prefix, &before.last4)
    );
    assert_eq!((after.created_at, after.credits), (before.created_at, before.credits));
    assert_eq!(ctx.stored(before.id).await, after);
    let found = ctx.store.find_key_by_digest(&digest_of(&created.secret)).await.expect("find");
    assert_eq!(found.map(|k| k.id), Some(before.id), "the same plaintext still finds the key");

    let clear = KeyPatch {
        expires_at: Some(None),
        rate_limit: Some(None),
        concurrency_limit: Some(None),
        ..KeyPatch::default()
    };
    let cleared =
        ctx.service.update_key(ctx.ws.id, before.id, clear, &Actor::system()).await.expect("update");
    assert_eq!((cleared.expires_at, &cleared.rate_limit, cleared.concurrency_limit), (None, &None, None));
    assert_eq!(ctx.stored(before.id).await, cleared);
    assert_eq!(ctx.count_events(before.id, AuditAction::KeyUpdated).await, 2);

    ctx.service.revoke_key(ctx.ws.id, before.id, &Actor::system()).await.expect("revoke");
    let r = ctx
        .service
        .update_key(
            ctx.ws.id,
            before.id,
            KeyPatch { name: Some("x".into()), ..KeyPatch::default() },
            &Actor::system(),
        )
        .await;
    expect_err(r, ErrorCode::Conflict);
    assert_eq!(ctx.stored(before.id).await.name, "after");
}

/// Activation and deactivation are idempotent; a revoked key can be neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_and_deactivate() {
    let store = memory();
    let ctx = setup(store).await;
    let key = ctx.key("k").await;
    let (ws, sys) = (ctx.ws.id, Actor::system());
    let off = ctx.service.deactivate_key(ws, key.id, &sys).await.expect("deactivate");
    assert_eq!((off.status, off.version), (KeyStatus::Inactive, 2));
    let again = ctx.service.deactivate_key(ws, key.id, &sys).await.expect("deactivate again");
    assert_eq!((again.status, again.version), (KeyStatus::Inactive, 2), "no write when nothing changes");
    assert_eq!(ctx.stored(key.id).await.status, KeyStatus::Inactive);
    let on = ctx.service.activate_key(ws, key.id, &sys).await.expect("activate");
    assert_eq!((on.status, on.version), (KeyStatus::Active, 3));
    let again = ctx.service.activate_key(ws, key.id, &sys).await.expect("activate again");
    assert_eq!(again.version, 3);
    assert_eq!(ctx.stored(key.id).await.status, KeyStatus::Active);
    assert_eq!(ctx.count_events(key.id, AuditAction::KeyDeactivated).await, 1);
    assert_eq!(ctx.count_events(key.id, AuditAction::KeyActivated).await, 1);

    ctx.service.revoke_key(ws, key.id, &sys).await.expect("revoke");
    expect_err(ctx.service.activate_key(ws, key.id, &sys).await, ErrorCode::Conflict);
    expect_err(ctx.service.deactivate_key(ws, key.id, &sys).await, ErrorCode::Conflict);
    let r = ctx
        .service
        .update_key(ws, key.id, KeyPatch { active: Some(true), ..KeyPatch::default() }, &sys)
        .await;
    expect_err(r, ErrorCode::Conflict);
    assert_eq!(ctx.stored(key.id).await.status, KeyStatus::Revoked);
}

/// An immediate rotation revokes the old key and hands its configuration and credits to a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_immediately() {
    let store = memory();
    let ctx = setup(store).await;
    let new = NewKey {
        scopes: scopes("orders:read"),
        resources: vec!["site-1".into()],
        expires_at: Some(ctx.now() + Duration::days(10)),
        rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_minute(5)])),
        concurrency_limit: Some(2),
        credits: Some(10),
        metadata: BTreeMap::from([("owner".into(), "ci".into())]),
        ..ctx.new_key("rotating")
    };
    let old = ctx.create(new).await;
    assert_eq!(ctx.store.consume_credits(old.key.id, 3).await.expect("consume"), CreditOutcome::Remaining(7));
    ctx.clock.advance(Duration::minutes(5));
    let actor = Actor { ip: Some("192.0.2.1".into()), ..Actor::system() };
    let rotated = ctx.service.rotate_key(ctx.ws.id, old.key.id, None, &actor).await.expect("rotate");
    assert_ne!(rotated.secret.expose_secret(), old.secret.expose_secret());

    let retired = ctx.stored(old.key.id).await;
    assert_eq!(retired.status, KeyStatus::Revoked);
    assert_eq!(retired.revoked_at, Some(ctx.now()));
    assert_eq!(retired.rotated_to, Some(rotated.key.id));
    assert_eq!(retired.grace_ends_at, None);
    assert_eq!(retired.credits, Some(0), "credits move to the successor");

    let succ = ctx.stored(rotated.key.id).await;
    assert_eq!(succ.rotated_from, Some(old.key.id));
    assert_eq!(succ.rotated_to, None);
    assert_eq!(succ.status, KeyStatus::Active);
    assert_eq!(succ.credits, Some(7), "the stored balance, after what was spent");
    assert_eq!(succ.hash, KeyHasher::sha256().hash(&rotated.secret));
    assert_ne!(succ.hash, old.key.hash);
    assert_ne!(succ.prefix, old.key.prefix);
    assert_eq!(succ.created_at, ctx.now());
    assert_eq!(succ.created_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(
        (&succ.name, &succ.scopes, &succ.resources, succ.expires_at, &succ.rate_limit),
        (&old.key.name, &old.key.scopes, &old.key.resources, old.key.expires_at, &old.key.rate_limit)
    );
    assert_eq!(
        (succ.concurrency_limit, &succ.metadata, succ.environment, succ.workspace_id),
        (old.key.concurrency_limit, &old.key.metadata, old.key.environment, old.key.workspace_id)
    );
    let found = ctx.store.find_key_by_digest(&digest_of(&rotated.secret)).await.expect("find");
    assert_eq!(found.map(|k| k.id), Some(succ.id));
    assert_eq!(ctx.count_events(old.key.id, AuditAction::KeyRotated).await, 1);

    // A key without credits hands on no credits, and keeps none.
    let plain = ctx.key("no credits").await;
    let next = ctx.service.rotate_key(ctx.ws.id, plain.id, None, &Actor::system()).await.expect("rotate");
    assert_eq!(ctx.stored(plain.id).await.credits, None);
    assert_eq!(ctx.stored(next.key.id).await.credits, None);
}

/// With a grace period the old key keeps working until it ends; the period is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_with_grace() {
    let store = memory();
    let ctx = setup(store).await;
    let (ws, sys) = (ctx.ws.id, Actor::system());
    let old = ctx.key("graceful").await;
    let rotated = ctx.service.rotate_key(ws, old.id, Some(Duration::hours(1)), &sys).await.expect("rotate");
    let retired = ctx.stored(old.id).await;
    assert_eq!(retired.status, KeyStatus::Active);
    assert_eq!(retired.revoked_at, None);
    assert_eq!(retired.grace_ends_at, Some(ctx.now() + Duration::hours(1)));
    assert_eq!(retired.rotated_to, Some(rotated.key.id));
    assert_eq!(ctx.stored(rotated.key.id).await.status, KeyStatus::Active);
    assert_eq!(ctx.live().await, 2);

    let other = ctx.key("other").await;
    for grace in [Duration::days(31), Duration::seconds(-5)] {
        expect_err(
            ctx.service.rotate_key(ws, other.id, Some(grace), &sys).await,
            ErrorCode::ValidationFailed,
        );
    }
    assert_eq!(ctx.stored(other.id).await, other, "a refused rotation changes nothing");
    assert_eq!(ctx.live().await, 3);

    let strict = ctx.service.clone().with_max_grace(Duration::hours(2));
    expect_err(
        strict.rotate_key(ws, other.id, Some(Duration::hours(3)), &sys).await,
        ErrorCode::ValidationFailed,
    );
    strict.rotate_key(ws, other.id, Some(Duration::hours(2)), &sys).await.expect("within the maximum");
    assert_eq!(ctx.stored(other.id).await.grace_ends_at, Some(ctx.now() + Duration::hours(2)));

    // A zero grace period is an immediate rotation.
    let third = ctx.key("third").await;
    ctx.service.rotate_key(ws, third.id, Some(Duration::zero()), &sys).await.expect("rotate");
    assert_eq!(ctx.stored(third.id).await.status, KeyStatus::Revoked);
}

/// A key is rotated at most once; its successor can be rotated in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_twice_conflicts() {
    let store = memory();
    let ctx = setup(store).await;
    let (ws, sys) = (ctx.ws.id, Actor::system());
    for grace in [None, Some(Duration::hours(1))] {
        let old = ctx.key("twice").await;
        let first = ctx.service.rotate_key(ws, old.id, grace, &sys).await.expect("first rotation");
        let err = expect_err(ctx.service.rotate_key(ws, old.id, grace, &sys).await, ErrorCode::Conflict);
        if grace.is_some() {
            assert_eq!(err.details().get("successor"), Some(&json!(first.key.id.to_string())));
        }
        let successors =
            ctx.all_keys(ws).await.into_iter().filter(|k| k.rotated_from == Some(old.id)).count();
        assert_eq!(successors, 1);
        let third = ctx.service.rotate_key(ws, first.key.id, None, &sys).await.expect("rotate the successor");
        assert_eq!(ctx.stored(third.key.id).await.rotated_from, Some(first.key.id));
    }
}

/// Revoking is final and idempotent: a second revocation changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_is_idempotent() {
    let store = memory();
    let ctx = setup(store).await;
    let created = ctx.create(ctx.new_key("revoked")).await;
    let id = created.key.id;
    let first = ctx.service.revoke_key(ctx.ws.id, id, &Actor::system()).await.expect("revoke");
    assert_eq!((first.status, first.revoked_at), (KeyStatus::Revoked, Some(ctx.now())));
    let revoked_at = ctx.now();
    ctx.clock.advance(Duration::hours(1));
    let second = ctx.service.revoke_key(ctx.ws.id, id, &Actor::system()).await.expect("revoke again");
    assert_eq!(second.revoked_at, Some(revoked_at));
    assert_eq!(second.version, first.version);
    assert_eq!(ctx.stored(id).await, first);
    assert_eq!(ctx.count_events(id, AuditAction::KeyRevoked).await, 1);
    let found = ctx.store.find_key_by_digest(&digest_of(&created.secret)).await.expect("find");
    assert_eq!(found.map(|k| k.status), Some(KeyStatus::Revoked));
    assert_eq!(ctx.live().await, 0);
}

/// Only a revoked key can be deleted: KEY_NOT_REVOKED (409) otherwise, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_requires_revocation() {
    let store = memory();
    let ctx = setup(store).await;
    let active = ctx.key("active").await;
    let inactive = ctx.create(NewKey { active: false, ..ctx.new_key("inactive") }).await.key;
    for key in [active, inactive] {
        let err = expect_err(
            ctx.service.delete_key(ctx.ws.id, key.id, &Actor::system()).await,
            ErrorCode::KeyNotRevoked,
        );
        assert_eq!(err.code().http_status(), 409);
        assert_eq!(ctx.stored(key.id).await, key);
        assert_eq!(ctx.count_events(key.id, AuditAction::KeyDeleted).await, 0);
        assert_eq!(ctx.service.get_key(ctx.ws.id, key.id).await.expect("still visible"), key);
    }
}

/// A deleted key disappears from the API but its row stays, marked, for the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_revoke_hides_the_key() {
    let store = memory();
    let ctx = setup(store).await;
    let (ws, sys) = (ctx.ws.id, Actor::system());
    let created = ctx.create(ctx.new_key("doomed")).await;
    let id = created.key.id;
    ctx.service.revoke_key(ws, id, &sys).await.expect("revoke");
    ctx.clock.advance(Duration::minutes(3));
    ctx.service.delete_key(ws, id, &sys).await.expect("delete");

    expect_err(ctx.service.get_key(ws, id).await, ErrorCode::NotFound);
    for status in [None, Some(KeyStatus::Revoked)] {
        let page =
            ctx.service.list_keys(ws, KeyFilter { status, ..KeyFilter::default() }).await.expect("list");
        assert!(page.items.is_empty(), "deleted keys are not listed");
    }
    let row = ctx.stored(id).await;
    assert_eq!(row.deleted_at, Some(ctx.now()));
    assert_eq!(row.status, KeyStatus::Revoked);
    let found = ctx.store.find_key_by_digest(&digest_of(&created.secret)).await.expect("find");
    assert_eq!(found.and_then(|k| k.deleted_at), Some(ctx.now()));
    expect_err(ctx.service.delete_key(ws, id, &sys).await, ErrorCode::NotFound);
    expect_err(ctx.service.revoke_key(ws, id, &sys).await, ErrorCode::NotFound);
    assert_eq!(ctx.count_events(id, AuditAction::KeyDeleted).await, 1);
}

/// A plan without API access refuses new keys and rotations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_without_api_access() {
    let store = memory();
    let ctx = setup(store).await;
    let sys = Actor::system();
    let free = Plan { id: "free".into(), name: "Free".into(), api_access: false, ..Plan::default_plan() };
    ctx.service.save_plan(free, &sys).await.expect("plan");
    let ws = ctx
        .service
        .create_workspace(NewWorkspace::live("Free tier").with_plan("free".into()), &sys)
        .await
        .expect("workspace");
    let err =
        expect_err(ctx.service.create_key(NewKey::new(ws.id, "k"), &sys).await, ErrorCode::FeatureNotInPlan);
    assert_eq!(err.details().get("plan"), Some(&json!("free")));
    assert!(ctx.all_keys(ws.id).await.is_empty());

    let key = ctx.key("before the downgrade").await;
    let patch = WorkspacePatch { plan_id: Some("free".into()), ..WorkspacePatch::default() };
    ctx.service.update_workspace(ctx.ws.id, patch, &sys).await.expect("downgrade");
    expect_err(ctx.service.rotate_key(ctx.ws.id, key.id, None, &sys).await, ErrorCode::FeatureNotInPlan);
    assert_eq!(ctx.stored(key.id).await, key);
    expect_err(ctx.service.create_key(ctx.new_key("k"), &sys).await, ErrorCode::FeatureNotInPlan);
}

/// A plan's key limit counts keys that are neither revoked nor deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_key_limit() {
    let store = memory();
    let ctx = setup(store).await;
    let sys = Actor::system();
    let ws = limited_workspace(&ctx, 3).await;
    let create = || ctx.service.create_key(NewKey::new(ws.id, "k"), &sys);
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(create().await.expect("within the limit").key);
    }
    expect_err(create().await, ErrorCode::KeyLimitReached);
    ctx.service.deactivate_key(ws.id, keys[0].id, &sys).await.expect("deactivate");
    expect_err(create().await, ErrorCode::KeyLimitReached);
    ctx.service.revoke_key(ws.id, keys[1].id, &sys).await.expect("revoke");
    create().await.expect("revoking frees a slot");
    expect_err(create().await, ErrorCode::KeyLimitReached);
    ctx.service.revoke_key(ws.id, keys[2].id, &sys).await.expect("revoke");
    ctx.service.delete_key(ws.id, keys[2].id, &sys).await.expect("delete");
    create().await.expect("a deleted key does not count");
    expect_err(create().await, ErrorCode::KeyLimitReached);
    assert_eq!(ctx.store.count_live_keys(ws.id).await.expect("count"), 3);
    // Other workspaces are not limited by it.
    ctx.key("elsewhere").await;
}

/// Expiry must lie in the future; it is stored and returned to the millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_validated_and_stored() {
    let store = memory();
    let ctx = setup(store).await;
    let (ws, sys) = (ctx.ws.id, Actor::system());
    for past in [ctx.now() - Duration::seconds(1), ctx.now()] {
        let r = ctx.service.create_key(NewKey { expires_at: Some(past), ..ctx.new_key("old") }, &sys).await;
        let err = expect_err(r, ErrorCode::ValidationFailed);
        assert_eq!(err.details().get("field"), Some(&json!("expiresAt")));
    }
    assert_eq!(ctx.live().await, 0);

    let when = ctx.now() + Duration::days(1) + Duration::milliseconds(123);
    let key = ctx.create(NewKey { expires_at: Some(when), ..ctx.new_key("expiring") }).await.key;
    assert_eq!(key.expires_at, Some(when));
    assert_eq!(ctx.stored(key.id).await.expires_at, Some(when));
    let listed = ctx.service.list_keys(ws, KeyFilter::default()).await.expect("list");
    assert_eq!(listed.items[0].expires_at, Some(when));

    // Sub-millisecond precision is dropped, and what the service returns is what is stored.
    let precise = Utc::now() + Duration::days(3) + Duration::nanoseconds(456_789);
    let p = ctx.create(NewKey { expires_at: Some(precise), ..ctx.new_key("precise") }).await.key;
    assert_eq!(ctx.stored(p.id).await, p);

    let to_past =
        KeyPatch { expires_at: Some(Some(ctx.now() - Duration::minutes(1))), ..KeyPatch::default() };
    expect_err(ctx.service.update_key(ws, key.id, to_past, &sys).await, ErrorCode::ValidationFailed);
    assert_eq!(ctx.stored(key.id).await.expires_at, Some(when));
    ctx.clock.advance(Duration::days(2));
    assert_eq!(ctx.service.get_key(ws, key.id).await.expect("still stored").expires_at, Some(when));
    let cleared = ctx
        .service
        .update_key(ws, key.id, KeyPatch { expires_at: Some(None), ..KeyPatch::default() }, &sys)
        .await
        .expect("remove expiry");
    assert_eq!(cleared.expires_at, None);
    assert_eq!(ctx.stored(key.id).await.expires_at, None);
}

/// A key can never create, widen or rotate a key with scopes beyond its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cannot_mint_wider_keys() {
    let store = memory();
    let ctx = setup(store).await;
    let ws = ctx.ws.id;
    let reader_key = ctx.create(ctx.new_key("reader").with_scopes(scopes("keys:read"))).await.key;
    let reader = Actor::key(&reader_key);
    let live_before = ctx.live().await;

    let err = expect_err(
        ctx.service.create_key(ctx.new_key("wide").with_scopes(scopes("keys:*")), &reader).await,
        ErrorCode::InsufficientScope,
    );
    assert_eq!(err.details().get("missing"), Some(&json!(["keys:*"])));
    let err = expect_err(
        ctx.service
            .create_key(ctx.new_key("wider").with_scopes(scopes("keys:read keys:write")), &reader)
            .await,
        ErrorCode::InsufficientScope,
    );
    assert_eq!(err.details().get("missing"), Some(&json!(["keys:write"])));
    assert_eq!(ctx.live().await, live_before, "refused keys are not stored");

    let narrow =
        ctx.service.create_key(ctx.new_key("narrow").with_scopes(scopes("keys:read")), &reader).await;
    let narrow = narrow.expect("an equal key is fine").key;
    let widen = KeyPatch { scopes: Some(scopes("keys:*")), ..KeyPatch::default() };
    let err =
        expect_err(ctx.service.update_key(ws, narrow.id, widen, &reader).await, ErrorCode::InsufficientScope);
    assert_eq!(err.details().get("missing"), Some(&json!(["keys:*"])));
    assert_eq!(ctx.stored(narrow.id).await, narrow);
    let rename = KeyPatch { name: Some("renamed".into()), ..KeyPatch::default() };
    ctx.service.update_key(ws, narrow.id, rename, &reader).await.expect("no scope change is fine");

    let wide = ctx.create(ctx.new_key("admin").with_scopes(scopes("keys:*"))).await.key;
    expect_err(ctx.service.rotate_key(ws, wide.id, None, &reader).await, ErrorCode::InsufficientScope);
    assert_eq!(ctx.stored(wide.id).await, wide);
    assert!(ctx.all_keys(ws).await.iter().all(|k| k.rotated_from != Some(wide.id)));

    let read_all = Actor::key(&ctx.create(ctx.new_key("read all").with_scopes(scopes("*:read"))).await.key);
    ctx.service
        .create_key(ctx.new_key("o").with_scopes(scopes("orders:read")), &read_all)
        .await
        .expect("covered");
    expect_err(
        ctx.service.create_key(ctx.new_key("o").with_scopes(scopes("orders:*")), &read_all).await,
        ErrorCode::InsufficientScope,
    );
    let root = Actor::key(&ctx.create(ctx.new_key("root").with_scopes(scopes("*"))).await.key);
    ctx.service.rotate_key(ws, wide.id, None, &root).await.expect("`*` covers everything");
}

/// A resource-restricted key can only hand out keys restricted to (some of) its resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_restricted_actor() {
    let store = memory();
    let ctx = setup(store).await;
    let ws = ctx.ws.id;
    let site_key = ctx
        .create(NewKey { resources: vec!["site-1".into()], ..ctx.new_key("site").with_scopes(scopes("*")) })
        .await;
    let actor = Actor::key(&site_key.key);
    let live_before = ctx.live().await;
    expect_err(
        ctx.service.create_key(ctx.new_key("everything"), &actor).await,
        ErrorCode::ResourceNotAllowed,
    );
    let other_site = NewKey { resources: vec!["site-2".into()], ..ctx.new_key("elsewhere") };
    let err = expect_err(ctx.service.create_key(other_site, &actor).await, ErrorCode::ResourceNotAllowed);
    assert_eq!(err.details().get("resources"), Some(&json!(["site-2"])));
    assert_eq!(ctx.live().await, live_before);

    let mine = NewKey { resources: vec!["site-1".into()], ..ctx.new_key("mine") };
    let mine = ctx.service.create_key(mine, &actor).await.expect("within its resources").key;
    let unrestrict = KeyPatch { resources: Some(Vec::new()), ..KeyPatch::default() };
    expect_err(ctx.service.update_key(ws, mine.id, unrestrict, &actor).await, ErrorCode::ResourceNotAllowed);
    assert_eq!(ctx.stored(mine.id).await.resources, vec!["site-1".to_owned()]);
    let open = ctx.key("unrestricted").await;
    expect_err(ctx.service.rotate_key(ws, open.id, None, &actor).await, ErrorCode::ResourceNotAllowed);
    assert_eq!(ctx.stored(open.id).await, open);
}

/// Every change leaves an audit event naming the acting key, its IP, user agent and request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_every_change() {
    let store = memory();
    let ctx = setup(store).await;
    let all = ctx.store.list_audit(&AuditQuery { limit: 100, ..AuditQuery::default() }).await.expect("audit");
    let setup_actions: Vec<AuditAction> = all.iter().rev().map(|e| e.action).collect();
    assert_eq!(setup_actions, vec![AuditAction::PlanSaved, AuditAction::WorkspaceCreated]);
    assert_eq!(all[1].workspace_id, None, "plan events belong to no workspace");
    assert_eq!(all[0].workspace_id, Some(ctx.ws.id));
    assert_eq!(all[0].actor_key_id, None, "the system acted");

    let admin = ctx.create(ctx.new_key("admin").with_scopes(scopes("*"))).await.key;
    let actor = Actor {
        ip: Some("198.51.100.4".into()),
        user_agent: Some("keyward-test/1.0".into()),
        request_id: Some("req-42".into()),
        ..Actor::key(&admin)
    };
    let s = &ctx.service;
    let ws = ctx.ws.id;
    let mut expected: Vec<(AuditAction, Option<KeyId>, DateTime<Utc>)> = Vec::new();
    let tick = || {
        ctx.clock.advance(Duration::minutes(1));
        ctx.now()
    };

    let t = tick();
    let rename_ws = WorkspacePatch { name: Some("Acme Inc".into()), ..WorkspacePatch::default() };
    s.update_workspace(ws, rename_ws, &actor).await.expect("update workspace");
    expected.push((AuditAction::WorkspaceUpdated, None, t));
    let t = tick();
    let key = s.create_key(ctx.new_key("audited"), &actor).await.expect("create").key;
    expected.push((AuditAction::KeyCreated, Some(key.id), t));
    let t = tick();
    let rename = KeyPatch { name: Some("renamed".into()), ..KeyPatch::default() };
    s.update_key(ws, key.id, rename, &actor).await.expect("update");
    expected.push((AuditAction::KeyUpdated, Some(key.id), t));
    let t = tick();
    s.deactivate_key(ws, key.id, &actor).await.expect("deactivate");
    expected.push((AuditAction::KeyDeactivated, Some(key.id), t));
    let t = tick();
    s.activate_key(ws, key.id, &actor).await.expect("activate");
    expected.push((AuditAction::KeyActivated, Some(key.id), t));
    let t = tick();
    let next = s.rotate_key(ws, key.id, Some(Duration::hours(1)), &actor).await.expect("rotate").key;
    expected.push((AuditAction::KeyRotated, Some(key.id), t));
    let t = tick();
    s.revoke_key(ws, next.id, &actor).await.expect("revoke");
    expected.push((AuditAction::KeyRevoked, Some(next.id), t));
    let t = tick();
    s.delete_key(ws, next.id, &actor).await.expect("delete");
    expected.push((AuditAction::KeyDeleted, Some(next.id), t));

    let page = s
        .audit_events(Some(ctx.ws.id), AuditFilter { limit: Some(100), ..AuditFilter::default() })
        .await
        .expect("audit");
    let by_actor: Vec<&AuditEvent> = page.items.iter().filter(|e| e.actor_key_id == Some(admin.id)).collect();
    let got: Vec<(AuditAction, Option<KeyId>, DateTime<Utc>)> =
        by_actor.iter().rev().map(|e| (e.action, e.key_id, e.at)).collect();
    assert_eq!(got, expected);
    for e in by_actor {
        assert_eq!(e.workspace_id, Some(ctx.ws.id));
        assert_eq!(e.ip.as_deref(), Some("198.51.100.4"));
        assert_eq!(e.user_agent.as_deref(), Some("keyward-test/1.0"));
        assert_eq!(e.request_id.as_deref(), Some("req-42"));
    }

    ctx.clock.advance(Duration::minutes(1));
    let plan = Plan { id: "pro".into(), ..Plan::default_plan() };
    s.save_plan(plan, &actor).await.expect("plan");
    let plans = s
        .audit_events(None, AuditFilter { action: Some(AuditAction::PlanSaved), ..AuditFilter::default() })
        .await
        .expect("audit");
    let newest = &plans.items[0];
    assert_eq!((newest.actor_key_id, newest.workspace_id, newest.at), (Some(admin.id), None, ctx.now()));
    assert_eq!(newest.request_id.as_deref(), Some("req-42"));

    ctx.clock.advance(Duration::minutes(1));
    let second = s.create_workspace(NewWorkspace::live("Second"), &actor).await.expect("workspace");
    let events = s.audit_events(Some(second.id), AuditFilter::default()).await.expect("audit").items;
    let [created] = events.as_slice() else { panic!("expected one event, got {events:?}") };
    assert_eq!(
        (created.action, created.actor_key_id, created.at),
        (AuditAction::WorkspaceCreated, Some(admin.id), ctx.now())
    );
    assert_eq!(
        (created.ip.as_deref(), created.user_agent.as_deref(), created.request_id.as_deref()),
        (Some("198.51.100.4"), Some("keyward-test/1.0"), Some("req-42"))
    );
}

/// Invalid input is refused with VALIDATION_FAILED naming the field, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_store_nothing() {
    let store = memory();
    let ctx = setup(store).await;
    let sys = Actor::system();
    let base = || ctx.new_key("valid");
    let many: BTreeMap<String, String> = (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let cases: Vec<(&str, NewKey)> = vec![
        ("name", NewKey { name: String::new(), ..base() }),
        ("name", NewKey { name: "   ".into(), ..base() }),
        ("name", NewKey { name: "x".repeat(101), ..base() }),
        ("name", NewKey { name: "line\nbreak".into(), ..base() }),
        ("metadata", NewKey { metadata: BTreeMap::from([(String::new(), "v".into())]), ..base() }),
        ("metadata", NewKey { metadata: BTreeMap::from([("k".into(), "v".repeat(513))]), ..base() }),
        ("metadata", NewKey { metadata: many, ..base() }),
        ("concurrencyLimit", NewKey { concurrency_limit: Some(0), ..base() }),
        ("credits", NewKey { credits: Some(-1), ..base() }),
        (
            "rateLimit",
            NewKey { rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_minute(0)])), ..base() },
        ),
        ("resources", NewKey { resources: vec![String::new()], ..base() }),
        ("resources", NewKey { resources: (0..101).map(|i| format!("r{i}")).collect(), ..base() }),
    ];
    for (field, new) in cases {
        let err = expect_err(ctx.service.create_key(new, &sys).await, ErrorCode::ValidationFailed);
        assert_eq!(err.details().get("field"), Some(&json!(field)), "{err}");
    }
    assert_eq!(ctx.live().await, 0);
    assert!(ctx.all_keys(ctx.ws.id).await.is_empty());

    let longest = ctx.create(NewKey { name: "y".repeat(100), ..base() }).await.key;
    let bad_patches = [
        KeyPatch { name: Some(String::new()), ..KeyPatch::default() },
        KeyPatch { concurrency_limit: Some(Some(0)), ..KeyPatch::default() },
        KeyPatch { resources: Some(vec!["bad\u{7}".into()]), ..KeyPatch::default() },
        KeyPatch {
            rate_limit: Some(Some(RateLimitPolicy::new([RateLimitWindow { limit: 1, period_secs: 0 }]))),
            ..KeyPatch::default()
        },
    ];
    for patch in bad_patches {
        expect_err(
            ctx.service.update_key(ctx.ws.id, longest.id, patch, &sys).await,
            ErrorCode::ValidationFailed,
        );
    }
    assert_eq!(ctx.stored(longest.id).await, longest);
    assert_eq!(ctx.events(longest.id).await.len(), 1);

    expect_err(ctx.service.create_workspace(NewWorkspace::live(""), &sys).await, ErrorCode::ValidationFailed);
    let bad_plan = Plan { id: "Not A Slug".into(), ..Plan::default_plan() };
    expect_err(ctx.service.save_plan(bad_plan, &sys).await, ErrorCode::ValidationFailed);
    assert_eq!(ctx.store.list_workspaces().await.expect("list").len(), 1);
    assert_eq!(ctx.store.list_plans().await.expect("list").len(), 1);
}
