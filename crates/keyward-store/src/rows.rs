//! Row mapping shared by every SQL backend.
//!
//! Rows hold only portable column types (`TEXT`, 64-bit integers, booleans), so the same
//! `FromRow` structs decode SQLite and PostgreSQL rows alike: ids are hyphenated lowercase UUIDs,
//! times are milliseconds since the Unix epoch, and scopes, resources, metadata and rate limits
//! are JSON text. Converting to and from the domain types happens here, once.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use keyward_core::webhook::{
    ClaimedDelivery, DeliveryAttempt, DeliveryState, WebhookDelivery, WebhookEndpoint,
};
use keyward_core::{
    ApiKey, AuditAction, AuditEvent, AuditEventId, KeyDigest, KeyEnvironment, KeyHash, KeyId, KeyStatus,
    Plan, PlanId, RateLimitPolicy, ScopeSet, StoreError, UsageDay, Workspace, WorkspaceEnvironment,
    WorkspaceId,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The columns of `api_keys`, in the order [`KeyRow`] and the insert statements use.
macro_rules! key_columns {
    () => {
        "id, workspace_id, name, environment, prefix, last4, digest_hex, pepper_id, scopes, resources, \
         status, deleted_at, revoked_at, created_at, created_ip, updated_at, last_used_at, expires_at, \
         rotated_from, rotated_to, grace_ends_at, rate_limit, concurrency_limit, credits, metadata, version, \
         refill, refilled_at, ip_allowlist, leaked_at, leak_source, imported_at, credits_low_threshold"
    };
}
pub(crate) use key_columns;

/// The columns of `audit_events`, in the order [`AuditRow`] uses.
macro_rules! audit_columns {
    () => {
        "id, workspace_id, action, key_id, actor_key_id, ip, user_agent, request_id, at"
    };
}
pub(crate) use audit_columns;

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("corrupt {what} in the store: {detail}"))
}

/// Milliseconds since the epoch, as stored.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(to_ms)
}

/// A stored time back as a `DateTime`.
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt("timestamp", ms))
}

fn from_opt_ms(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_ms).transpose()
}

/// A day as stored: `YYYY-MM-DD`, which sorts chronologically as text.
pub(crate) fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn parse_day(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| corrupt("day", e))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(format!("cannot encode JSON: {e}")))
}

fn from_json<T: DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn from_opt_json<T: DeserializeOwned>(what: &str, s: Option<String>) -> Result<Option<T>, StoreError> {
    s.map(|s| from_json(what, &s)).transpose()
}

fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError> {
    s.parse().map_err(|_| corrupt(what, s))
}

fn parse_opt<T: FromStr>(what: &str, s: Option<String>) -> Result<Option<T>, StoreError> {
    s.map(|s| parse(what, &s)).transpose()
}

/// A stored `refill` column.
pub(crate) fn refill_of(json: &str) -> Result<keyward_core::CreditRefill, StoreError> {
    from_json("refill", json)
}

/// A `u64` in a signed 64-bit column.
pub(crate) fn to_i64(what: &str, n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Other(format!("{what} {n} does not fit the store")))
}

fn to_u64(what: &str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(what, n))
}

fn to_u32(what: &str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(what, n))
}

/// A `plans` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PlanRow {
    id: String,
    name: String,
    api_access: bool,
    max_keys: Option<i64>,
    key_rate_limit: String,
}

impl PlanRow {
    pub(crate) fn into_plan(self) -> Result<Plan, StoreError> {
        Ok(Plan {
            id: PlanId(self.id),
            name: self.name,
            api_access: self.api_access,
            max_keys: self.max_keys.map(|n| to_u32("max_keys", n)).transpose()?,
            key_rate_limit: from_json("key_rate_limit", &self.key_rate_limit)?,
        })
    }
}

/// A plan's column values, ready to bind.
#[derive(Debug)]
pub(crate) struct PlanValues {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) api_access: bool,
    pub(crate) max_keys: Option<i64>,
    pub(crate) key_rate_limit: String,
}

