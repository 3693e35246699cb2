//! Request and response bodies of the management API.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use keyward_core::{
    ApiKey, AuditAction, AuditEvent, KeyEnvironment, KeyStatus, Plan, RateLimitPolicy, RateLimitStatus,
    RateLimitWindow, UsageDay, Workspace, WorkspaceEnvironment,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Distinguishes a field that is absent (`None`) from one set to `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// An API key as the API shows it: masked, never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    /// The key's id.
    pub id: Uuid,
    /// The workspace the key belongs to.
    pub workspace_id: Uuid,
    /// Descriptive name.
    #[schema(value_type = Name, inline, example = "CI pipeline")]
    pub name: String,
    /// `live` or `test`, as written in the key.
    pub environment: KeyEnvironment,
    /// The first 12 characters of the key.
    #[schema(example = "kw_live_3xQz")]
    pub prefix: String,
    /// The last 4 characters of the key.
    #[schema(example = "a9Fk")]
    pub last4: String,
    /// Prefix and last 4 characters, for display.
    #[schema(example = "kw_live_3xQz…a9Fk")]
    pub masked_key: String,
    /// What the key may do.
    #[schema(value_type = Vec<Scope>, inline, example = json!(["keys:read"]))]
    pub scopes: Vec<String>,
    /// The resources the key is restricted to; empty means all resources.
    #[schema(value_type = Vec<Resource>, inline)]
    pub resources: Vec<String>,
    /// `active`, `inactive` or `revoked`. A key rotated with a grace period stays `active` until
    /// the grace period ends, and reads `revoked` after.
    pub status: KeyStatus,
    /// When the key was created.
    pub created_at: DateTime<Utc>,
    /// The IP address the key was created from.
    pub created_ip: Option<String>,
    /// When the key's record last changed.
    pub updated_at: DateTime<Utc>,
    /// When the key was last used (recorded in batches: up to 10 seconds late).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the key stops working; `null` when it never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key this one replaced.
    pub rotated_from: Option<Uuid>,
    /// The key that replaced this one.
    pub rotated_to: Option<Uuid>,
    /// After a rotation with a grace period: when this (old) key stops working.
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// The key's own rate limit; `null` uses the plan's.
    #[schema(max_items = 8)]
    pub rate_limit: Option<Vec<RateLimitWindow>>,
    /// Most requests the key may have in flight at once; `null` is unlimited.
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub concurrency_limit: Option<u32>,
    /// Remaining credits; `null` when the key does not use credits.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub credits: Option<i64>,
    /// Free-form labels.
    #[schema(schema_with = labels)]
    pub metadata: BTreeMap<String, String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.0,
            workspace_id: k.workspace_id.0,
            name: k.name.clone(),
            environment: k.environment,
            prefix: k.prefix.clone(),
            last4: k.last4.clone(),
            masked_key: format!("{}…{}", k.prefix, k.last4),
            scopes: k.scopes.iter().map(ToString::to_string).collect(),
            resources: k.resources.clone(),
            status: k.status,
            created_at: k.created_at,
            created_ip: k.created_ip.clone(),
            updated_at: k.updated_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            rotated_from: k.rotated_from.map(|i| i.0),
            rotated_to: k.rotated_to.map(|i| i.0),
            grace_ends_at: k.grace_ends_at,
            rate_limit: k.rate_limit.as_ref().map(|p| p.windows.clone()),
            concurrency_limit: k.concurrency_limit,
            credits: k.credits,
            metadata: k.metadata.clone(),
        }
    }
}

/// A key with its daily usage over the last 30 days.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyDetail {
    /// The key.
    pub key: ApiKeyView,
    /// Requests per day, oldest first; days without requests are omitted.
    pub recent_usage: Vec<UsageDayView>,
}

/// A key just created or rotated, with its value. The value is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    /// The new key's id, the same as `key.id` (links follow it).
    pub id: Uuid,
    /// The key, masked.
    pub key: ApiKeyView,
    /// The full key. Store it now: it cannot be retrieved later.
    #[schema(example = "kw_live_3xQzJ8tW0d9m2LrVb7NcKp4sY6eHfGaU1iZoTqXw5Rk0a9Fk")]
    pub secret: String,
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Descriptive name.
    #[schema(value_type = Name, inline, example = "CI pipeline")]
    pub name: String,
    /// What the key may do; never wider than the caller's own scopes (else 403
    /// `INSUFFICIENT_SCOPE`). Default: none.
    #[serde(default)]
    #[schema(value_type = Vec<Scope>, inline, example = json!(["keys:read"]))]
    pub scopes: Vec<String>,
    /// The resources the key is restricted to; empty (the default) means all resources. A
    /// resource-restricted caller may only create keys restricted to its own resources (else 403
    /// `RESOURCE_NOT_ALLOWED`).
    #[serde(default)]
    #[schema(value_type = Vec<Resource>, inline, max_items = 100)]
    pub resources: Vec<String>,
    /// Whether the key starts active (default true).
    #[serde(default)]
    pub active: Option<bool>,
    /// When the key stops working; must lie in the future. Absent: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own rate limit; absent uses the plan's.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub rate_limit: Option<Vec<RateLimitWindow>>,
    /// Most requests the key may have in flight at once; absent is unlimited.
    #[serde(default)]
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub concurrency_limit: Option<u32>,
    /// Starting credits; absent means the key does not use credits.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub credits: Option<i64>,
    /// Free-form labels.
    #[serde(default)]
    #[schema(schema_with = labels)]
    pub metadata: BTreeMap<String, String>,
}

/// Body of `PATCH /v1/keys/{id}`: absent fields stay as they are; `null` clears optional ones.
/// The key's value never changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateKeyRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Name>, inline)]
    pub name: Option<String>,
    /// New scopes, replacing all; never wider than the caller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Scope>>, inline)]
    pub scopes: Option<Vec<String>>,
    /// New resource restrictions, replacing all; empty means all resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Resource>>, inline, max_items = 100)]
    pub resources: Option<Vec<String>>,
    /// Switches the key on (`true`) or off (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// New expiry, in the future; `null` removes it.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New rate limit; `null` returns to the plan's.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RateLimitWindow>>, max_items = 8)]
    pub rate_limit: Option<Option<Vec<RateLimitWindow>>>,
    /// New in-flight limit; `null` removes it.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub concurrency_limit: Option<Option<u32>>,
    /// New labels, replacing all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = labels_or_null)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Body of `POST /v1/keys/{id}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// Seconds the old key keeps working, at most 30 days; absent or 0 stops it at once.
    #[serde(default)]
    #[schema(format = "uint64", minimum = 0, maximum = 2592000, example = 3600)]
    pub grace_seconds: Option<u64>,
}

