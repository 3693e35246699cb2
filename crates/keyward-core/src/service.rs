//! [`KeyService`]: every lifecycle rule, over any [`KeyStore`].
//!
//! ```
//! # use std::sync::Arc;
//! # use keyward_core::*;
//! # async fn demo(store: Arc<dyn KeyStore>) -> Result<(), Error> {
//! let service = KeyService::new(store);
//! let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await?;
//! let created = service
//!     .create_key(NewKey::new(ws.id, "CI pipeline").with_scopes("keys:read".parse().unwrap()), &Actor::system())
//!     .await?;
//! // The plaintext exists only here, once.
//! let _plaintext = created.secret.expose_secret();
//! service.revoke_key(ws.id, created.key.id, &Actor::system()).await?;
//! service.delete_key(ws.id, created.key.id, &Actor::system()).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use crate::clock::{Clock, SystemClock, truncate_ms};
use crate::error::{Error, ErrorCode};
use crate::format::KeyFormat;
use crate::hash::KeyHasher;
use crate::model::{
    ApiKey, AuditAction, AuditEvent, AuditEventId, KeyId, KeyStatus, Plan, PlanId, RateLimitPolicy, UsageDay,
    Workspace, WorkspaceEnvironment, WorkspaceId,
};
use crate::scope::ScopeSet;
use crate::secret::ApiKeySecret;
use crate::store::{AuditQuery, KeyGuard, KeyListQuery, KeyStore, StoreError};

/// Default audit retention: 90 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::days(90);
/// Default longest grace period a rotation may ask for: 30 days.
pub const DEFAULT_MAX_GRACE: Duration = Duration::days(30);
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Page size when none is given.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Latest year a timestamp may have: RFC 3339 writes years with exactly four digits.
pub const MAX_YEAR: i32 = 9999;
const MAX_NAME_LEN: usize = 100;
const MAX_RESOURCES: usize = 100;
const MAX_METADATA: usize = 50;

/// Who performs a change, and from where. Recorded in the audit log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actor {
    /// The key that acts; `None` for the system (CLI, first start, internal jobs).
    pub key: Option<ActorKey>,
    /// The caller's IP address.
    pub ip: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
}

/// The acting key's powers: it can never give another key more than these, nor act on a key
/// that has more.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorKey {
    /// Id of the acting key.
    pub id: KeyId,
    /// The acting key's own workspace (not the one it may act on with `X-Workspace-Id`).
    pub workspace_id: WorkspaceId,
    /// Its scopes.
    pub scopes: ScopeSet,
    /// Its resource restrictions (empty: unrestricted).
    pub resources: Vec<String>,
}

impl Actor {
    /// The system itself: unrestricted.
    pub fn system() -> Self {
        Self::default()
    }

    /// A key acting.
    pub fn key(key: &ApiKey) -> Self {
        Self {
            key: Some(ActorKey {
                id: key.id,
                workspace_id: key.workspace_id,
                scopes: key.scopes.clone(),
                resources: key.resources.clone(),
            }),
            ..Self::default()
        }
    }

    /// Whether this actor may hand out `scopes` and `resources`.
    fn check_grant(&self, scopes: &ScopeSet, resources: &[String]) -> Result<(), Error> {
        self.check_covers(scopes, resources, "grant")
    }

    /// Whether this actor may act on `target` at all: a key never acts on a wider key (one whose
    /// scopes or resources it does not cover), whatever the action.
    fn check_acts_on(&self, target: &ApiKey) -> Result<(), Error> {
        self.check_covers(&target.scopes, &target.resources, "act on a key with")
    }