impl PlanValues {
    pub(crate) fn new(plan: &Plan) -> Result<Self, StoreError> {
        Ok(Self {
            id: plan.id.0.clone(),
            name: plan.name.clone(),
            api_access: plan.api_access,
            max_keys: plan.max_keys.map(i64::from),
            key_rate_limit: to_json(&plan.key_rate_limit)?,
        })
    }
}

/// A `workspaces` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WorkspaceRow {
    id: String,
    name: String,
    plan_id: String,
    environment: String,
    rate_limit: Option<String>,
    created_at: i64,
    ip_allowlist: String,
}

impl WorkspaceRow {
    pub(crate) fn into_workspace(self) -> Result<Workspace, StoreError> {
        Ok(Workspace {
            id: parse("workspace id", &self.id)?,
            name: self.name,
            plan_id: PlanId(self.plan_id),
            environment: parse::<WorkspaceEnvironment>("workspace environment", &self.environment)?,
            rate_limit: from_opt_json::<RateLimitPolicy>("rate_limit", self.rate_limit)?,
            created_at: from_ms(self.created_at)?,
            ip_allowlist: from_json("ip_allowlist", &self.ip_allowlist)?,
        })
    }
}

/// A workspace's column values, ready to bind.
#[derive(Debug)]
pub(crate) struct WorkspaceValues {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) plan_id: String,
    pub(crate) environment: &'static str,
    pub(crate) rate_limit: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) ip_allowlist: String,
}

impl WorkspaceValues {
    pub(crate) fn new(ws: &Workspace) -> Result<Self, StoreError> {
        Ok(Self {
            id: ws.id.to_string(),
            name: ws.name.clone(),
            plan_id: ws.plan_id.0.clone(),
            environment: ws.environment.as_str(),
            rate_limit: ws.rate_limit.as_ref().map(to_json).transpose()?,
            created_at: to_ms(ws.created_at),
            ip_allowlist: to_json(&ws.ip_allowlist)?,
        })
    }
}

/// Declares a row struct that sqlx's `FromRow` reads by column name and, with the `sqlite`
/// feature, SQLite's direct reader (`crate::direct`) reads by position: its fields must be the
/// statement's columns in order, which [`Self::COLUMNS`] names for the reader to check.
macro_rules! direct_row {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, sqlx::FromRow)]
        pub(crate) struct $name {
            $($field: $ty,)*
        }

        #[cfg(feature = "sqlite")]
        impl $name {
            /// The fields' names, in order.
            pub(crate) const COLUMNS: &[&str] = &[$(stringify!($field)),*];

            /// Reads the fields from `row`'s columns, the first at `*at`; leaves `*at` after the
            /// last.
            pub(crate) fn from_direct(row: &rusqlite::Row<'_>, at: &mut usize) -> rusqlite::Result<Self> {
                Ok(Self {
                    $($field: {
                        let value = row.get(*at)?;
                        *at += 1;
                        value
                    },)*
                })
            }
        }
    };
}

direct_row! {
    /// An `api_keys` row, its fields in [`key_columns`]'s order.
    struct KeyRow {
        id: String,
        workspace_id: String,
        name: String,
        environment: String,
        prefix: String,
        last4: String,
        digest_hex: String,
        pepper_id: Option<String>,
        scopes: String,
        resources: String,
        status: String,
        deleted_at: Option<i64>,
        revoked_at: Option<i64>,
        created_at: i64,
        created_ip: Option<String>,
        updated_at: i64,
        last_used_at: Option<i64>,
        expires_at: Option<i64>,
        rotated_from: Option<String>,
        rotated_to: Option<String>,
        grace_ends_at: Option<i64>,
        rate_limit: Option<String>,
        concurrency_limit: Option<i64>,
        credits: Option<i64>,
        metadata: String,
        version: i64,
        refill: Option<String>,
        refilled_at: Option<i64>,
        ip_allowlist: String,
        leaked_at: Option<i64>,
        leak_source: Option<String>,
        imported_at: Option<i64>,
        credits_low_threshold: Option<i64>,
    }
}

