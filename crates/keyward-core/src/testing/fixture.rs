//! The fixture shared by keyward-core's rule tests and keyward-store's contract suite: a
//! [`KeyService`] over a store with a [`ManualClock`] and one workspace, and builders for records
//! made by hand.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::{
    Actor, ApiKey, ApiKeySecret, AuditAction, AuditEvent, AuditEventId, AuditQuery, Clock, CreatedKey, Error,
    ErrorCode, KeyDigest, KeyEnvironment, KeyFormat, KeyHasher, KeyId, KeyListQuery, KeyService, KeyStatus,
    KeyStore, ManualClock, NewKey, NewWorkspace, Plan, PlanId, ScopeSet, Workspace, WorkspaceId,
};

/// A service over a store, with a manual clock and one workspace (`Acme`).
#[derive(Debug)]
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn KeyStore>,
    /// The clock the service reads.
    pub clock: Arc<ManualClock>,
    /// The service.
    pub service: KeyService,
    /// A live workspace on the default plan.
    pub ws: Workspace,
}

/// A [`Fixture`] over `store`, its clock starting now.
pub async fn setup(store: Arc<dyn KeyStore>) -> Fixture {
    setup_at(store, ManualClock::starting_now()).await
}

/// A [`Fixture`] over `store` with `clock`.
pub async fn setup_at(store: Arc<dyn KeyStore>, clock: ManualClock) -> Fixture {
    let clock = Arc::new(clock);
    let service = KeyService::new(store.clone()).with_clock(clock.clone());
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("workspace");
    Fixture { store, clock, service, ws }
}

impl Fixture {
    /// A new key request in the fixture's workspace.
    pub fn new_key(&self, name: &str) -> NewKey {
        NewKey::new(self.ws.id, name)
    }

    /// Creates a key as the system.
    pub async fn create(&self, new: NewKey) -> CreatedKey {
        self.service.create_key(new, &Actor::system()).await.expect("create key")
    }

    /// Creates a plain key named `name`.
    pub async fn key(&self, name: &str) -> ApiKey {
        self.create(self.new_key(name)).await.key
    }

    /// The key as stored.
    pub async fn stored(&self, id: KeyId) -> ApiKey {
        self.store.get_key(id).await.expect("get_key").expect("key is stored")
    }

    /// Every audit event about `key`, newest first.
    pub async fn events(&self, key: KeyId) -> Vec<AuditEvent> {
        let q = AuditQuery { key_id: Some(key), limit: 1000, ..AuditQuery::default() };
        self.store.list_audit(&q).await.expect("list_audit")
    }

    /// How many of `key`'s events are `action`.
    pub async fn count_events(&self, key: KeyId, action: AuditAction) -> usize {
        self.events(key).await.iter().filter(|e| e.action == action).count()
    }

    /// Every listed key of `ws`, newest first.
    pub async fn all_keys(&self, ws: WorkspaceId) -> Vec<ApiKey> {
        let q = KeyListQuery {
            workspace_id: ws,
            status: None,
            now: chrono::Utc::now(),
            before: None,
            limit: 1000,
        };
        self.store.list_keys(&q).await.expect("list_keys")
    }

    /// Keys of the workspace neither revoked nor deleted.
    pub async fn live(&self) -> u64 {
        self.store.count_live_keys(self.ws.id).await.expect("count_live_keys")
    }

    /// The clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// Asserts that `result` failed with `code`; returns the error.
#[track_caller]
pub fn expect_err<T: fmt::Debug>(result: Result<T, Error>, code: ErrorCode) -> Error {
    match result {
        Ok(v) => panic!("expected {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.code(), code, "unexpected error: {e}");
            e
        }
    }
}

/// Parses a scope set.
pub fn scopes(s: &str) -> ScopeSet {
    s.parse().expect("scope set")
}

/// The plain SHA-256 digest of a key.
pub fn digest_of(secret: &ApiKeySecret) -> KeyDigest {
    KeyHasher::sha256().hash(secret).digest
}

/// The ids of `keys`.
pub fn ids(keys: &[ApiKey]) -> Vec<KeyId> {
    keys.iter().map(|k| k.id).collect()
}

/// A key built by hand, for the cases that call the store directly.
pub fn raw_key(ws: WorkspaceId, now: DateTime<Utc>) -> ApiKey {
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
        refill: None,
        refilled_at: None,
        credits_low_threshold: None,
        ip_allowlist: Vec::new(),
        metadata: BTreeMap::new(),
        version: 1,
        leaked_at: None,
        leak_source: None,
        imported_at: None,
    }
}

/// An audit event built by hand.
pub fn raw_event(action: AuditAction, ws: WorkspaceId, key: KeyId, at: DateTime<Utc>) -> AuditEvent {
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
pub fn rotation_of(old: &ApiKey, now: DateTime<Utc>, credits: Option<i64>) -> (ApiKey, ApiKey) {
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

/// A date.
pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

/// A UTC time, to the minute.
pub fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().expect("time")
}

/// A workspace on a plan allowing `max` live keys.
pub async fn limited_workspace(ctx: &Fixture, max: u32) -> Workspace {
    let sys = Actor::system();
    let plan = Plan { id: PlanId(format!("max-{max}")), max_keys: Some(max), ..Plan::default_plan() };
    ctx.service.save_plan(plan.clone(), &sys).await.expect("plan");
    ctx.service
        .create_workspace(NewWorkspace::live("Limited").with_plan(plan.id), &sys)
        .await
        .expect("workspace")
}