    fn check_covers(&self, scopes: &ScopeSet, resources: &[String], verb: &str) -> Result<(), Error> {
        let Some(me) = &self.key else { return Ok(()) };
        let missing = me.scopes.uncovered(scopes);
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
            return Err(Error::new(
                ErrorCode::InsufficientScope,
                format!("a key cannot {verb} scopes beyond its own"),
            )
            .with_detail("missing", names));
        }
        if me.resources.is_empty() {
            return Ok(());
        }
        if resources.is_empty() {
            return Err(Error::new(
                ErrorCode::ResourceNotAllowed,
                format!("a resource-restricted key cannot {verb} unrestricted resources"),
            ));
        }
        let outside: Vec<String> = resources.iter().filter(|r| !me.resources.contains(r)).cloned().collect();
        if !outside.is_empty() {
            return Err(Error::new(
                ErrorCode::ResourceNotAllowed,
                format!("a key cannot {verb} resources beyond its own"),
            )
            .with_detail("resources", outside));
        }
        Ok(())
    }

    /// Refuses a change that would take API access away from the acting key itself: with
    /// `api_access` false on the plan of the key's own workspace, every request, including the
    /// one that would undo it, would be refused.
    fn check_keeps_own_access(&self, workspace: WorkspaceId, plan: &Plan) -> Result<(), Error> {
        match &self.key {
            Some(me) if me.workspace_id == workspace && !plan.api_access => Err(Error::new(
                ErrorCode::SelfLockout,
                "the change would remove the calling key's own API access (its workspace's plan \
                 would have no API access); make it with a key of another workspace or the CLI",
            )
            .with_detail("plan", plan.id.0.clone())),
            _ => Ok(()),
        }
    }
}

/// A request to create a workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkspace {
    /// Display name.
    pub name: String,
    /// Plan; `None` for the default plan (created if missing).
    pub plan_id: Option<PlanId>,
    /// Live or sandbox.
    pub environment: WorkspaceEnvironment,
    /// Workspace-wide limit; `None` for the environment's default.
    pub rate_limit: Option<RateLimitPolicy>,
}

impl NewWorkspace {
    /// A live workspace on the default plan.
    pub fn live(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            plan_id: None,
            environment: WorkspaceEnvironment::Live,
            rate_limit: None,
        }
    }
    /// A sandbox workspace on the default plan.
    pub fn sandbox(name: &str) -> Self {
        Self { environment: WorkspaceEnvironment::Sandbox, ..Self::live(name) }
    }
    /// On another plan.
    pub fn with_plan(mut self, plan: PlanId) -> Self {
        self.plan_id = Some(plan);
        self
    }
}

/// Changes to a workspace; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkspacePatch {
    /// New name.
    pub name: Option<String>,
    /// New plan.
    pub plan_id: Option<PlanId>,
    /// New limit (`Some(None)` returns to the environment's default).
    pub rate_limit: Option<Option<RateLimitPolicy>>,
}

/// A request to create a key.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Descriptive name.
    pub name: String,
    /// Scopes.
    pub scopes: ScopeSet,
    /// Resource restrictions (empty: all).
    pub resources: Vec<String>,
    /// Starts active (default) or inactive.
    pub active: bool,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Own rate limit.
    pub rate_limit: Option<RateLimitPolicy>,
    /// In-flight limit.
    pub concurrency_limit: Option<u32>,
    /// Starting credits (`None`: the key does not use credits).
    pub credits: Option<i64>,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
}

impl NewKey {
    /// An active key without scopes, limits or expiry.
    pub fn new(workspace_id: WorkspaceId, name: &str) -> Self {
        Self {
            workspace_id,
            name: name.to_owned(),
            scopes: ScopeSet::empty(),
            resources: Vec::new(),
            active: true,
            expires_at: None,
            rate_limit: None,
            concurrency_limit: None,
            credits: None,
            metadata: BTreeMap::new(),
        }
    }
    /// With scopes.
    pub fn with_scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = scopes;
        self
    }
}

/// Changes to a key; `None` fields stay as they are. The key's value never changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPatch {
    /// New name.
    pub name: Option<String>,
    /// New scopes.
    pub scopes: Option<ScopeSet>,
    /// New resource restrictions.
    pub resources: Option<Vec<String>>,
    /// Switch on or off.
    pub active: Option<bool>,
    /// New expiry (`Some(None)` removes it).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New rate limit (`Some(None)` returns to the plan's).
    pub rate_limit: Option<Option<RateLimitPolicy>>,
    /// New in-flight limit (`Some(None)` removes it).
    pub concurrency_limit: Option<Option<u32>>,
    /// New labels (replace all).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A key just created or rotated, with its plaintext: shown once, never stored.