direct_row! {
    /// The workspace's (`w_`) and plan's (`p_`) columns of a [`KeyRecordRow`], in
    /// [`key_record_columns`]'s order.
    struct JoinedRow {
        w_id: Option<String>,
        w_name: Option<String>,
        w_plan_id: Option<String>,
        w_environment: Option<String>,
        w_rate_limit: Option<String>,
        w_created_at: Option<i64>,
        w_ip_allowlist: Option<String>,
        p_id: Option<String>,
        p_name: Option<String>,
        p_api_access: Option<bool>,
        p_max_keys: Option<i64>,
        p_key_rate_limit: Option<String>,
    }
}

/// A key's row joined with its workspace's and the workspace's plan's, left-joined so that a
/// key whose workspace or plan is missing is told apart from an unknown key.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyRecordRow {
    #[sqlx(flatten)]
    key: KeyRow,
    #[sqlx(flatten)]
    joined: JoinedRow,
}

#[cfg(feature = "sqlite")]
impl KeyRecordRow {
    /// The columns, in order, that [`KeyRecordRow::from_direct`] reads.
    pub(crate) fn columns() -> impl Iterator<Item = &'static str> {
        KeyRow::COLUMNS.iter().chain(JoinedRow::COLUMNS).copied()
    }

    pub(crate) fn from_direct(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let mut at = 0;
        Ok(Self { key: KeyRow::from_direct(row, &mut at)?, joined: JoinedRow::from_direct(row, &mut at)? })
    }
}

/// The `w_` and `p_` columns [`KeyRecordRow`] reads beside the key's.
macro_rules! key_record_columns {
    () => {
        "w.id AS w_id, w.name AS w_name, w.plan_id AS w_plan_id, w.environment AS w_environment, \
         w.rate_limit AS w_rate_limit, w.created_at AS w_created_at, w.ip_allowlist AS w_ip_allowlist, \
         p.id AS p_id, p.name AS p_name, p.api_access AS p_api_access, p.max_keys AS p_max_keys, \
         p.key_rate_limit AS p_key_rate_limit"
    };
}
pub(crate) use key_record_columns;

impl KeyRecordRow {
    pub(crate) fn into_record(self) -> Result<keyward_core::KeyRecord, StoreError> {
        let (key, j) = (self.key.into_key()?, self.joined);
        let workspace =
            match (j.w_id, j.w_name, j.w_plan_id, j.w_environment, j.w_created_at, j.w_ip_allowlist) {
                (
                    Some(id),
                    Some(name),
                    Some(plan_id),
                    Some(environment),
                    Some(created_at),
                    Some(ip_allowlist),
                ) => WorkspaceRow {
                    id,
                    name,
                    plan_id,
                    environment,
                    rate_limit: j.w_rate_limit,
                    created_at,
                    ip_allowlist,
                }
                .into_workspace()?,
                _ => return Err(keyward_core::store::no_workspace(&key)),
            };
        let plan = match (j.p_id, j.p_name, j.p_api_access, j.p_key_rate_limit) {
            (Some(id), Some(name), Some(api_access), Some(key_rate_limit)) => {
                PlanRow { id, name, api_access, max_keys: j.p_max_keys, key_rate_limit }.into_plan()?
            }
            _ => return Err(keyward_core::store::no_plan(&workspace)),
        };
        Ok(keyward_core::KeyRecord { key, workspace, plan })
    }
}

