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

mod actor;
mod audit;
mod cursor;
mod import;
mod inputs;
mod keys;
mod leaks;
mod validate;
mod webhooks;
mod workspaces;

use std::fmt;
use std::sync::{Arc, RwLock};

use chrono::Duration;

pub use actor::{Actor, ActorKey};
pub use import::{ImportedKey, MAX_IMPORT_KEYS};
pub use inputs::{AuditFilter, CreatedKey, KeyFilter, KeyPatch, NewKey, NewWorkspace, Page, WorkspacePatch};
pub use leaks::{LeakPolicy, MAX_LEAK_SOURCE_LEN};
pub use validate::MAX_YEAR;
pub use webhooks::{
    CreatedWebhook, MAX_WEBHOOK_DESCRIPTION_LEN, MAX_WEBHOOK_URL_LEN, MAX_WEBHOOKS, NewWebhook, WebhookPatch,
};

use crate::clock::{Clock, SystemClock};
use crate::format::{KeyFormat, LegacyFormat};
use crate::hash::KeyHasher;
use crate::model::{ApiKey, AuditAction, AuditEvent, AuditEventId, KeyId, PlanId, WorkspaceId};
use crate::store::KeyStore;

/// Default audit retention: 90 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::days(90);
/// Default longest grace period a rotation may ask for: 30 days.
pub const DEFAULT_MAX_GRACE: Duration = Duration::days(30);
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Page size when none is given.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// Told of every key change this node makes, e.g. to drop a cache entry at once. The service
/// awaits every listener before the change's call returns.
#[async_trait::async_trait]
pub trait KeyChangeListener: Send + Sync + fmt::Debug + 'static {
    /// `key` is the record as it now stands.
    async fn key_changed(&self, key: &ApiKey);

    /// A workspace or a plan changed.
    async fn workspace_changed(&self, _change: &WorkspaceChange) {}
}

/// A change beyond one key, which may affect every key of a workspace or of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceChange {
    /// This workspace changed (name, plan, rate limit).
    Workspace(WorkspaceId),
    /// This plan changed: every workspace on it is affected.
    Plan(PlanId),
}

/// The lifecycle rules. See the [module docs](self).
#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    format: KeyFormat,
    legacy: Option<LegacyFormat>,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    audit_retention: Duration,
    max_grace: Duration,
    webhooks_allow_http: bool,
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
            legacy: None,
            hasher: KeyHasher::sha256(),
            clock: Arc::new(SystemClock),
            audit_retention: DEFAULT_AUDIT_RETENTION,
            max_grace: DEFAULT_MAX_GRACE,
            webhooks_allow_http: false,
            listeners: Arc::default(),
        }
    }

    /// Uses another key format.
    pub fn with_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }
    /// Also takes keys of `legacy` (imported from another system) for keys: in leak reports, and
    /// in the verifiers built from this service.
    pub fn with_legacy_format(mut self, legacy: LegacyFormat) -> Self {
        self.legacy = Some(legacy);
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
    /// The format of imported keys, when one is configured.
    pub fn legacy_format(&self) -> Option<&LegacyFormat> {
        self.legacy.as_ref()
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

    async fn notify_workspace(&self, change: WorkspaceChange) {
        for l in self.listeners() {
            l.workspace_changed(&change).await;
        }
    }
}
