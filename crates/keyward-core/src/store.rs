//! The persistence contract every backend implements.
//!
//! Stores are deliberately simple: the lifecycle rules live in [`KeyService`](crate::KeyService),
//! and a store only has to make each write atomic. Every change to a key is a compare-and-swap on
//! [`ApiKey::version`], written in one transaction with its audit event, so two nodes changing one
//! key at once leave one consistent result and the audit log never misses a change.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::{Error, ErrorCode};
use crate::hash::KeyDigest;
use crate::model::{
    ApiKey, AuditAction, AuditEvent, AuditEventId, KeyId, KeyStatus, Plan, PlanId, UsageDay, Workspace,
    WorkspaceId,
};

/// What can go wrong in a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, pool timeout...).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The record changed since it was read (version mismatch).
    #[error("the record was changed concurrently")]
    Conflict,
    /// The workspace already holds the most keys its plan allows.
    #[error("key limit reached")]
    KeyLimitReached,
    /// A [`KeyGuard::KeepsKeyAdmin`] change would leave the workspace without a key able to
    /// manage keys.
    #[error("the workspace's last key able to manage keys")]
    LastAdminKey,
    /// A record with the same id or hash exists.
    #[error("duplicate record")]
    Duplicate,
    /// The record to change does not exist.
    #[error("record not found")]
    NotFound,
    /// Anything else (corrupt row, SQL error...).
    #[error("store error: {0}")]
    Other(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                Error::new(ErrorCode::StoreUnavailable, "the key store is unavailable").with_internal(cause)
            }
            StoreError::Conflict => {
                Error::new(ErrorCode::Conflict, "the key was changed concurrently; retry")
            }
            StoreError::KeyLimitReached => {
                Error::new(ErrorCode::KeyLimitReached, "the workspace's plan allows no more keys")
            }
            StoreError::LastAdminKey => Error::new(
                ErrorCode::LastAdminKey,
                "this would leave the workspace without an active key able to manage keys (`keys:write`); \
                 create or activate another such key first",
            ),
            StoreError::NotFound => Error::not_found("record"),
            other => Error::internal(other),
        }
    }
}

/// A condition a key change must leave true, checked by the store in the changing transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyGuard {
    /// No condition.
    None,
    /// The workspace keeps at least one key that can manage keys at `now`.
    KeepsKeyAdmin {
        /// The time keys are judged at (status, expiry, grace).
        now: DateTime<Utc>,
    },
}

impl KeyGuard {
    /// Whether `remaining` (the workspace's keys after the change) satisfy the guard.
    pub fn holds<'a>(&self, remaining: impl IntoIterator<Item = &'a ApiKey>) -> bool {
        match self {
            KeyGuard::None => true,
            KeyGuard::KeepsKeyAdmin { now } => remaining.into_iter().any(|k| k.can_manage_keys(*now)),
        }
    }
}

/// Which keys to list: one workspace, optionally one status, newest first, after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListQuery {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Only keys with this status as seen at `now`: a key whose rotation grace period has ended
    /// by then counts as revoked ([`ApiKey::status_at`]).
    pub status: Option<KeyStatus>,
    /// The time the status filter is judged at.
    pub now: DateTime<Utc>,
    /// Only keys older than this one (keys are listed newest first).
    pub before: Option<KeyId>,
    /// Most rows to return.
    pub limit: u32,
}

/// Which audit events to list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// Only this workspace's events.
    pub workspace_id: Option<WorkspaceId>,
    /// Only events about this key.
    pub key_id: Option<KeyId>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this one.
    pub before: Option<AuditEventId>,
    /// Most rows to return.
    pub limit: u32,
}

/// Usage gathered in memory and written in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Requests per key per UTC day.
    pub counts: HashMap<(KeyId, NaiveDate), u64>,
    /// Latest use per key.
    pub last_used: HashMap<KeyId, DateTime<Utc>>,
}