impl KeyRow {
    pub(crate) fn into_key(self) -> Result<ApiKey, StoreError> {
        Ok(ApiKey {
            id: parse("key id", &self.id)?,
            workspace_id: parse("workspace id", &self.workspace_id)?,
            name: self.name,
            environment: parse::<KeyEnvironment>("key environment", &self.environment)?,
            prefix: self.prefix,
            last4: self.last4,
            hash: KeyHash {
                digest: KeyDigest::from_hex(&self.digest_hex).ok_or_else(|| corrupt("digest", "not hex"))?,
                pepper_id: self.pepper_id,
            },
            scopes: from_json::<ScopeSet>("scopes", &self.scopes)?,
            resources: from_json::<Vec<String>>("resources", &self.resources)?,
            status: parse::<KeyStatus>("key status", &self.status)?,
            deleted_at: from_opt_ms(self.deleted_at)?,
            revoked_at: from_opt_ms(self.revoked_at)?,
            created_at: from_ms(self.created_at)?,
            created_ip: self.created_ip,
            updated_at: from_ms(self.updated_at)?,
            last_used_at: from_opt_ms(self.last_used_at)?,
            expires_at: from_opt_ms(self.expires_at)?,
            rotated_from: parse_opt::<KeyId>("rotated_from", self.rotated_from)?,
            rotated_to: parse_opt::<KeyId>("rotated_to", self.rotated_to)?,
            grace_ends_at: from_opt_ms(self.grace_ends_at)?,
            rate_limit: from_opt_json::<RateLimitPolicy>("rate_limit", self.rate_limit)?,
            concurrency_limit: self.concurrency_limit.map(|n| to_u32("concurrency_limit", n)).transpose()?,
            credits: self.credits,
            metadata: from_json::<BTreeMap<String, String>>("metadata", &self.metadata)?,
            version: to_u64("version", self.version)?,
            refill: from_opt_json("refill", self.refill)?,
            refilled_at: from_opt_ms(self.refilled_at)?,
            ip_allowlist: from_json("ip_allowlist", &self.ip_allowlist)?,
            leaked_at: from_opt_ms(self.leaked_at)?,
            leak_source: self.leak_source,
            imported_at: from_opt_ms(self.imported_at)?,
            credits_low_threshold: self.credits_low_threshold,
        })
    }
}

/// A key's column values, ready to bind (same order as [`key_columns!`]).
#[derive(Debug)]
pub(crate) struct KeyValues {
    pub(crate) id: String,
    pub(crate) workspace_id: String,
    pub(crate) name: String,
    pub(crate) environment: &'static str,
    pub(crate) prefix: String,
    pub(crate) last4: String,
    pub(crate) digest_hex: String,
    pub(crate) pepper_id: Option<String>,
    pub(crate) scopes: String,
    pub(crate) resources: String,
    pub(crate) status: &'static str,
    pub(crate) deleted_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) created_ip: Option<String>,
    pub(crate) updated_at: i64,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) rotated_from: Option<String>,
    pub(crate) rotated_to: Option<String>,
    pub(crate) grace_ends_at: Option<i64>,
    pub(crate) rate_limit: Option<String>,
    pub(crate) concurrency_limit: Option<i64>,
    pub(crate) credits: Option<i64>,
    pub(crate) metadata: String,
    pub(crate) version: i64,
    pub(crate) refill: Option<String>,
    pub(crate) refilled_at: Option<i64>,
    pub(crate) ip_allowlist: String,
    pub(crate) leaked_at: Option<i64>,
    pub(crate) leak_source: Option<String>,
    pub(crate) imported_at: Option<i64>,
    pub(crate) credits_low_threshold: Option<i64>,
}

impl KeyValues {
    pub(crate) fn new(key: &ApiKey) -> Result<Self, StoreError> {
        Ok(Self {
            id: key.id.to_string(),
            workspace_id: key.workspace_id.to_string(),
            name: key.name.clone(),
            environment: key.environment.as_str(),
            prefix: key.prefix.clone(),
            last4: key.last4.clone(),
            digest_hex: key.hash.digest.to_hex(),
            pepper_id: key.hash.pepper_id.clone(),
            scopes: to_json(&key.scopes)?,
            resources: to_json(&key.resources)?,
            status: key.status.as_str(),
            deleted_at: opt_ms(key.deleted_at),
            revoked_at: opt_ms(key.revoked_at),
            created_at: to_ms(key.created_at),
            created_ip: key.created_ip.clone(),
            updated_at: to_ms(key.updated_at),
            last_used_at: opt_ms(key.last_used_at),
            expires_at: opt_ms(key.expires_at),
            rotated_from: key.rotated_from.map(|k| k.to_string()),
            rotated_to: key.rotated_to.map(|k| k.to_string()),
            grace_ends_at: opt_ms(key.grace_ends_at),
            rate_limit: key.rate_limit.as_ref().map(to_json).transpose()?,
            concurrency_limit: key.concurrency_limit.map(i64::from),
            credits: key.credits,
            metadata: to_json(&key.metadata)?,
            version: to_i64("version", key.version)?,
            refill: key.refill.as_ref().map(to_json).transpose()?,
            refilled_at: opt_ms(key.refilled_at),
            ip_allowlist: to_json(&key.ip_allowlist)?,
            leaked_at: opt_ms(key.leaked_at),
            leak_source: key.leak_source.clone(),
            imported_at: opt_ms(key.imported_at),
            credits_low_threshold: key.credits_low_threshold,
        })
    }
}