#[derive(Debug)]
pub struct CreatedKey {
    /// The stored record.
    pub key: ApiKey,
    /// The plaintext.
    pub secret: ApiKeySecret,
}

/// One page of a list, with the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Opaque cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Paging and filtering for [`KeyService::list_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only this status.
    pub status: Option<KeyStatus>,
    /// Cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size (1 to [`MAX_PAGE_SIZE`], default [`DEFAULT_PAGE_SIZE`]).
    pub limit: Option<u32>,
}

/// Paging and filtering for [`KeyService::audit_events`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events about this key.
    pub key_id: Option<KeyId>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// From this time on.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// Cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
}

/// Told of every key change this node makes, e.g. to drop a cache entry at once. The service
/// awaits every listener before the change's call returns.
#[async_trait::async_trait]
pub trait KeyChangeListener: Send + Sync + fmt::Debug + 'static {
    /// `key` is the record as it now stands.
    async fn key_changed(&self, key: &ApiKey);

    /// A workspace changed; [`WorkspaceId`] nil means a plan changed, which may affect every
    /// workspace.
    async fn workspace_changed(&self, _workspace: WorkspaceId) {}
}

/// The lifecycle rules. See the [module docs](self).
#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    format: KeyFormat,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    audit_retention: Duration,
    max_grace: Duration,
    listeners: Arc<RwLock<Vec<Arc<dyn KeyChangeListener>>>>,
}

impl fmt::Debug for KeyService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyService")
            .field("store", &self.store)
            .field("format", &self.format)
            .field("hasher", &self.hasher)
            .field("audit_retention", &self.audit_retention)
            .finish_non_exhaustive()
    }
}