impl UsageBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.last_used.is_empty()
    }

    /// Adds one use of `key` at `at`.
    pub fn add(&mut self, key: KeyId, at: DateTime<Utc>) {
        *self.counts.entry((key, at.date_naive())).or_default() += 1;
        let last = self.last_used.entry(key).or_insert(at);
        if *last < at {
            *last = at;
        }
    }

    /// Adds everything in `other` (used to put back a batch whose write failed).
    pub fn merge(&mut self, other: UsageBatch) {
        for (k, n) in other.counts {
            *self.counts.entry(k).or_default() += n;
        }
        for (k, at) in other.last_used {
            self.add_last_used(k, at);
        }
    }

    fn add_last_used(&mut self, key: KeyId, at: DateTime<Utc>) {
        let last = self.last_used.entry(key).or_insert(at);
        if *last < at {
            *last = at;
        }
    }
}

/// What [`KeyStore::consume_credits`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOutcome {
    /// The key does not use credits.
    Unlimited,
    /// Credits were taken; this many remain.
    Remaining(i64),
    /// Not enough credits; nothing was taken; this many remain.
    Insufficient(i64),
}

/// Persistence for keyward. See the [module docs](self).
///
/// Implementations must be safe to share between tasks and nodes: every method is one atomic
/// operation. Timestamps are stored with millisecond precision.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug + 'static {
    /// Creates or replaces a plan, with its audit event.
    async fn save_plan(&self, plan: &Plan, event: &AuditEvent) -> Result<(), StoreError>;
    /// A plan by id.
    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>, StoreError>;
    /// Every plan, by id.
    async fn list_plans(&self) -> Result<Vec<Plan>, StoreError>;

    /// Creates a workspace, with its audit event. `Duplicate` if the id exists.
    async fn insert_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError>;
    /// Replaces a workspace, with its audit event. `NotFound` if absent.
    async fn update_workspace(&self, ws: &Workspace, event: &AuditEvent) -> Result<(), StoreError>;
    /// A workspace by id.
    async fn get_workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError>;
    /// Every workspace, oldest first.
    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError>;

    /// Inserts a key with its audit event. When `max_live_keys` is set, fails with
    /// `KeyLimitReached` if the workspace already holds that many keys that are neither revoked
    /// nor deleted, deciding and inserting atomically.
    async fn insert_key(
        &self,
        key: &ApiKey,
        max_live_keys: Option<u32>,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Inserts keys of one workspace, each with its audit event, in one transaction: all of them
    /// or none. `Duplicate` if any id or digest exists already or twice among them; with
    /// `max_live_keys`, `KeyLimitReached` if the workspace would then hold more keys that are
    /// neither revoked nor deleted, decided and inserted atomically. For imports.
    async fn insert_keys(
        &self,
        keys: &[(ApiKey, AuditEvent)],
        max_live_keys: Option<u32>,
    ) -> Result<(), StoreError>;

    /// A key by id, deleted or not.
    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError>;

    /// The key stored under `digest`, deleted or not.
    async fn find_key_by_digest(&self, digest: &KeyDigest) -> Result<Option<ApiKey>, StoreError>;

    /// The key stored under `digest` (deleted or not) with its workspace and the workspace's
    /// plan: what a verifier needs for a key it has not seen. SQL stores answer with one joined
    /// read; the default makes three ([`KeyStore::find_key_by_digest`], then
    /// [`KeyStore::get_workspace`] and [`KeyStore::get_plan`]). A key whose workspace or plan is
    /// missing is an error.
    async fn find_key_record_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<crate::verifier::KeyRecord>, StoreError> {
        let Some(key) = self.find_key_by_digest(digest).await? else {
            return Ok(None);
        };
        let workspace = self.get_workspace(key.workspace_id).await?.ok_or_else(|| no_workspace(&key))?;
        let plan = self.get_plan(&workspace.plan_id).await?.ok_or_else(|| no_plan(&workspace))?;
        Ok(Some(crate::verifier::KeyRecord { key, workspace, plan }))
    }

    /// Keys that are not deleted, newest first.
    async fn list_keys(&self, query: &KeyListQuery) -> Result<Vec<ApiKey>, StoreError>;

    /// Keys of a workspace that are neither revoked nor deleted.
    async fn count_live_keys(&self, workspace: WorkspaceId) -> Result<u64, StoreError>;

    /// Writes `key` (whose `version` is already bumped) if the stored version is still
    /// `expected_version`, with its audit event; `Conflict` otherwise. Does not touch `credits`
    /// or `last_used_at`, which have their own writers.
    async fn update_key(
        &self,
        key: &ApiKey,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.update_key_guarded(key, expected_version, event, KeyGuard::None).await
    }

    /// [`KeyStore::update_key`], checking `guard` in the same transaction: with
    /// [`KeyGuard::KeepsKeyAdmin`], the write happens only if the key's workspace still holds a
    /// key that [can manage keys](ApiKey::can_manage_keys) afterwards, else `LastAdminKey` and
    /// nothing changes. Two such writes in one workspace must not both pass on stale reads (e.g.
    /// serialize them on the workspace's row).
    async fn update_key_guarded(
        &self,
        key: &ApiKey,
        expected_version: u64,
        event: &AuditEvent,
        guard: KeyGuard,
    ) -> Result<(), StoreError>;

    /// In one transaction: writes `old` as in [`KeyStore::update_key`], moves the old key's
    /// remaining credits to `new` and inserts `new`, with the audit event. Either all of it
    /// happens or none; readers never see one half.
    async fn rotate_key(
        &self,
        old: &ApiKey,
        expected_version: u64,
        new: &ApiKey,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Takes `amount` credits from a key, atomically.
    async fn consume_credits(&self, id: KeyId, amount: i64) -> Result<CreditOutcome, StoreError>;

    /// Refills key `id` if its stored [`refill`](ApiKey::refill) is due at `now` (its stored
    /// `refilled_at` lies before the period's start): sets its credits to the refill's amount and
    /// `refilled_at` to `now`, and writes `event`, in one transaction. A compare-and-swap on
    /// `refilled_at`: of any number of concurrent calls in one period, on any number of nodes,
    /// one refills. `Some(balance)` when this call refilled, `None` when nothing was due.
    async fn refill_credits(
        &self,
        id: KeyId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<i64>, StoreError>;

    /// [`KeyStore::refill_credits`] for `key` when its copy says a refill is due (the store
    /// decides on the stored row), with a `key.credits_refilled` event by the system.
    async fn refill_if_due(&self, key: &ApiKey, now: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        match key.refill {
            Some(r) if r.is_due(key.refilled_at, now) => {
                let event = AuditEvent {
                    id: AuditEventId::new(),
                    workspace_id: Some(key.workspace_id),
                    action: AuditAction::KeyCreditsRefilled,
                    key_id: Some(key.id),
                    actor_key_id: None,
                    ip: None,
                    user_agent: None,
                    request_id: None,
                    at: now,
                };
                self.refill_credits(key.id, now, &event).await
            }
            _ => Ok(None),
        }
    }

    /// Audit events, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;

    /// Deletes audit events older than `before`; returns how many. A store that keeps the
    /// audit hash chain deletes a prefix of each chain and keeps its last hash as the anchor.
    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Verifies the audit log's hash chains ([`crate::audit_chain`]): the chain of `workspace`,
    /// or every chain (the one of events without a workspace too), each also against the heads
    /// in `known` exported earlier. A store without the chain answers `Other`.
    async fn verify_audit(
        &self,
        workspace: Option<WorkspaceId>,
        known: &[crate::audit_chain::KnownHead],
    ) -> Result<Vec<crate::audit_chain::ChainReport>, StoreError> {
        let _ = (workspace, known);
        Err(StoreError::Other("this store keeps no audit hash chain".into()))
    }

    /// Adds a batch of usage: per-day counts and last-used times, in one transaction.
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError>;

    /// Per-day counts of one key between two days (inclusive), oldest first.
    async fn usage(&self, key: KeyId, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageDay>, StoreError>;

    /// The store's webhooks, when it keeps them (the SQL stores do): a store that does must
    /// write each change's webhook event in the change's transaction (see [`crate::webhook`]).
    fn webhooks(&self) -> Option<&dyn crate::webhook::WebhookStore> {
        None
    }
}

/// The error for a stored key whose workspace is missing.
pub fn no_workspace(key: &ApiKey) -> StoreError {
    StoreError::Other(format!("key {} has no workspace", key.id))
}

/// The error for a stored workspace whose plan is missing.
pub fn no_plan(workspace: &Workspace) -> StoreError {
    StoreError::Other(format!("workspace {} has no plan", workspace.id))
}
