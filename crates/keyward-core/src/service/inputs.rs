//! What callers hand the service: new records, patches, filters; and what it hands back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::model::{
    ApiKey, AuditAction, CreditRefill, KeyId, KeyStatus, PlanId, RateLimitPolicy, WorkspaceEnvironment,
    WorkspaceId,
};
use crate::scope::ScopeSet;
use crate::secret::ApiKeySecret;

#[cfg(doc)]
use super::{DEFAULT_PAGE_SIZE, KeyService, MAX_PAGE_SIZE};

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
    /// The IP allowlist of keys that have none of their own; empty: anywhere.
    pub ip_allowlist: Vec<IpNet>,
}

impl NewWorkspace {
    /// A live workspace on the default plan.
    pub fn live(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            plan_id: None,
            environment: WorkspaceEnvironment::Live,
            rate_limit: None,
            ip_allowlist: Vec::new(),
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
    /// New default IP allowlist, replacing all (empty: anywhere).
    pub ip_allowlist: Option<Vec<IpNet>>,
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
    /// Starting credits (`None`: the key does not use credits, or, with a refill, the refill's
    /// amount).
    pub credits: Option<i64>,
    /// How the credits refill; the first refill is in the next period.
    pub refill: Option<CreditRefill>,
    /// Send `key.credits_low` when a spend takes the credits to or below this.
    pub credits_low_threshold: Option<i64>,
    /// Where the key may be used from (empty: the workspace's list applies).
    pub ip_allowlist: Vec<IpNet>,
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
            refill: None,
            credits_low_threshold: None,
            ip_allowlist: Vec::new(),
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
    /// New refill (`Some(None)` removes it; the credits stay). A key never refilled before is
    /// refilled at its next use or read.
    pub refill: Option<Option<CreditRefill>>,
    /// New `key.credits_low` threshold (`Some(None)` removes it).
    pub credits_low_threshold: Option<Option<i64>>,
    /// New IP allowlist, replacing all (empty: the workspace's list applies).
    pub ip_allowlist: Option<Vec<IpNet>>,
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
