//! Bodies and queries of `/v1/keys`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use keyward_core::{ApiKey, KeyEnvironment, KeyStatus, RateLimitWindow, RefillInterval, UsageDay};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Cursor, Name, Resource, Scope, double_option, labels, labels_or_null};

/// An API key as the API shows it: masked, never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiKeyView {
    /// The key's id.
    pub(crate) id: Uuid,
    /// The workspace the key belongs to.
    pub(crate) workspace_id: Uuid,
    /// Descriptive name.
    #[schema(value_type = Name, inline, example = "CI pipeline")]
    pub(crate) name: String,
    /// `live` or `test`, as written in the key.
    pub(crate) environment: KeyEnvironment,
    /// The first 12 characters of the key.
    #[schema(example = "kw_live_3xQz")]
    pub(crate) prefix: String,
    /// The last 4 characters of the key.
    #[schema(example = "a9Fk")]
    pub(crate) last4: String,
    /// Prefix and last 4 characters, for display.
    #[schema(example = "kw_live_3xQz…a9Fk")]
    pub(crate) masked_key: String,
    /// What the key may do.
    #[schema(value_type = Vec<Scope>, inline, example = json!(["keys:read"]))]
    pub(crate) scopes: Vec<String>,
    /// The resources the key is restricted to; empty means all resources.
    #[schema(value_type = Vec<Resource>, inline)]
    pub(crate) resources: Vec<String>,
    /// `active`, `inactive` or `revoked`. A key rotated with a grace period stays `active` until
    /// the grace period ends, and reads `revoked` after.
    pub(crate) status: KeyStatus,
    /// When the key was created.
    pub(crate) created_at: DateTime<Utc>,
    /// The IP address the key was created from.
    pub(crate) created_ip: Option<String>,
    /// When the key's record last changed.
    pub(crate) updated_at: DateTime<Utc>,
    /// When the key was last used (recorded in batches: up to 10 seconds late).
    pub(crate) last_used_at: Option<DateTime<Utc>>,
    /// When the key stops working; `null` when it never expires.
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// When the key was revoked.
    pub(crate) revoked_at: Option<DateTime<Utc>>,
    /// The key this one replaced.
    pub(crate) rotated_from: Option<Uuid>,
    /// The key that replaced this one.
    pub(crate) rotated_to: Option<Uuid>,
    /// After a rotation with a grace period: when this (old) key stops working.
    pub(crate) grace_ends_at: Option<DateTime<Utc>>,
    /// The key's own rate limit; `null` uses the plan's.
    #[schema(max_items = 8)]
    pub(crate) rate_limit: Option<Vec<RateLimitWindow>>,
    /// Most requests the key may have in flight at once; `null` is unlimited.
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) concurrency_limit: Option<u32>,
    /// Remaining credits; `null` when the key does not use credits.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits: Option<i64>,
    /// How the credits refill; `null` when they do not.
    pub(crate) refill: Option<CreditRefill>,
    /// When the credits were last refilled (or the key created with its refill).
    pub(crate) refilled_at: Option<DateTime<Utc>>,
    /// A spend that takes the credits to or below this sends a `key.credits_low` webhook event;
    /// `null`: none.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits_low_threshold: Option<i64>,
    /// Where the key may be used from: IPv4/IPv6 addresses and CIDR ranges, at most 100. Empty: the workspace's `ipAllowlist` applies; a non-empty list replaces it (it does not narrow it). Shown normalised: ranges as `203.0.113.0/24`, an address as `198.51.100.7/32`. A request from elsewhere is 403 `IP_NOT_ALLOWED`.
    #[schema(max_items = 100, example = json!(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]))]
    pub(crate) ip_allowlist: Vec<String>,
    /// Free-form labels.
    #[schema(schema_with = labels)]
    pub(crate) metadata: BTreeMap<String, String>,
    /// When a leak report named the key; `null` when none did.
    pub(crate) leaked_at: Option<DateTime<Utc>>,
    /// Where the reported leak was found (the report's URL).
    pub(crate) leak_source: Option<String>,
    /// When the key was imported from another system by its digest; `null` for keys keyward
    /// issued. An imported key's `prefix` and `last4` are what the import gave, or empty.
    pub(crate) imported_at: Option<DateTime<Utc>>,
}

/// Credits that refill: in the first request or read of each period (UTC) the key's credits are
/// *set* to `amount`, unused credits not carried over; once per period, however many nodes serve
/// the key. A rotated key's successor inherits the refill and the credits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreditRefill {
    /// `daily`: from 00:00 UTC each day; `monthly`: from 00:00 UTC on `day` each month.
    pub(crate) interval: RefillInterval,
    /// The credits after each refill, at least 1.
    #[schema(format = "int64", minimum = 1, maximum = 9223372036854775807_i64)]
    pub(crate) amount: i64,
    /// Monthly only: the day of the month, 1 to 31 (default 1); a month shorter than `day`
    /// refills on its last day. A daily refill refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "uint32", minimum = 1, maximum = 31)]
    pub(crate) day: Option<u32>,
}

