//! The contract every [`KeyStore`] backend must pass (feature `testing`).
//!
//! Each case is a public async function taking a fresh, empty store. Most go through
//! [`KeyService`], because the rules users rely on are the service's rules over the store; the
//! cases about atomicity (compare-and-swap, key limits, credits, audit events written with their
//! change) call the store directly. Nothing here knows which database is underneath.
//!
//! A backend's test binary runs the whole suite with [`keyward_store_contract!`](crate::keyward_store_contract), given an
//! async expression that makes a fresh store each time it is evaluated. The calling crate needs
//! `tokio` (features `macros`, `rt-multi-thread`) among its dev-dependencies.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! mod contract {
//!     use std::sync::Arc;
//!     use keyward_store::SqliteStore;
//!
//!     async fn fresh() -> Arc<SqliteStore> {
//!         Arc::new(SqliteStore::open("sqlite::memory:").await.expect("open"))
//!     }
//!
//!     keyward_store::keyward_store_contract!(fresh());
//! }
//! # fn main() {}
//! ```
//!
//! A backend whose database may be absent (PostgreSQL without `KEYWARD_TEST_POSTGRES_URL`)
//! uses the `optional` form, whose factory returns `Option<Arc<dyn KeyStore>>`: `None` prints
//! that the case was skipped.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use keyward_core::{
    Actor, ApiKey, ApiKeySecret, AuditAction, AuditEvent, AuditEventId, AuditFilter, AuditQuery, Clock,
    CreatedKey, CreditOutcome, Error, ErrorCode, KeyDigest, KeyEnvironment, KeyFilter, KeyFormat, KeyGuard,
    KeyHasher, KeyId, KeyListQuery, KeyPatch, KeyService, KeyStatus, KeyStore, ManualClock, NewKey,
    NewWorkspace, Plan, PlanId, RateLimitPolicy, RateLimitWindow, ScopeSet, StoreError, UsageBatch, UsageDay,
    Workspace, WorkspaceEnvironment, WorkspaceId, WorkspacePatch,
};
use serde_json::json;

/// Runs every contract case as a `#[tokio::test]` against the stores `$make` builds.
///
/// `$make` is an async expression evaluated once per case, e.g. `fresh_store()` for an
/// `async fn fresh_store() -> Arc<dyn KeyStore>` (any `Arc<impl KeyStore>` works too). With
/// `optional $make`, the expression yields an `Option` and `None` skips the case with a message.
/// See the [module docs](crate::contract).
#[macro_export]
macro_rules! keyward_store_contract {
    (optional $make:expr) => {
        $crate::keyward_store_contract!(@cases [optional] $make);
    };
    ($make:expr) => {
        $crate::keyward_store_contract!(@cases [required] $make);
    };
    (@cases [$mode:ident] $make:expr) => {
        $crate::keyward_store_contract!(@each [$mode] $make;
            create_returns_plaintext_once,
            find_key_by_digest,
            key_round_trips_every_field,
            list_filters_by_status,
            list_paginates_newest_first,
            pagination_is_stable_under_concurrent_inserts,
            other_workspace_keys_are_not_found,
            update_changes_settings_but_not_the_value,
            activate_and_deactivate,
            rotate_immediately,
            rotate_with_grace,
            rotate_twice_conflicts,
            concurrent_rotations_leave_one_successor,
            store_rotation_is_compare_and_swap,
            rotation_is_never_seen_half_done,
            revoke_is_idempotent,
            delete_requires_revocation,
            delete_after_revoke_hides_the_key,
            plan_without_api_access,
            plan_key_limit,
            concurrent_creates_at_the_key_limit,
            store_key_limit_counts_only_live_keys,
            expiry_is_validated_and_stored,
            keys_cannot_mint_wider_keys,
            resource_restricted_actor,
            audit_records_every_change,
            audit_list_filters_and_pages,
            audit_purge_keeps_recent_events,
            consume_credits_outcomes,
            concurrent_consumption_never_goes_negative,
            usage_counts_per_day,
            update_key_conflicts_on_a_stale_version,
            update_key_leaves_credits_and_last_use,
            duplicates_are_rejected,
            writes_are_atomic_with_their_audit_event,
            validation_errors_store_nothing,
            plans_and_workspaces,
            guarded_updates_keep_a_key_admin,
            concurrent_guarded_updates_keep_a_key_admin,
            list_filter_sees_ended_grace_as_revoked,
        );
    };
    (@each [$mode:ident] $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $crate::keyward_store_contract!(@store [$mode] $make, $case);
                $crate::contract::$case(store).await;
            }
        )+
    };
    (@store [required] $make:expr, $case:ident) => {
        $make.await
    };
    (@store [optional] $make:expr, $case:ident) => {
        match $make.await {
            ::std::option::Option::Some(store) => store,
            ::std::option::Option::None => {
                ::std::eprintln!("skipped {}: no store configured", ::std::stringify!($case));
                return;
            }
        }
    };
}

