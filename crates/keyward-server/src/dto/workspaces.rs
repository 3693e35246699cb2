//! Bodies of `/v1/workspaces` and `/v1/plans`.

use chrono::{DateTime, Utc};
use keyward_core::{Plan, RateLimitPolicy, RateLimitWindow, Workspace, WorkspaceEnvironment};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Name, PlanId, double_option};

/// A workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkspaceView {
    /// The workspace's id.
    pub(crate) id: Uuid,
    /// Name.
    #[schema(value_type = Name, inline)]
    pub(crate) name: String,
    /// The workspace's plan.
    #[schema(value_type = PlanId, inline)]
    pub(crate) plan_id: String,
    /// `live` or `sandbox`.
    pub(crate) environment: WorkspaceEnvironment,
    /// The workspace's own rate limit; `null` uses the environment's default.
    #[schema(max_items = 8)]
    pub(crate) rate_limit: Option<Vec<RateLimitWindow>>,
    /// The rate limit that applies to the workspace as a whole.
    #[schema(max_items = 8)]
    pub(crate) effective_rate_limit: Vec<RateLimitWindow>,
    /// When the workspace was created.
    pub(crate) created_at: DateTime<Utc>,
    /// The default IP allowlist of the workspace's keys that have none of their own (a key's non-empty list replaces it): IPv4/IPv6 addresses and CIDR ranges, at most 100; empty: anywhere. Shown normalised (`198.51.100.7/32`).
    #[schema(max_items = 100)]
    pub(crate) ip_allowlist: Vec<String>,
}

impl From<&Workspace> for WorkspaceView {
    fn from(w: &Workspace) -> Self {
        Self {
            id: w.id.0,
            name: w.name.clone(),
            plan_id: w.plan_id.0.clone(),
            environment: w.environment,
            rate_limit: w.rate_limit.as_ref().map(|p| p.windows.clone()),
            effective_rate_limit: w.effective_rate_limit().windows,
            created_at: w.created_at,
            ip_allowlist: w.ip_allowlist.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Body of `POST /v1/workspaces`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateWorkspaceRequest {
    /// Name.
    #[schema(value_type = Name, inline)]
    pub(crate) name: String,
    /// An existing plan (else 400 `VALIDATION_FAILED`); absent uses `default`.
    #[serde(default)]
    #[schema(value_type = Option<PlanId>, inline)]
    pub(crate) plan_id: Option<String>,
    /// `live` (the default) or `sandbox`.
    #[serde(default)]
    pub(crate) environment: Option<WorkspaceEnvironment>,
    /// The workspace's own rate limit; absent uses the environment's default.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub(crate) rate_limit: Option<Vec<RateLimitWindow>>,
    /// The default IP allowlist of the workspace's keys that have none of their own (a key's non-empty list replaces it): IPv4/IPv6 addresses and CIDR ranges, at most 100; empty: anywhere. Shown normalised (`198.51.100.7/32`). Malformed entries are 400 `VALIDATION_FAILED` naming them (`ipAllowlist[0]`).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub(crate) ip_allowlist: Vec<String>,
}

/// Body of `PATCH /v1/workspaces/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateWorkspaceRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Name>, inline)]
    pub(crate) name: Option<String>,
    /// New plan: an existing one (else 400 `VALIDATION_FAILED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PlanId>, inline)]
    pub(crate) plan_id: Option<String>,
    /// New rate limit; `null` returns to the environment's default.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RateLimitWindow>>, max_items = 8)]
    pub(crate) rate_limit: Option<Option<Vec<RateLimitWindow>>>,
    /// New default IP allowlist, replacing all; `[]`: anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub(crate) ip_allowlist: Option<Vec<String>>,
}

/// A list of workspaces.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkspaceList {
    /// The workspaces, oldest first.
    pub(crate) data: Vec<WorkspaceView>,
}

/// A plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlanView {
    /// The plan's id.
    #[schema(value_type = PlanId, inline)]
    pub(crate) id: String,
    /// Display name.
    #[schema(value_type = Name, inline)]
    pub(crate) name: String,
    /// Whether workspaces on the plan may use API keys.
    pub(crate) api_access: bool,
    /// Most keys (neither revoked nor deleted) a workspace may hold; `null` is unlimited.
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub(crate) max_keys: Option<u32>,
    /// Rate limit for keys that have none of their own.
    #[schema(max_items = 8)]
    pub(crate) key_rate_limit: Vec<RateLimitWindow>,
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        Self {
            id: p.id.0.clone(),
            name: p.name.clone(),
            api_access: p.api_access,
            max_keys: p.max_keys,
            key_rate_limit: p.key_rate_limit.windows.clone(),
        }
    }
}

/// Body of `PUT /v1/plans/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SavePlanRequest {
    /// Display name.
    #[schema(value_type = Name, inline)]
    pub(crate) name: String,
    /// Whether workspaces on the plan may use API keys.
    pub(crate) api_access: bool,
    /// Most keys (neither revoked nor deleted) a workspace may hold; absent or `null` is
    /// unlimited.
    #[serde(default)]
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub(crate) max_keys: Option<u32>,
    /// Rate limit for keys that have none of their own; absent uses 60 a minute and 1000 an
    /// hour.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub(crate) key_rate_limit: Option<Vec<RateLimitWindow>>,
}

impl SavePlanRequest {
    /// The default key rate limit when none is given.
    pub(crate) fn key_policy(&self) -> RateLimitPolicy {
        self.key_rate_limit.clone().map(RateLimitPolicy::new).unwrap_or_else(RateLimitPolicy::key_default)
    }
}

/// A list of plans.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct PlanList {
    /// The plans.
    pub(crate) data: Vec<PlanView>,
}
