//! Bodies of `GET /v1/status` and `POST /v1/verify`.

use keyward_core::{RateLimitStatus, WorkspaceEnvironment};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Scope;

/// One rate-limit window's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RateLimitWindowState {
    /// `key` or `workspace`.
    pub(crate) subject: String,
    /// Requests allowed per period.
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) limit: u32,
    /// Length of the period in seconds.
    #[schema(format = "uint32", minimum = 1, maximum = 2678400)]
    pub(crate) period_secs: u32,
    /// Requests left now.
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub(crate) remaining: u32,
    /// When the window is full again (seconds since the epoch).
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) reset: u64,
}

/// Rate-limit state after a request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RateLimitState {
    /// Every window that applied.
    pub(crate) windows: Vec<RateLimitWindowState>,
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
pub(crate) struct StatusResponse {
    /// Always true: an invalid key gets an error instead.
    pub(crate) valid: bool,
    /// The key's id.
    pub(crate) key_id: Uuid,
    /// The key's name.
    pub(crate) key_name: String,
    /// The key's workspace.
    pub(crate) workspace_id: Uuid,
    /// The workspace's name.
    pub(crate) workspace_name: String,
    /// Live or sandbox.
    pub(crate) environment: WorkspaceEnvironment,
    /// The workspace's plan.
    pub(crate) plan: String,
    /// The key's scopes.
    #[schema(value_type = Vec<Scope>, inline)]
    pub(crate) scopes: Vec<String>,
    /// Remaining credits, for keys that use credits (after a refill that was due).
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits: Option<i64>,
    /// How the key's credits refill; `null` when they do not.
    pub(crate) refill: Option<super::keys::CreditRefill>,
    /// Rate-limit state after this request.
    pub(crate) rate_limit: RateLimitState,
}

/// Body of `POST /v1/verify`.
// Its `Debug` never shows the key.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    /// The key to check, as presented to your service.
    pub(crate) key: String,
    /// Scopes the request needs.
    #[serde(default)]
    #[schema(value_type = Vec<Scope>, inline)]
    pub(crate) scopes: Vec<String>,
    /// The resource the request touches.
    #[serde(default)]
    pub(crate) resource: Option<String>,
    /// Credits the request costs (default 0).
    #[serde(default)]
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub(crate) cost: Option<u32>,
    /// The address of the end user whose request your service is serving, as your service saw
    /// it (IPv4 or IPv6), checked against the key's IP allowlist (or its workspace's). Absent:
    /// unknown, and a key with an allowlist is refused (`IP_NOT_ALLOWED`).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 45, example = "203.0.113.7")]
    pub(crate) client_ip: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("key", &"[redacted]")
            .field("scopes", &self.scopes)
            .field("resource", &self.resource)
            .field("cost", &self.cost)
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerifyFailure {
    /// Catalog code, e.g. `KEY_REVOKED`.
    pub(crate) code: keyward_core::ErrorCode,
    /// Human-readable message.
    pub(crate) message: String,
    /// The HTTP status the code maps to.
    #[schema(format = "uint32", minimum = 400, maximum = 599)]
    pub(crate) status: u16,
    /// Seconds to wait before retrying (rate limits).
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) retry_after: Option<u64>,
    /// Details, e.g. the missing scope.
    pub(crate) details: serde_json::Map<String, serde_json::Value>,
}

/// `POST /v1/verify`: whether a key is valid, and its state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerifyResponse {
    /// Whether the key may make the request.
    pub(crate) valid: bool,
    /// Why not, when not valid.
    pub(crate) error: Option<VerifyFailure>,
    /// The key's id, when valid.
    pub(crate) key_id: Option<Uuid>,
    /// The key's workspace, when valid.
    pub(crate) workspace_id: Option<Uuid>,
    /// The key's scopes, when valid.
    #[schema(value_type = Option<Vec<Scope>>, inline)]
    pub(crate) scopes: Option<Vec<String>>,
    /// Remaining credits, for keys that use credits.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits: Option<i64>,
    /// Rate-limit state, when valid.
    pub(crate) rate_limit: Option<RateLimitState>,
}
