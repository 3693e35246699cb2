//! Bodies of the leak reports: GitHub's secret-scanning contract (snake_case, as GitHub sends
//! and reads it) and `POST /v1/keys/leaked` (camelCase, as the rest of the API).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether a reported token is one of this deployment's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LeakLabel {
    /// A key (not deleted) of this deployment: revoked or flagged, per the server's setting.
    TruePositive,
    /// Not a key of this deployment (or, for `POST /v1/keys/leaked`, not one the caller manages).
    FalsePositive,
}

/// One token GitHub found, as GitHub's secret-scanning partner programme sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct GitHubLeak {
    /// The matched text.
    #[schema(max_length = 1024)]
    pub(crate) token: String,
    /// The secret type GitHub matched (the partner's pattern name).
    #[serde(rename = "type")]
    #[schema(max_length = 256)]
    pub(crate) token_type: String,
    /// Where GitHub found it.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub(crate) url: Option<String>,
    /// What GitHub scanned, e.g. `content` or `commit`.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub(crate) source: Option<String>,
}

/// GitHub's partner feedback for one token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct GitHubLeakFeedback {
    /// SHA-256 of the token, lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub(crate) token_hash: String,
    /// The reported `type`, echoed.
    pub(crate) token_type: String,
    /// Whether the token was one of this deployment's keys.
    pub(crate) label: LeakLabel,
}

/// One token an operator's own scanner found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReportedToken {
    /// The matched text.
    #[schema(min_length = 1, max_length = 1024)]
    pub(crate) token: String,
    /// Where it was found (kept on the key as `leakSource`, at most 2048 characters).
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub(crate) url: Option<String>,
}

/// Body of `POST /v1/keys/leaked`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LeakReportRequest {
    /// 1 to 1000 tokens.
    #[schema(min_items = 1, max_items = 1000)]
    pub(crate) tokens: Vec<ReportedToken>,
}

/// The verdict on one reported token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeakVerdict {
    /// SHA-256 of the token, lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub(crate) token_hash: String,
    /// Whether the token was one of the keys the caller manages.
    pub(crate) label: LeakLabel,
}

/// The verdicts, in the order the tokens were given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeakVerdicts {
    /// One per token.
    pub(crate) data: Vec<LeakVerdict>,
}