impl From<keyward_core::CreditRefill> for CreditRefill {
    fn from(r: keyward_core::CreditRefill) -> Self {
        Self { interval: r.interval, amount: r.amount, day: r.day }
    }
}

impl From<CreditRefill> for keyward_core::CreditRefill {
    fn from(r: CreditRefill) -> Self {
        Self { interval: r.interval, amount: r.amount, day: r.day }
    }
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
            masked_key: k.masked(),
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
            refill: k.refill.map(CreditRefill::from),
            refilled_at: k.refilled_at,
            credits_low_threshold: k.credits_low_threshold,
            ip_allowlist: k.ip_allowlist.iter().map(ToString::to_string).collect(),
            metadata: k.metadata.clone(),
            leaked_at: k.leaked_at,
            leak_source: k.leak_source.clone(),
            imported_at: k.imported_at,
        }
    }
}

/// A key with its daily usage over the last 30 days.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiKeyDetail {
    /// The key.
    pub(crate) key: ApiKeyView,
    /// Requests per day, oldest first; days without requests are omitted.
    pub(crate) recent_usage: Vec<UsageDayView>,
}

/// A key just created or rotated, with its value. The value is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedApiKey {
    /// The new key's id, the same as `key.id` (links follow it).
    pub(crate) id: Uuid,
    /// The key, masked.
    pub(crate) key: ApiKeyView,
    /// The full key. Store it now: it cannot be retrieved later.
    #[schema(example = "kw_live_3xQzJ8tW0d9m2LrVb7NcKp4sY6eHfGaU1iZoTqXw5Rk0a9Fk")]
    pub(crate) secret: String,
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateKeyRequest {
    /// Descriptive name.
    #[schema(value_type = Name, inline, example = "CI pipeline")]
    pub(crate) name: String,
    /// What the key may do; never wider than the caller's own scopes (else 403
    /// `INSUFFICIENT_SCOPE`). Default: none.
    #[serde(default)]
    #[schema(value_type = Vec<Scope>, inline, example = json!(["keys:read"]))]
    pub(crate) scopes: Vec<String>,
    /// The resources the key is restricted to; empty (the default) means all resources. A
    /// resource-restricted caller may only create keys restricted to its own resources (else 403
    /// `RESOURCE_NOT_ALLOWED`).
    #[serde(default)]
    #[schema(value_type = Vec<Resource>, inline, max_items = 100)]
    pub(crate) resources: Vec<String>,
    /// Whether the key starts active (default true).
    #[serde(default)]
    pub(crate) active: Option<bool>,
    /// When the key stops working; must lie in the future. Absent: never.
    #[serde(default)]
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// The key's own rate limit; absent uses the plan's.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub(crate) rate_limit: Option<Vec<RateLimitWindow>>,
    /// Most requests the key may have in flight at once; absent is unlimited.
    #[serde(default)]
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) concurrency_limit: Option<u32>,
    /// Starting credits; absent means the key does not use credits (with a `refill`: the refill's
    /// `amount`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits: Option<i64>,
    /// How the credits refill; absent: they do not. The first refill is in the next period.
    #[serde(default)]
    pub(crate) refill: Option<CreditRefill>,
    /// Send a `key.credits_low` webhook event when a spend takes the credits to or below this;
    /// absent: none.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits_low_threshold: Option<i64>,
    /// Where the key may be used from: IPv4/IPv6 addresses and CIDR ranges, at most 100. Empty: the workspace's `ipAllowlist` applies; a non-empty list replaces it (it does not narrow it). Shown normalised: ranges as `203.0.113.0/24`, an address as `198.51.100.7/32`. A request from elsewhere is 403 `IP_NOT_ALLOWED`. A malformed entry, or a range with host bits set (`203.0.113.5/24`), is 400 `VALIDATION_FAILED` naming it (`ipAllowlist[2]`). Default: empty.
    #[serde(default)]
    #[schema(max_items = 100, example = json!(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]))]
    pub(crate) ip_allowlist: Vec<String>,
    /// Free-form labels.
    #[serde(default)]
    #[schema(schema_with = labels)]
    pub(crate) metadata: BTreeMap<String, String>,
}