/// Query of `GET /v1/keys`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// Only keys with this status: `active`, `inactive` or `revoked`.
    pub status: Option<KeyStatus>,
    /// The previous page's `nextCursor`.
    #[param(value_type = Option<Cursor>, inline)]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(format = "uint32", minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A page of keys, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPage {
    /// The keys.
    pub data: Vec<ApiKeyView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(value_type = Option<Cursor>, inline)]
    pub next_cursor: Option<String>,
}

/// Requests made with a key on one UTC day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDayView {
    /// The day (UTC).
    pub day: NaiveDate,
    /// Successful requests.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub count: u64,
}

impl From<&UsageDay> for UsageDayView {
    fn from(u: &UsageDay) -> Self {
        Self { day: u.day, count: u.count }
    }
}

/// Query of `GET /v1/keys/{id}/usage`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Days to cover, today included: 1 to 366 (default 30).
    #[param(format = "uint32", minimum = 1, maximum = 366)]
    pub days: Option<u32>,
}

/// A key's usage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// The key.
    pub key_id: Uuid,
    /// Requests per day, oldest first; days without requests are omitted.
    pub data: Vec<UsageDayView>,
    /// Total over the period.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub total: u64,
}

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

/// A workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    /// The workspace's id.
    pub id: Uuid,
    /// Name.
    #[schema(value_type = Name, inline)]
    pub name: String,
    /// The workspace's plan.
    #[schema(value_type = PlanId, inline)]
    pub plan_id: String,
    /// `live` or `sandbox`.
    pub environment: WorkspaceEnvironment,
    /// The workspace's own rate limit; `null` uses the environment's default.
    #[schema(max_items = 8)]
    pub rate_limit: Option<Vec<RateLimitWindow>>,
    /// The rate limit that applies to the workspace as a whole.
    #[schema(max_items = 8)]
    pub effective_rate_limit: Vec<RateLimitWindow>,
    /// When the workspace was created.
    pub created_at: DateTime<Utc>,
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
        }
    }
}

/// Body of `POST /v1/workspaces`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWorkspaceRequest {
    /// Name.
    #[schema(value_type = Name, inline)]
    pub name: String,
    /// An existing plan (else 400 `VALIDATION_FAILED`); absent uses `default`.
    #[serde(default)]
    #[schema(value_type = Option<PlanId>, inline)]
    pub plan_id: Option<String>,
    /// `live` (the default) or `sandbox`.
    #[serde(default)]
    pub environment: Option<WorkspaceEnvironment>,
    /// The workspace's own rate limit; absent uses the environment's default.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub rate_limit: Option<Vec<RateLimitWindow>>,
}

/// Body of `PATCH /v1/workspaces/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWorkspaceRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Name>, inline)]
    pub name: Option<String>,
    /// New plan: an existing one (else 400 `VALIDATION_FAILED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PlanId>, inline)]
    pub plan_id: Option<String>,
    /// New rate limit; `null` returns to the environment's default.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RateLimitWindow>>, max_items = 8)]
    pub rate_limit: Option<Option<Vec<RateLimitWindow>>>,
}

/// A list of workspaces.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceList {
    /// The workspaces, oldest first.
    pub data: Vec<WorkspaceView>,
}