// ---- helpers ---------------------------------------------------------------------------------

struct Ctx {
    store: Arc<dyn KeyStore>,
    clock: Arc<ManualClock>,
    service: KeyService,
    ws: Workspace,
}

async fn setup(store: Arc<dyn KeyStore>) -> Ctx {
    setup_at(store, ManualClock::starting_now()).await
}

async fn setup_at(store: Arc<dyn KeyStore>, clock: ManualClock) -> Ctx {
    let clock = Arc::new(clock);
    let service = KeyService::new(store.clone()).with_clock(clock.clone());
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("workspace");
    Ctx { store, clock, service, ws }
}

impl Ctx {
    fn new_key(&self, name: &str) -> NewKey {
        NewKey::new(self.ws.id, name)
    }

    async fn create(&self, new: NewKey) -> CreatedKey {
        self.service.create_key(new, &Actor::system()).await.expect("create key")
    }

    async fn key(&self, name: &str) -> ApiKey {
        self.create(self.new_key(name)).await.key
    }

    async fn stored(&self, id: KeyId) -> ApiKey {
        self.store.get_key(id).await.expect("get_key").expect("key is stored")
    }

    async fn events(&self, key: KeyId) -> Vec<AuditEvent> {
        let q = AuditQuery { key_id: Some(key), limit: 1000, ..AuditQuery::default() };
        self.store.list_audit(&q).await.expect("list_audit")
    }

    async fn count_events(&self, key: KeyId, action: AuditAction) -> usize {
        self.events(key).await.iter().filter(|e| e.action == action).count()
    }

    async fn all_keys(&self, ws: WorkspaceId) -> Vec<ApiKey> {
        let q = KeyListQuery {
            workspace_id: ws,
            status: None,
            now: chrono::Utc::now(),
            before: None,
            limit: 1000,
        };
        self.store.list_keys(&q).await.expect("list_keys")
    }