/// One key of `POST /v1/keys/import`: its SHA-256 digest (never its value) and the settings of
/// `POST /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ImportKeyRow {
    /// SHA-256 of the whole key as callers send it, in hex (64 characters).
    #[schema(pattern = "^[0-9a-fA-F]{64}$", min_length = 64, max_length = 64)]
    pub(crate) digest: String,
    /// What to show of the key's start, at most 12 characters (default: none).
    #[serde(default)]
    #[schema(max_length = 12, example = "sk_live_4eC3")]
    pub(crate) prefix: String,
    /// What to show of the key's end, at most 4 characters (default: none).
    #[serde(default)]
    #[schema(max_length = 4, example = "x7Qa")]
    pub(crate) last4: String,
    /// Descriptive name.
    #[schema(value_type = Name, inline, example = "Legacy billing key")]
    pub(crate) name: String,
    /// What the key may do; never wider than the caller's own scopes. Default: none.
    #[serde(default)]
    #[schema(value_type = Vec<Scope>, inline, example = json!(["orders:read"]))]
    pub(crate) scopes: Vec<String>,
    /// The resources the key is restricted to; empty (the default) means all resources.
    #[serde(default)]
    #[schema(value_type = Vec<Resource>, inline, max_items = 100)]
    pub(crate) resources: Vec<String>,
    /// Whether the key starts active (default true).
    #[serde(default)]
    pub(crate) active: Option<bool>,
    /// When the key stops working; must lie in the future. Absent: never.
    #[serde(default)]
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// The key's own rate limit; absent uses the plan's.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub(crate) rate_limit: Option<Vec<RateLimitWindow>>,
    /// Most requests the key may have in flight at once; absent is unlimited.
    #[serde(default)]
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) concurrency_limit: Option<u32>,
    /// Starting credits; absent means the key does not use credits.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits: Option<i64>,
    /// How the credits refill, as on create; absent: they do not.
    #[serde(default)]
    pub(crate) refill: Option<CreditRefill>,
    /// Send a `key.credits_low` webhook event when a spend takes the credits to or below this;
    /// absent: none.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits_low_threshold: Option<i64>,
    /// Where the key may be used from, as on create (at most 100 entries); empty: the
    /// workspace's list applies.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub(crate) ip_allowlist: Vec<String>,
    /// Free-form labels.
    #[serde(default)]
    #[schema(schema_with = labels)]
    pub(crate) metadata: BTreeMap<String, String>,
}

/// Body of `POST /v1/keys/import`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ImportKeysRequest {
    /// 1 to 1000 keys, imported all or none.
    #[schema(min_items = 1, max_items = 1000)]
    pub(crate) keys: Vec<ImportKeyRow>,
}

/// The keys an import stored, in the order given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImportedKeys {
    /// The keys, masked.
    pub(crate) data: Vec<ApiKeyView>,
}

/// Body of `PATCH /v1/keys/{id}`: absent fields stay as they are; `null` clears optional ones.
/// The key's value never changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateKeyRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Name>, inline)]
    pub(crate) name: Option<String>,
    /// New scopes, replacing all; never wider than the caller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Scope>>, inline)]
    pub(crate) scopes: Option<Vec<String>>,
    /// New resource restrictions, replacing all; empty means all resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Resource>>, inline, max_items = 100)]
    pub(crate) resources: Option<Vec<String>>,
    /// Switches the key on (`true`) or off (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) active: Option<bool>,
    /// New expiry, in the future; `null` removes it.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub(crate) expires_at: Option<Option<DateTime<Utc>>>,
    /// New rate limit; `null` returns to the plan's.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RateLimitWindow>>, max_items = 8)]
    pub(crate) rate_limit: Option<Option<Vec<RateLimitWindow>>>,
    /// New in-flight limit; `null` removes it.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) concurrency_limit: Option<Option<u32>>,
    /// New labels, replacing all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = labels_or_null)]
    pub(crate) metadata: Option<BTreeMap<String, String>>,
    /// New refill; `null` removes it (the credits stay). A key never refilled before is refilled
    /// at its next request or read.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CreditRefill>)]
    pub(crate) refill: Option<Option<CreditRefill>>,
    /// New `key.credits_low` threshold; `null` removes it.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 9223372036854775807_i64)]
    pub(crate) credits_low_threshold: Option<Option<i64>>,
    /// New IP allowlist, replacing all; `[]` returns to the workspace's. Rules as on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub(crate) ip_allowlist: Option<Vec<String>>,
}

/// Body of `POST /v1/keys/{id}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RotateKeyRequest {
    /// Seconds the old key keeps working, at most 30 days; absent or 0 stops it at once.
    #[serde(default)]
    #[schema(format = "uint64", minimum = 0, maximum = 2592000, example = 3600)]
    pub(crate) grace_seconds: Option<u64>,
}

/// Query of `GET /v1/keys`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListKeysQuery {
    /// Only keys with this status: `active`, `inactive` or `revoked`.
    pub(crate) status: Option<KeyStatus>,
    /// The previous page's `nextCursor`.
    #[param(value_type = Option<Cursor>, inline)]
    pub(crate) cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(format = "uint32", minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

/// A page of keys, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyPage {
    /// The keys.
    pub(crate) data: Vec<ApiKeyView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(value_type = Option<Cursor>, inline)]
    pub(crate) next_cursor: Option<String>,
}

/// Requests made with a key on one UTC day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageDayView {
    /// The day (UTC).
    pub(crate) day: NaiveDate,
    /// Successful requests.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) count: u64,
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
pub(crate) struct UsageQuery {
    /// Days to cover, today included: 1 to 366 (default 30).
    #[param(format = "uint32", minimum = 1, maximum = 366)]
    pub(crate) days: Option<u32>,
}

/// A key's usage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageReport {
    /// The key.
    pub(crate) key_id: Uuid,
    /// Requests per day, oldest first; days without requests are omitted.
    pub(crate) data: Vec<UsageDayView>,
    /// Total over the period.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) total: u64,
}
