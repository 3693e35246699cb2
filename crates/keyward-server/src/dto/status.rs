//! Bodies of `GET /v1/status` and `POST /v1/verify`.

use keyward_core::{RateLimitStatus, WorkspaceEnvironment};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Scope;

/// One rate-limit window's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitWindowState {
    /// `key` or `workspace`.
    pub subject: String,
    /// Requests allowed per period.
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub limit: u32,
    /// Length of the period in seconds.
    #[schema(format = "uint32", minimum = 1, maximum = 2678400)]
    pub period_secs: u32,
    /// Requests left now.
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub remaining: u32,
    /// When the window is full again (seconds since the epoch).
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub reset: u64,
}

/// Rate-limit state after a request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitState {
    /// Every window that applied.
    pub windows: Vec<RateLimitWindowState>,
}

impl From<&RateLimitStatus> for RateLimitState {
    fn from(s: &RateLimitStatus) -> Self {
        Self {
            windows: s
                .windows
                .iter()
                .map(|w| RateLimitWindowState {
                    subject: w.subject_kind.to_owned(),
                    limit: w.window.limit,
                    period_secs: w.window.period_secs,
                    remaining: w.remaining,
                    reset: w.reset_epoch_secs(),
                })
                .collect(),
        }
    }
}

/// `GET /v1/status`: the calling key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// Always true: an invalid key gets an error instead.
    pub valid: bool,
    /// The key's id.
    pub key_id: Uuid,
    /// The key's name.
    pub key_name: String,
    /// The key's workspace.
    pub workspace_id: Uuid,
    /// The workspace's name.
    pub workspace_name: String,
    /// Live or sandbox.
    pub environment: WorkspaceEnvironment,
    /// The workspace's plan.
    pub plan: String,
    /// The key's scopes.
    #[schema(value_type = Vec<Scope>, inline)]
    pub scopes: Vec<String>,
    /// Remaining credits, for keys that use credits.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub credits: Option<i64>,
    /// Rate-limit state after this request.
    pub rate_limit: RateLimitState,
}

/// Body of `POST /v1/verify`.
// Its `Debug` never shows the key.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key to check, as presented to your service.
    pub key: String,
    /// Scopes the request needs.
    #[serde(default)]
    #[schema(value_type = Vec<Scope>, inline)]
    pub scopes: Vec<String>,
    /// The resource the request touches.
    #[serde(default)]
    pub resource: Option<String>,
    /// Credits the request costs (default 0).
    #[serde(default)]
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub cost: Option<u32>,
}

impl std::fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("key", &"[redacted]")
            .field("scopes", &self.scopes)
            .field("resource", &self.resource)
            .field("cost", &self.cost)
            .finish()
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyFailure {
    /// Catalog code, e.g. `KEY_REVOKED`.
    pub code: keyward_core::ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// The HTTP status the code maps to.
    #[schema(format = "uint32", minimum = 400, maximum = 599)]
    pub status: u16,
    /// Seconds to wait before retrying (rate limits).
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub retry_after: Option<u64>,
    /// Details, e.g. the missing scope.
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// `POST /v1/verify`: whether a key is valid, and its state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the key may make the request.
    pub valid: bool,
    /// Why not, when not valid.
    pub error: Option<VerifyFailure>,
    /// The key's id, when valid.
    pub key_id: Option<Uuid>,
    /// The key's workspace, when valid.
    pub workspace_id: Option<Uuid>,
    /// The key's scopes, when valid.
    #[schema(value_type = Option<Vec<Scope>>, inline)]
    pub scopes: Option<Vec<String>>,
    /// Remaining credits, for keys that use credits.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub credits: Option<i64>,
    /// Rate-limit state, when valid.
    pub rate_limit: Option<RateLimitState>,
}