/// An `audit_events` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: String,
    workspace_id: Option<String>,
    action: String,
    key_id: Option<String>,
    actor_key_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    at: i64,
}

impl AuditRow {
    pub(crate) fn into_event(self) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            id: parse::<AuditEventId>("audit event id", &self.id)?,
            workspace_id: parse_opt::<WorkspaceId>("workspace id", self.workspace_id)?,
            action: parse::<AuditAction>("audit action", &self.action)?,
            key_id: parse_opt::<KeyId>("key id", self.key_id)?,
            actor_key_id: parse_opt::<KeyId>("actor key id", self.actor_key_id)?,
            ip: self.ip,
            user_agent: self.user_agent,
            request_id: self.request_id,
            at: from_ms(self.at)?,
        })
    }
}

/// An audit event's column values, ready to bind (same order as [`audit_columns!`]).
#[derive(Debug)]
pub(crate) struct AuditValues {
    pub(crate) id: String,
    pub(crate) workspace_id: Option<String>,
    pub(crate) action: &'static str,
    pub(crate) key_id: Option<String>,
    pub(crate) actor_key_id: Option<String>,
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) at: i64,
}

impl AuditValues {
    pub(crate) fn new(ev: &AuditEvent) -> Self {
        Self {
            id: ev.id.to_string(),
            workspace_id: ev.workspace_id.map(|w| w.to_string()),
            action: ev.action.as_str(),
            key_id: ev.key_id.map(|k| k.to_string()),
            actor_key_id: ev.actor_key_id.map(|k| k.to_string()),
            ip: ev.ip.clone(),
            user_agent: ev.user_agent.clone(),
            request_id: ev.request_id.clone(),
            at: to_ms(ev.at),
        }
    }
}

/// A `usage_daily` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UsageRow {
    key_id: String,
    day: String,
    count: i64,
}

impl UsageRow {
    pub(crate) fn into_usage(self) -> Result<UsageDay, StoreError> {
        Ok(UsageDay {
            key_id: parse("key id", &self.key_id)?,
            day: parse_day(&self.day)?,
            count: to_u64("usage count", self.count)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_round_trip() {
        let day = NaiveDate::from_ymd_opt(2025, 3, 9).unwrap();
        assert_eq!(day_text(day), "2025-03-09");
        assert_eq!(parse_day("2025-03-09").unwrap(), day);
        let t = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        assert_eq!(from_ms(to_ms(t)).unwrap(), t);
        assert!(matches!(from_ms(i64::MAX), Err(StoreError::Other(_))));
    }

    #[test]
    fn hyphenated_uuid_text_sorts_like_the_uuid() {
        let mut ids: Vec<KeyId> = (0..50).map(|_| KeyId::new()).collect();
        ids.push(KeyId(uuid::Uuid::from_u128(u128::MAX)));
        ids.push(KeyId(uuid::Uuid::from_u128(0x0a00_0000_0000_0000_0000_0000_0000_0000)));
        let mut by_text = ids.clone();
        by_text.sort_by_key(|k| k.to_string());
        ids.sort();
        assert_eq!(by_text, ids);
    }
}

/// An `audit_heads` row: a chain's newest position and hash, and its anchor.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HeadRow {
    pub(crate) chain: String,
    pub(crate) seq: i64,
    pub(crate) hash: String,
    pub(crate) anchor_seq: i64,
    pub(crate) anchor_hash: String,
}

/// An `audit_events` row with its place in its chain.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChainedAuditRow {
    #[sqlx(flatten)]
    pub(crate) event: AuditRow,
    pub(crate) seq: i64,
    pub(crate) prev_hash: Option<String>,
    pub(crate) hash: Option<String>,
}

/// The columns of `webhook_endpoints` [`EndpointRow`] reads (the secret is read only by a claim).
pub(crate) const ENDPOINT_COLUMNS: &str = "id, workspace_id, url, description, events, enabled, disabled_reason, \
     consecutive_failures, created_at, updated_at";

/// A `webhook_endpoints` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EndpointRow {
    id: String,
    workspace_id: String,
    url: String,
    description: String,
    events: String,
    enabled: bool,
    disabled_reason: Option<String>,
    consecutive_failures: i64,
    created_at: i64,
    updated_at: i64,
}