    async fn live(&self) -> u64 {
        self.store.count_live_keys(self.ws.id).await.expect("count_live_keys")
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

#[track_caller]
fn expect_err<T: fmt::Debug>(result: Result<T, Error>, code: ErrorCode) -> Error {
    match result {
        Ok(v) => panic!("expected {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.code(), code, "unexpected error: {e}");
            e
        }
    }
}

fn scopes(s: &str) -> ScopeSet {
    s.parse().expect("scope set")
}

fn digest_of(secret: &ApiKeySecret) -> KeyDigest {
    KeyHasher::sha256().hash(secret).digest
}

fn ids(keys: &[ApiKey]) -> Vec<KeyId> {
    keys.iter().map(|k| k.id).collect()
}

/// A key built by hand, for the cases that call the store directly.
fn raw_key(ws: WorkspaceId, now: DateTime<Utc>) -> ApiKey {
    let secret = KeyFormat::default().generate(KeyEnvironment::Live);
    let plain = secret.expose_secret();
    ApiKey {
        id: KeyId::new(),
        workspace_id: ws,
        name: "raw".into(),
        environment: KeyEnvironment::Live,
        prefix: plain[..12].to_owned(),
        last4: plain[plain.len() - 4..].to_owned(),
        hash: KeyHasher::sha256().hash(&secret),
        scopes: ScopeSet::empty(),
        resources: Vec::new(),
        status: KeyStatus::Active,
        deleted_at: None,
        revoked_at: None,
        created_at: now,
        created_ip: None,
        updated_at: now,
        last_used_at: None,
        expires_at: None,
        rotated_from: None,
        rotated_to: None,
        grace_ends_at: None,
        rate_limit: None,
        concurrency_limit: None,
        credits: None,
        metadata: BTreeMap::new(),
        version: 1,
    }
}

fn raw_event(action: AuditAction, ws: WorkspaceId, key: KeyId, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::new(),
        workspace_id: Some(ws),
        action,
        key_id: Some(key),
        actor_key_id: None,
        ip: None,
        user_agent: None,
        request_id: None,
        at,
    }
}

/// `old` as a rotation leaves it, and its successor (claiming `credits`, which the store must
/// ignore in favour of the stored balance).
fn rotation_of(old: &ApiKey, now: DateTime<Utc>, credits: Option<i64>) -> (ApiKey, ApiKey) {
    let mut new = raw_key(old.workspace_id, now);
    new.rotated_from = Some(old.id);
    new.credits = credits;
    let mut retired = old.clone();
    retired.rotated_to = Some(new.id);
    retired.status = KeyStatus::Revoked;
    retired.revoked_at = Some(now);
    retired.updated_at = now;
    retired.version += 1;
    (retired, new)
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().expect("time")
}

// ---- creation and lookup ---------------------------------------------------------------------

/// Creating a key returns its plaintext once; only its hash and display parts are stored.
pub async fn create_returns_plaintext_once(store: Arc<dyn KeyStore>) {
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
    ctx.store
        .insert_key(&raw, None, &raw_event(AuditAction::KeyCreated, ctx.ws.id, raw.id, now))
        .await
        .expect("insert");
    assert_eq!(ctx.stored(raw.id).await, raw);
    assert_eq!(ctx.store.find_key_by_digest(&raw.hash.digest).await.expect("find"), Some(raw));
}

// ---- listing ---------------------------------------------------------------------------------

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

/// Another workspace's key is invisible: every operation on it answers NOT_FOUND.
pub async fn other_workspace_keys_are_not_found(store: Arc<dyn KeyStore>) {
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

// ---- changes -----------------------------------------------------------------------------------

/// Updating settings keeps the key's id and value; every setting is written and read back.
pub async fn update_changes_settings_but_not_the_value(store: Arc<dyn KeyStore>) {
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
    };
    let after = ctx.service.update_key(ctx.ws.id, before.id, patch, &Actor::system()).await.expect("update");
    assert_eq!(after.name, "after");
    assert_eq!(after.scopes, scopes("orders:write"));
    assert_eq!(after.resources, vec!["site-9".to_owned()]);
    assert_eq!(after.status, KeyStatus::Inactive);
    assert_eq!(after.expires_at, Some(ctx.now() + Duration::days(2)));
    assert_eq!(after.rate_limit, Some(RateLimitPolicy::new([RateLimitWindow::per_second(2)])));
    assert_eq!(after.concurrency_limit, Some(4));
    assert_eq!(after.metadata.get("k").map(String::as_str), Some("v"));
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
pub async fn activate_and_deactivate(store: Arc<dyn KeyStore>) {
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

// ---- rotation ----------------------------------------------------------------------------------

/// An immediate rotation revokes the old key and hands its configuration and credits to a new one.
pub async fn rotate_immediately(store: Arc<dyn KeyStore>) {
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
pub async fn rotate_with_grace(store: Arc<dyn KeyStore>) {
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
pub async fn rotate_twice_conflicts(store: Arc<dyn KeyStore>) {
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

// ---- revocation and deletion -------------------------------------------------------------------

/// Revoking is final and idempotent: a second revocation changes nothing.
pub async fn revoke_is_idempotent(store: Arc<dyn KeyStore>) {
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
pub async fn delete_requires_revocation(store: Arc<dyn KeyStore>) {
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
pub async fn delete_after_revoke_hides_the_key(store: Arc<dyn KeyStore>) {
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

// ---- plans -------------------------------------------------------------------------------------

/// A plan without API access refuses new keys and rotations.
pub async fn plan_without_api_access(store: Arc<dyn KeyStore>) {
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

async fn limited_workspace(ctx: &Ctx, max: u32) -> Workspace {
    let sys = Actor::system();
    let plan = Plan { id: PlanId(format!("max-{max}")), max_keys: Some(max), ..Plan::default_plan() };
    ctx.service.save_plan(plan.clone(), &sys).await.expect("plan");
    ctx.service
        .create_workspace(NewWorkspace::live("Limited").with_plan(plan.id), &sys)
        .await
        .expect("workspace")
}

/// A plan's key limit counts keys that are neither revoked nor deleted.
pub async fn plan_key_limit(store: Arc<dyn KeyStore>) {
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

// ---- expiry and powers -------------------------------------------------------------------------

/// Expiry must lie in the future; it is stored and returned to the millisecond.
pub async fn expiry_is_validated_and_stored(store: Arc<dyn KeyStore>) {
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
pub async fn keys_cannot_mint_wider_keys(store: Arc<dyn KeyStore>) {
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
pub async fn resource_restricted_actor(store: Arc<dyn KeyStore>) {
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

// ---- audit -------------------------------------------------------------------------------------

/// Every change leaves an audit event naming the acting key, its IP, user agent and request id.
pub async fn audit_records_every_change(store: Arc<dyn KeyStore>) {
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

// ---- credits and usage ---------------------------------------------------------------------------

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
}

// ---- the store's compare-and-swap --------------------------------------------------------------

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

/// Invalid input is refused with VALIDATION_FAILED naming the field, and nothing is stored.
pub async fn validation_errors_store_nothing(store: Arc<dyn KeyStore>) {
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
    };
    let updated = ctx.service.update_workspace(sandbox.id, patch, &sys).await.expect("update");
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

fn admin_key(ctx: &Ctx, name: &str) -> NewKey {
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