/// A plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    /// The plan's id.
    #[schema(value_type = PlanId, inline)]
    pub id: String,
    /// Display name.
    #[schema(value_type = Name, inline)]
    pub name: String,
    /// Whether workspaces on the plan may use API keys.
    pub api_access: bool,
    /// Most keys (neither revoked nor deleted) a workspace may hold; `null` is unlimited.
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub max_keys: Option<u32>,
    /// Rate limit for keys that have none of their own.
    #[schema(max_items = 8)]
    pub key_rate_limit: Vec<RateLimitWindow>,
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
pub struct SavePlanRequest {
    /// Display name.
    #[schema(value_type = Name, inline)]
    pub name: String,
    /// Whether workspaces on the plan may use API keys.
    pub api_access: bool,
    /// Most keys (neither revoked nor deleted) a workspace may hold; absent or `null` is
    /// unlimited.
    #[serde(default)]
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub max_keys: Option<u32>,
    /// Rate limit for keys that have none of their own; absent uses 60 a minute and 1000 an
    /// hour.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub key_rate_limit: Option<Vec<RateLimitWindow>>,
}

impl SavePlanRequest {
    /// The default key rate limit when none is given.
    pub fn key_policy(&self) -> RateLimitPolicy {
        self.key_rate_limit.clone().map(RateLimitPolicy::new).unwrap_or_else(RateLimitPolicy::key_default)
    }
}

/// A list of plans.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanList {
    /// The plans.
    pub data: Vec<PlanView>,
}

/// An audit event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventView {
    /// The event's id.
    pub id: Uuid,
    /// The workspace concerned; `null` for plan changes.
    pub workspace_id: Option<Uuid>,
    /// What happened.
    pub action: AuditAction,
    /// The key acted on.
    pub key_id: Option<Uuid>,
    /// The key that acted; `null` for the system (first start, internal jobs).
    pub actor_key_id: Option<Uuid>,
    /// The caller's IP address.
    pub ip: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// The request's id (`X-Request-Id`).
    pub request_id: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl From<&AuditEvent> for AuditEventView {
    fn from(e: &AuditEvent) -> Self {
        Self {
            id: e.id.0,
            workspace_id: e.workspace_id.map(|w| w.0),
            action: e.action,
            key_id: e.key_id.map(|k| k.0),
            actor_key_id: e.actor_key_id.map(|k| k.0),
            ip: e.ip.clone(),
            user_agent: e.user_agent.clone(),
            request_id: e.request_id.clone(),
            at: e.at,
        }
    }
}

/// Query of `GET /v1/audit-events`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events about this key.
    pub key_id: Option<Uuid>,
    /// Only this action, e.g. `key.revoked`.
    pub action: Option<AuditAction>,
    /// From this time on (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// The previous page's `nextCursor`.
    #[param(value_type = Option<Cursor>, inline)]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(format = "uint32", minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// A page of audit events, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The events.
    pub data: Vec<AuditEventView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(value_type = Option<Cursor>, inline)]
    pub next_cursor: Option<String>,
}

// ---- How the document spells the values the server checks. Nothing constructs these types:
// fields name them with `value_type` so the rule is written once.

/// A name: 1 to 100 characters, not blank, without control characters.
#[derive(ToSchema)]
#[schema(
    min_length = 1,
    max_length = 100,
    pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\x9F\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
)]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Name(String);

/// A scope: `resource:action`, where either part may be `*`, or `*` alone for everything. Parts
/// are letters, digits, `_`, `-` and `.`; at most 128 characters in all.
#[derive(ToSchema)]
#[schema(
    min_length = 1,
    max_length = 128,
    pattern = r"^(\*|(\*|[A-Za-z0-9_.\-]+):(\*|[A-Za-z0-9_.\-]+))$",
    example = "keys:read"
)]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Scope(String);

/// A resource a key is restricted to (a site, a project...): 1 to 200 bytes of UTF-8 without
/// control characters.
#[derive(ToSchema)]
#[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1F\x7F-\x9F]+$", example = "site-42")]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Resource(String);

/// A plan's id: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
#[derive(ToSchema)]
#[schema(min_length = 1, max_length = 64, pattern = r"^[a-z0-9_\-]{1,64}$", example = "professional")]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct PlanId(String);

/// An opaque page cursor, as returned in `nextCursor`.
#[derive(ToSchema)]
#[schema(min_length = 22, max_length = 22, pattern = r"^[A-Za-z0-9_\-]{21}[AQgw]$")]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Cursor(String);

/// Labels: at most 50 entries; keys 1 to 64 bytes, values at most 512 bytes (UTF-8).
fn labels_schema(nullable: bool) -> Object {
    let string = |min: usize, max: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length((min > 0).then_some(min))
            .max_length(Some(max))
    };
    let types =
        if nullable { SchemaType::from_iter([Type::Object, Type::Null]) } else { Type::Object.into() };
    ObjectBuilder::new()
        .schema_type(types)
        .description(Some(
            "Free-form labels: at most 50 entries; keys of 1 to 64 bytes, values of at most 512 bytes (UTF-8).",
        ))
        .max_properties(Some(50))
        .property_names(Some(string(1, 64)))
        .additional_properties(Some(string(0, 512)))
        .build()
}

fn labels() -> Object {
    labels_schema(false)
}

fn labels_or_null() -> Object {
    labels_schema(true)
}