impl EndpointRow {
    pub(crate) fn into_endpoint(self) -> Result<WebhookEndpoint, StoreError> {
        Ok(WebhookEndpoint {
            id: parse("webhook id", &self.id)?,
            workspace_id: parse("workspace id", &self.workspace_id)?,
            url: self.url,
            description: self.description,
            events: from_json("webhook events", &self.events)?,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            consecutive_failures: to_u32("consecutive_failures", self.consecutive_failures)?,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

/// The `events` column of an endpoint: its event types as a JSON array.
pub(crate) fn endpoint_events(endpoint: &WebhookEndpoint) -> Result<String, StoreError> {
    to_json(&endpoint.events)
}

/// The columns of a delivery listing (`d`: webhook_deliveries, `ev`: webhook_events).
pub(crate) const DELIVERY_COLUMNS: &str = "d.id, d.event_id, ev.type AS event_type, d.endpoint_id, d.state, \
     d.next_attempt_at, d.created_at, d.retry_from, d.delivered_at, ev.payload";

/// A delivery, joined with its event.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub(crate) id: String,
    event_id: String,
    event_type: String,
    endpoint_id: String,
    state: String,
    next_attempt_at: i64,
    created_at: i64,
    retry_from: i64,
    delivered_at: Option<i64>,
    payload: String,
}

impl DeliveryRow {
    pub(crate) fn into_delivery(self, attempts: Vec<DeliveryAttempt>) -> Result<WebhookDelivery, StoreError> {
        let state = parse::<DeliveryState>("delivery state", &self.state)?;
        Ok(WebhookDelivery {
            id: parse("delivery id", &self.id)?,
            event_id: parse("webhook event id", &self.event_id)?,
            event_type: parse("webhook event type", &self.event_type)?,
            endpoint_id: parse("webhook id", &self.endpoint_id)?,
            state,
            attempts,
            next_attempt_at: (state == DeliveryState::Pending)
                .then(|| from_ms(self.next_attempt_at))
                .transpose()?,
            created_at: from_ms(self.created_at)?,
            retry_from: from_ms(self.retry_from)?,
            delivered_at: from_opt_ms(self.delivered_at)?,
            payload: self.payload,
        })
    }
}

/// A `webhook_attempts` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub(crate) delivery_id: String,
    number: i64,
    at: i64,
    status: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
}

impl AttemptRow {
    pub(crate) fn into_attempt(self) -> Result<DeliveryAttempt, StoreError> {
        Ok(DeliveryAttempt {
            number: to_u32("attempt number", self.number)?,
            at: from_ms(self.at)?,
            status: self
                .status
                .map(|s| u16::try_from(s).map_err(|_| corrupt("attempt status", s)))
                .transpose()?,
            error: self.error,
            duration_ms: to_u64("attempt duration", self.duration_ms)?,
        })
    }
}

/// A claimed delivery with its event and endpoint.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ClaimRow {
    id: String,
    event_id: String,
    event_type: String,
    payload: String,
    endpoint_id: String,
    url: String,
    secret: String,
    attempts: i64,
    retry_from: i64,
}

impl ClaimRow {
    pub(crate) fn into_claimed(self, lease: i64) -> Result<ClaimedDelivery, StoreError> {
        Ok(ClaimedDelivery {
            id: parse("delivery id", &self.id)?,
            event_id: parse("webhook event id", &self.event_id)?,
            event_type: parse("webhook event type", &self.event_type)?,
            payload: self.payload,
            endpoint_id: parse("webhook id", &self.endpoint_id)?,
            url: self.url,
            secret: self.secret.into(),
            attempts: to_u32("attempts", self.attempts)?,
            retry_from: from_ms(self.retry_from)?,
            lease,
        })
    }
}
