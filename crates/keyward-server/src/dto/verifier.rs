//! Bodies of `/v1/verifier`: what remote verifiers (services that check keys through this server
//! instead of holding the database) send and receive.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::keys::ApiKeyView;
use super::workspaces::{PlanView, WorkspaceView};

/// Most entries of each kind in one usage report (and the whole body stays within the 64 KiB
/// every request body is held to).
pub(crate) const MAX_USAGE_ENTRIES: usize = 500;

/// Body of `POST /v1/verifier/resolve`.
// Its `Debug` never shows the key.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResolveRequest {
    /// The key as presented to your service.
    #[schema(max_length = 512)]
    pub(crate) key: String,
}

impl std::fmt::Debug for ResolveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolveRequest").field("key", &"[redacted]").finish()
    }
}

/// A presented key's record, for the remote verifier to decide on and cache.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResolvedKey {
    /// Whether the key exists and the caller may see it. A malformed, unknown or deleted key,
    /// or one of a workspace the caller may not act on, is `false`, with nothing else set.
    pub(crate) found: bool,
    /// The digest the key is stored under (64 hex digits): the change stream's `key` events
    /// name it.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub(crate) digest: Option<String>,
    /// The key, whatever its status (the verifier refuses inactive, revoked, expired keys).
    pub(crate) key: Option<ApiKeyView>,
    /// The key's workspace.
    pub(crate) workspace: Option<WorkspaceView>,
    /// The workspace's plan.
    pub(crate) plan: Option<PlanView>,
}

impl ResolvedKey {
    pub(crate) fn not_found() -> Self {
        Self { found: false, digest: None, key: None, workspace: None, plan: None }
    }
}

/// Body of `POST /v1/verifier/credits`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SpendCreditsRequest {
    /// The key whose credits are spent (during a rotation's grace period: its successor).
    pub(crate) key_id: Uuid,
    /// Credits to take.
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) amount: u32,
}

/// What spending credits did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CreditOutcomeKind {
    /// Taken; `remaining` is what is left.
    Spent,
    /// The key does not use credits: nothing taken.
    Unlimited,
    /// Not enough: nothing taken; `remaining` is what there is.
    Insufficient,
}

/// Answer of `POST /v1/verifier/credits`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SpendCreditsResponse {
    /// What happened.
    pub(crate) outcome: CreditOutcomeKind,
    /// Credits left; `null` for `unlimited`.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) remaining: Option<i64>,
}

/// Requests one key made on one UTC day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UsageCount {
    /// The key.
    pub(crate) key_id: Uuid,
    /// The UTC day.
    pub(crate) day: NaiveDate,
    /// Requests that day.
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) count: u32,
}

/// A key's latest use.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LastUse {
    /// The key.
    pub(crate) key_id: Uuid,
    /// When it was last used.
    pub(crate) at: DateTime<Utc>,
}

/// Body of `POST /v1/verifier/usage`: what a remote verifier counted since its last report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UsageBatchRequest {
    /// Requests per key per day, added to what is recorded.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub(crate) counts: Vec<UsageCount>,
    /// Latest use per key; an older time than the recorded one changes nothing.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub(crate) last_used: Vec<LastUse>,
}

/// Answer of `POST /v1/verifier/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageBatchResponse {
    /// Entries recorded.
    #[schema(format = "uint32", minimum = 0, maximum = 1000)]
    pub(crate) recorded: u32,
    /// Entries of keys that no longer exist (deleted since they were used), skipped.
    #[schema(format = "uint32", minimum = 0, maximum = 1000)]
    pub(crate) skipped: u32,
}