impl KeyService {
    /// A service with the default key format (`kw`), SHA-256 hashing, the system clock and a
    /// 90-day audit retention.
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            store,
            format: KeyFormat::default(),
            hasher: KeyHasher::sha256(),
            clock: Arc::new(SystemClock),
            audit_retention: DEFAULT_AUDIT_RETENTION,
            max_grace: DEFAULT_MAX_GRACE,
            listeners: Arc::default(),
        }
    }

    /// Uses another key format.
    pub fn with_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }
    /// Uses another hasher (e.g. HMAC with a pepper).
    pub fn with_hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }
    /// Uses another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Keeps audit events this long.
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention;
        self
    }
    /// Longest grace period a rotation may ask for.
    pub fn with_max_grace(mut self, max: Duration) -> Self {
        self.max_grace = max;
        self
    }

    /// Registers a listener for key changes made through this service.
    pub fn subscribe(&self, listener: Arc<dyn KeyChangeListener>) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).push(listener);
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }
    /// The key format.
    pub fn format(&self) -> &KeyFormat {
        &self.format
    }
    /// The hasher.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }
    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn event(
        &self,
        action: AuditAction,
        ws: Option<WorkspaceId>,
        key: Option<KeyId>,
        actor: &Actor,
    ) -> AuditEvent {
        AuditEvent {
            id: AuditEventId::new(),
            workspace_id: ws,
            action,
            key_id: key,
            actor_key_id: actor.key.as_ref().map(|k| k.id),
            ip: actor.ip.clone(),
            user_agent: actor.user_agent.clone(),
            request_id: actor.request_id.clone(),
            at: self.clock.now(),
        }
    }

    fn listeners(&self) -> Vec<Arc<dyn KeyChangeListener>> {
        self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn notify(&self, key: &ApiKey) {
        for l in self.listeners() {
            l.key_changed(key).await;
        }
    }

    async fn notify_workspace(&self, ws: WorkspaceId) {
        for l in self.listeners() {
            l.workspace_changed(ws).await;
        }
    }

    // ---- plans and workspaces ----------------------------------------------------------

    /// Creates or replaces a plan.
    pub async fn save_plan(&self, plan: Plan, actor: &Actor) -> Result<Plan, Error> {
        validate_slug("id", &plan.id.0)?;
        validate_name(&plan.name)?;
        plan.key_rate_limit.validate().map_err(|r| Error::validation("keyRateLimit", r))?;
        if let Some(me) = &actor.key
            && !plan.api_access
            && let Some(own) = self.store.get_workspace(me.workspace_id).await?
            && own.plan_id == plan.id
        {
            actor.check_keeps_own_access(own.id, &plan)?;
        }
        self.store.save_plan(&plan, &self.event(AuditAction::PlanSaved, None, None, actor)).await?;
        // Every workspace on the plan is affected; listeners drop what they cached.
        self.notify_workspace(WorkspaceId(uuid::Uuid::nil())).await;
        Ok(plan)
    }

    /// A plan.
    pub async fn get_plan(&self, id: &PlanId) -> Result<Plan, Error> {
        self.store.get_plan(id).await?.ok_or_else(|| Error::not_found("plan"))
    }

    /// Every plan.
    pub async fn list_plans(&self) -> Result<Vec<Plan>, Error> {
        Ok(self.store.list_plans().await?)
    }

    /// Creates a workspace. Without a plan it uses `default`, creating that plan if needed.
    pub async fn create_workspace(&self, new: NewWorkspace, actor: &Actor) -> Result<Workspace, Error> {
        validate_name(&new.name)?;
        if let Some(p) = &new.rate_limit {
            p.validate().map_err(|r| Error::validation("rateLimit", r))?;
        }
        let plan_id = match new.plan_id {
            Some(id) => {
                self.store.get_plan(&id).await?.ok_or_else(|| Error::validation("planId", "no such plan"))?;
                id
            }
            None => {
                let default = Plan::default_plan();
                if self.store.get_plan(&default.id).await?.is_none() {
                    self.save_plan(default.clone(), actor).await?;
                }
                default.id
            }
        };
        let ws = Workspace {
            id: WorkspaceId::new(),
            name: new.name,
            plan_id,
            environment: new.environment,
            rate_limit: new.rate_limit,
            created_at: self.clock.now(),
        };
        let ev = self.event(AuditAction::WorkspaceCreated, Some(ws.id), None, actor);
        self.store.insert_workspace(&ws, &ev).await?;
        Ok(ws)
    }

    /// Changes a workspace.
    pub async fn update_workspace(
        &self,
        id: WorkspaceId,
        patch: WorkspacePatch,
        actor: &Actor,
    ) -> Result<Workspace, Error> {
        let mut ws = self.get_workspace(id).await?;
        if let Some(name) = patch.name {
            validate_name(&name)?;
            ws.name = name;
        }
        if let Some(plan) = patch.plan_id {
            let plan = self
                .store
                .get_plan(&plan)
                .await?
                .ok_or_else(|| Error::validation("planId", "no such plan"))?;
            actor.check_keeps_own_access(ws.id, &plan)?;
            ws.plan_id = plan.id;
        }
        if let Some(rl) = patch.rate_limit {
            if let Some(p) = &rl {
                p.validate().map_err(|r| Error::validation("rateLimit", r))?;
            }
            ws.rate_limit = rl;
        }
        let ev = self.event(AuditAction::WorkspaceUpdated, Some(ws.id), None, actor);
        self.store.update_workspace(&ws, &ev).await?;
        self.notify_workspace(ws.id).await;
        Ok(ws)
    }

    /// A workspace.
    pub async fn get_workspace(&self, id: WorkspaceId) -> Result<Workspace, Error> {
        self.store.get_workspace(id).await?.ok_or_else(|| Error::not_found("workspace"))
    }

    /// Every workspace.
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, Error> {
        Ok(self.store.list_workspaces().await?)
    }

    // ---- keys ------------------------------------------------------------------------

    /// Creates a key; the plaintext is in the result and nowhere else.
    ///
    /// Errors: `VALIDATION_FAILED`, `NOT_FOUND` (workspace), `FEATURE_NOT_IN_PLAN`,
    /// `KEY_LIMIT_REACHED`, `INSUFFICIENT_SCOPE`/`RESOURCE_NOT_ALLOWED` (wider than the actor).
    pub async fn create_key(&self, mut new: NewKey, actor: &Actor) -> Result<CreatedKey, Error> {
        let now = self.clock.now();
        // Stores keep milliseconds: return exactly what a later read will return.
        new.expires_at = new.expires_at.map(truncate_ms);
        validate_name(&new.name)?;
        validate_resources(&new.resources)?;
        validate_metadata(&new.metadata)?;
        validate_expiry(new.expires_at, now)?;
        if let Some(p) = &new.rate_limit {
            p.validate().map_err(|r| Error::validation("rateLimit", r))?;
        }
        if new.concurrency_limit == Some(0) {
            return Err(Error::validation("concurrencyLimit", "must be at least 1"));
        }
        if new.credits.is_some_and(|c| c < 0) {
            return Err(Error::validation("credits", "must not be negative"));
        }
        actor.check_grant(&new.scopes, &new.resources)?;
        let ws = self.get_workspace(new.workspace_id).await?;
        let plan = self.plan_allowing_api(&ws).await?;

        let secret = self.format.generate(ws.environment.key_environment());
        let key = ApiKey {
            id: KeyId::new(),
            workspace_id: ws.id,
            name: new.name,
            environment: ws.environment.key_environment(),
            prefix: display_prefix(&secret),
            last4: display_last4(&secret),
            hash: self.hasher.hash(&secret),
            scopes: new.scopes,
            resources: new.resources,
            status: if new.active { KeyStatus::Active } else { KeyStatus::Inactive },
            deleted_at: None,
            revoked_at: None,
            created_at: now,
            created_ip: actor.ip.clone(),
            updated_at: now,
            last_used_at: None,
            expires_at: new.expires_at,
            rotated_from: None,
            rotated_to: None,
            grace_ends_at: None,
            rate_limit: new.rate_limit,
            concurrency_limit: new.concurrency_limit,
            credits: new.credits,
            metadata: new.metadata,
            version: 1,
        };
        let ev = self.event(AuditAction::KeyCreated, Some(ws.id), Some(key.id), actor);
        self.store.insert_key(&key, plan.max_keys, &ev).await?;
        Ok(CreatedKey { key, secret })
    }

    async fn plan_allowing_api(&self, ws: &Workspace) -> Result<Plan, Error> {
        let plan = self
            .store
            .get_plan(&ws.plan_id)
            .await?
            .ok_or_else(|| Error::internal(format!("workspace {} names a missing plan", ws.id)))?;
        if !plan.api_access {
            return Err(Error::new(
                ErrorCode::FeatureNotInPlan,
                "the workspace's plan does not include API access",
            )
            .with_detail("plan", plan.id.0.clone()));
        }
        Ok(plan)
    }

    /// A key of `workspace`; deleted keys and other workspaces' keys are `NOT_FOUND`.
    pub async fn get_key(&self, workspace: WorkspaceId, id: KeyId) -> Result<ApiKey, Error> {
        match self.store.get_key(id).await? {
            Some(k) if k.workspace_id == workspace && k.deleted_at.is_none() => {
                Ok(k.settled(self.clock.now()))
            }
            _ => Err(Error::not_found("key")),
        }
    }

    /// A page of a workspace's keys, newest first.
    pub async fn list_keys(&self, workspace: WorkspaceId, filter: KeyFilter) -> Result<Page<ApiKey>, Error> {
        let limit = page_size(filter.limit)?;
        let before = filter.cursor.as_deref().map(decode_cursor).transpose()?.map(KeyId);
        let mut items = self
            .store
            .list_keys(&KeyListQuery {
                workspace_id: workspace,
                status: filter.status,
                now: self.clock.now(),
                before,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = next_cursor(&mut items, limit, |k| k.id.0);
        let now = self.clock.now();
        Ok(Page { items: items.into_iter().map(|k| k.settled(now)).collect(), next_cursor })
    }

    /// Changes a key's settings; its value stays the same.
    pub async fn update_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        mut patch: KeyPatch,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        let now = self.clock.now();
        patch.expires_at = patch.expires_at.map(|e| e.map(truncate_ms));
        if let Some(n) = &patch.name {
            validate_name(n)?;
        }
        if let Some(r) = &patch.resources {
            validate_resources(r)?;
        }
        if let Some(m) = &patch.metadata {
            validate_metadata(m)?;
        }
        if let Some(e) = patch.expires_at {
            validate_expiry(e, now)?;
        }
        if let Some(Some(p)) = &patch.rate_limit {
            p.validate().map_err(|r| Error::validation("rateLimit", r))?;
        }
        if patch.concurrency_limit == Some(Some(0)) {
            return Err(Error::validation("concurrencyLimit", "must be at least 1"));
        }
        self.modify(workspace, id, actor, AuditAction::KeyUpdated, |key| {
            if key.status == KeyStatus::Revoked {
                return Err(Error::new(ErrorCode::Conflict, "a revoked key cannot be changed"));
            }
            let scopes = patch.scopes.clone().unwrap_or_else(|| key.scopes.clone());
            let resources = patch.resources.clone().unwrap_or_else(|| key.resources.clone());
            if patch.scopes.is_some() || patch.resources.is_some() {
                actor.check_grant(&scopes, &resources)?;
            }
            key.scopes = scopes;
            key.resources = resources;
            if let Some(n) = &patch.name {
                key.name = n.clone();
            }
            if let Some(active) = patch.active {
                key.status = if active { KeyStatus::Active } else { KeyStatus::Inactive };
            }
            if let Some(e) = patch.expires_at {
                key.expires_at = e;
            }
            if let Some(r) = &patch.rate_limit {
                key.rate_limit = r.clone();
            }
            if let Some(c) = patch.concurrency_limit {
                key.concurrency_limit = c;
            }
            if let Some(m) = &patch.metadata {
                key.metadata = m.clone();
            }
            Ok(true)
        })
        .await
    }

    /// Switches a key on. Revoked keys cannot be.
    pub async fn activate_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        self.set_active(workspace, id, actor, true).await
    }

    /// Switches a key off until it is activated again.
    pub async fn deactivate_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        self.set_active(workspace, id, actor, false).await
    }

    async fn set_active(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
        active: bool,
    ) -> Result<ApiKey, Error> {
        let (target, action) = if active {
            (KeyStatus::Active, AuditAction::KeyActivated)
        } else {
            (KeyStatus::Inactive, AuditAction::KeyDeactivated)
        };
        self.modify(workspace, id, actor, action, |key| match key.status {
            KeyStatus::Revoked => {
                Err(Error::new(ErrorCode::Conflict, "a revoked key cannot be activated or deactivated"))
            }
            s if s == target => Ok(false),
            _ => {
                key.status = target;
                Ok(true)
            }
        })
        .await
    }

    /// Revokes a key for good. Revoking a revoked key changes nothing.
    pub async fn revoke_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
    ) -> Result<ApiKey, Error> {
        let now = self.clock.now();
        self.modify(workspace, id, actor, AuditAction::KeyRevoked, |key| {
            if key.status == KeyStatus::Revoked {
                return Ok(false);
            }
            key.status = KeyStatus::Revoked;
            key.revoked_at = Some(now);
            Ok(true)
        })
        .await
    }

    /// Deletes a revoked key (soft: the row stays for the audit log, the API no longer shows it).
    /// `KEY_NOT_REVOKED` (409) unless the key is revoked.
    pub async fn delete_key(&self, workspace: WorkspaceId, id: KeyId, actor: &Actor) -> Result<(), Error> {
        let now = self.clock.now();
        self.modify(workspace, id, actor, AuditAction::KeyDeleted, |key| {
            if key.status != KeyStatus::Revoked {
                return Err(Error::new(
                    ErrorCode::KeyNotRevoked,
                    "only a revoked key can be deleted; revoke it first",
                ));
            }
            key.deleted_at = Some(now);
            Ok(true)
        })
        .await
        .map(drop)
    }

    /// Issues a new value with the same configuration. The old key stops at once, or at the end
    /// of `grace` when one is given (at most the configured maximum).
    pub async fn rotate_key(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        grace: Option<Duration>,
        actor: &Actor,
    ) -> Result<CreatedKey, Error> {
        let grace = grace.filter(|g| !g.is_zero());
        if let Some(g) = grace
            && (g < Duration::zero() || g > self.max_grace)
        {
            return Err(Error::validation(
                "graceSeconds",
                format!("must be between 0 and {}", self.max_grace.num_seconds()),
            ));
        }
        loop {
            let now = self.clock.now();
            let old = self.get_key(workspace, id).await?;
            if old.status == KeyStatus::Revoked {
                return Err(Error::new(ErrorCode::Conflict, "a revoked key cannot be rotated"));
            }
            if old.rotated_to.is_some() {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    "the key was already rotated; rotate its successor",
                )
                .with_detail("successor", old.rotated_to.map(|k| k.to_string())));
            }
            // Rotating hands out a new plaintext, so the actor must cover the key's powers.
            actor.check_grant(&old.scopes, &old.resources)?;
            let ws = self.get_workspace(workspace).await?;
            self.plan_allowing_api(&ws).await?;

            let secret = self.format.generate(old.environment);
            let new = ApiKey {
                id: KeyId::new(),
                prefix: display_prefix(&secret),
                last4: display_last4(&secret),
                hash: self.hasher.hash(&secret),
                created_at: now,
                created_ip: actor.ip.clone(),
                updated_at: now,
                last_used_at: None,
                rotated_from: Some(old.id),
                rotated_to: None,
                grace_ends_at: None,
                revoked_at: None,
                version: 1,
                ..old.clone()
            };
            let expected = old.version;
            let mut retired = old;
            retired.rotated_to = Some(new.id);
            retired.updated_at = now;
            retired.version += 1;
            match grace {
                None => {
                    retired.status = KeyStatus::Revoked;
                    retired.revoked_at = Some(now);
                }
                Some(g) => retired.grace_ends_at = Some(now + g),
            }
            let ev = self.event(AuditAction::KeyRotated, Some(workspace), Some(retired.id), actor);
            match self.store.rotate_key(&retired, expected, &new, &ev).await {
                Ok(()) => {
                    self.notify(&retired).await;
                    return Ok(CreatedKey { key: new, secret });
                }
                // Someone changed the key meanwhile: re-read and re-check the rules.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Read-check-write with optimistic concurrency. `change` returns `Ok(false)` when there is
    /// nothing to write (idempotent operations).
    async fn modify<F>(
        &self,
        workspace: WorkspaceId,
        id: KeyId,
        actor: &Actor,
        action: AuditAction,
        mut change: F,
    ) -> Result<ApiKey, Error>
    where
        F: FnMut(&mut ApiKey) -> Result<bool, Error>,
    {
        loop {
            let mut key = self.get_key(workspace, id).await?;
            actor.check_acts_on(&key)?;
            let now = self.clock.now();
            let was_admin = key.can_manage_keys(now);
            let expected = key.version;
            if !change(&mut key)? {
                return Ok(key);
            }
            key.version += 1;
            key.updated_at = now;
            // A workspace must keep a key that can manage its keys, or it locks itself out.
            let guard = if was_admin && !key.can_manage_keys(now) {
                KeyGuard::KeepsKeyAdmin { now }
            } else {
                KeyGuard::None
            };
            let ev = self.event(action, Some(workspace), Some(id), actor);
            match self.store.update_key_guarded(&key, expected, &ev, guard).await {
                Ok(()) => {
                    self.notify(&key).await;
                    return Ok(key);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    // ---- audit and usage ------------------------------------------------------------

    /// A page of a workspace's audit events (or every workspace's, with `None`), newest first.
    pub async fn audit_events(
        &self,
        workspace: Option<WorkspaceId>,
        filter: AuditFilter,
    ) -> Result<Page<AuditEvent>, Error> {
        let limit = page_size(filter.limit)?;
        let before = filter.cursor.as_deref().map(decode_cursor).transpose()?.map(AuditEventId);
        let mut items = self
            .store
            .list_audit(&AuditQuery {
                workspace_id: workspace,
                key_id: filter.key_id,
                action: filter.action,
                since: filter.since,
                until: filter.until,
                before,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = next_cursor(&mut items, limit, |e| e.id.0);
        Ok(Page { items, next_cursor })
    }

    /// Deletes audit events older than the retention period; returns how many.
    pub async fn purge_audit(&self) -> Result<u64, Error> {
        Ok(self.store.purge_audit(self.clock.now() - self.audit_retention).await?)
    }

    /// A key's daily usage over the last `days` days (today included).
    pub async fn usage(&self, workspace: WorkspaceId, id: KeyId, days: u32) -> Result<Vec<UsageDay>, Error> {
        if !(1..=366).contains(&days) {
            return Err(Error::validation("days", "must be between 1 and 366"));
        }
        let key = self.get_key(workspace, id).await?;
        let to: NaiveDate = self.clock.now().date_naive();
        let from = to - Duration::days(i64::from(days) - 1);
        Ok(self.store.usage(key.id, from, to).await?)
    }
}

fn display_prefix(secret: &ApiKeySecret) -> String {
    secret.expose_secret().chars().take(12).collect()
}

fn display_last4(secret: &ApiKeySecret) -> String {
    let s = secret.expose_secret();
    s[s.len().saturating_sub(4)..].to_owned()
}

fn validate_name(name: &str) -> Result<(), Error> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Error::validation("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Error::validation("name", format!("must be at most {MAX_NAME_LEN} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::validation("name", "must not contain control characters"));
    }
    Ok(())
}

fn validate_slug(field: &str, s: &str) -> Result<(), Error> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if ok { Ok(()) } else { Err(Error::validation(field, "must be 1 to 64 characters of a-z, 0-9, - or _")) }
}

fn validate_resources(resources: &[String]) -> Result<(), Error> {
    if resources.len() > MAX_RESOURCES {
        return Err(Error::validation("resources", format!("at most {MAX_RESOURCES} entries")));
    }
    if resources.iter().any(|r| r.is_empty() || r.len() > 200 || r.chars().any(char::is_control)) {
        return Err(Error::validation("resources", "each entry must be 1 to 200 printable characters"));
    }
    Ok(())
}

fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Error> {
    if metadata.len() > MAX_METADATA {
        return Err(Error::validation("metadata", format!("at most {MAX_METADATA} entries")));
    }
    if metadata.iter().any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 512) {
        return Err(Error::validation("metadata", "keys must be 1 to 64 bytes and values at most 512"));
    }
    Ok(())
}

fn validate_expiry(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), Error> {
    match expires_at {
        Some(t) if t <= now => Err(Error::validation("expiresAt", "must be in the future")),
        Some(t) if t.year() > MAX_YEAR => Err(Error::validation(
            "expiresAt",
            format!("must be an RFC 3339 time with a four-digit year (at most {MAX_YEAR})"),
        )),
        _ => Ok(()),
    }
}

fn page_size(limit: Option<u32>) -> Result<u32, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(_) => Err(Error::validation("limit", format!("must be between 1 and {MAX_PAGE_SIZE}"))),
    }
}

/// Cursors are the last item's id, base64url-encoded: opaque to callers, stable under inserts
/// because ids are time-ordered and listing is keyset-based.
fn encode_cursor(id: uuid::Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<uuid::Uuid, Error> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| uuid::Uuid::from_slice(&b).ok())
        .ok_or_else(|| Error::validation("cursor", "not a cursor returned by this API"))
}

fn next_cursor<T>(items: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> uuid::Uuid) -> Option<String> {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| encode_cursor(id(last)))
    } else {
        None
    }
}
