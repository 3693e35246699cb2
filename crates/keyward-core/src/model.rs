//! The records keyward keeps: plans, workspaces, keys, audit events and usage.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::format::KeyEnvironment;
use crate::hash::KeyHash;
use crate::scope::ScopeSet;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifies an API key. Time-ordered, so ids sort in creation order.
    KeyId
);
uuid_id!(
    /// Identifies a workspace.
    WorkspaceId
);
uuid_id!(
    /// Identifies an audit event.
    AuditEventId
);
uuid_id!(
    /// Identifies a webhook endpoint.
    WebhookId
);
uuid_id!(
    /// Identifies a webhook event: its `webhook-id` header, the same on every retry.
    WebhookEventId
);
uuid_id!(
    /// Identifies one event's delivery to one endpoint.
    DeliveryId
);

/// Identifies a plan: a short slug such as `professional`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(pub String);

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PlanId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// One window of a rate limit: at most `limit` requests per `period_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitWindow {
    /// Requests allowed in one period.
    pub limit: u32,
    /// Length of the period in seconds.
    pub period_secs: u32,
}

impl RateLimitWindow {
    /// `limit` requests per second.
    pub const fn per_second(limit: u32) -> Self {
        Self { limit, period_secs: 1 }
    }
    /// `limit` requests per minute.
    pub const fn per_minute(limit: u32) -> Self {
        Self { limit, period_secs: 60 }
    }
    /// `limit` requests per hour.
    pub const fn per_hour(limit: u32) -> Self {
        Self { limit, period_secs: 3600 }
    }
}

/// A rate-limit policy: every window applies at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct RateLimitPolicy {
    /// The windows; a request must fit in all of them.
    pub windows: Vec<RateLimitWindow>,
}

impl RateLimitPolicy {
    /// A policy of the given windows.
    pub fn new(windows: impl Into<Vec<RateLimitWindow>>) -> Self {
        Self { windows: windows.into() }
    }
    /// Per key: 60 a minute and 1000 an hour.
    pub fn key_default() -> Self {
        Self::new([RateLimitWindow::per_minute(60), RateLimitWindow::per_hour(1000)])
    }
    /// Per live workspace: 3000 a minute with bursts of at most 30 a second.
    pub fn live_workspace() -> Self {
        Self::new([RateLimitWindow::per_minute(3000), RateLimitWindow::per_second(30)])
    }
    /// Per sandbox workspace: 100 a minute with bursts of at most 5 a second.
    pub fn sandbox_workspace() -> Self {
        Self::new([RateLimitWindow::per_minute(100), RateLimitWindow::per_second(5)])
    }
    /// Checks that every window allows at least one request in a period of at least a second.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.windows.len() > 8 {
            return Err("at most 8 windows");
        }
        if self.windows.iter().any(|w| w.limit == 0 || w.period_secs == 0) {
            return Err("every window needs a limit and a period of at least 1");
        }
        if self.windows.iter().any(|w| w.period_secs > MAX_PERIOD_SECS) {
            return Err("a period may be at most 31 days (2678400 seconds)");
        }
        if self.windows.iter().any(|w| u64::from(w.limit) > MAX_RATE_PER_SEC * u64::from(w.period_secs)) {
            return Err("a window may allow at most 1000000 requests per second of its period");
        }
        Ok(())
    }
}

/// Longest rate-limit window: 31 days.
pub const MAX_PERIOD_SECS: u32 = 31 * 24 * 3600;
/// Highest rate a window may allow, in requests per second: `limit <= MAX_RATE_PER_SEC x
/// period_secs`. Keeps the GCRA emission interval (`period / limit`) at 1 microsecond or more.
pub const MAX_RATE_PER_SEC: u64 = 1_000_000;

/// What a plan includes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Slug, e.g. `professional`.
    pub id: PlanId,
    /// Display name.
    pub name: String,
    /// Whether workspaces on this plan may use API keys at all.
    pub api_access: bool,
    /// Most keys (neither revoked nor deleted) a workspace may hold; `None` is unlimited.
    pub max_keys: Option<u32>,
    /// Rate limit for keys that have none of their own.
    pub key_rate_limit: RateLimitPolicy,
}

impl Plan {
    /// The plan new deployments start with: API access, unlimited keys, default key limits.
    pub fn default_plan() -> Self {
        Self {
            id: PlanId::from("default"),
            name: "Default".into(),
            api_access: true,
            max_keys: None,
            key_rate_limit: RateLimitPolicy::key_default(),
        }
    }
}

/// Whether a workspace serves production or testing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WorkspaceEnvironment {
    /// Production: `live` keys.
    Live,
    /// Testing: `test` keys and tighter limits.
    Sandbox,
}

impl WorkspaceEnvironment {
    /// The environment written into this workspace's keys.
    pub fn key_environment(self) -> KeyEnvironment {
        match self {
            Self::Live => KeyEnvironment::Live,
            Self::Sandbox => KeyEnvironment::Test,
        }
    }
    /// The workspace rate limit used when the workspace sets none.
    pub fn default_rate_limit(self) -> RateLimitPolicy {
        match self {
            Self::Live => RateLimitPolicy::live_workspace(),
            Self::Sandbox => RateLimitPolicy::sandbox_workspace(),
        }
    }
    /// `live` or `sandbox`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A workspace: the tenant every key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Id.
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// The plan.
    pub plan_id: PlanId,
    /// Live or sandbox.
    pub environment: WorkspaceEnvironment,
    /// Workspace-wide rate limit; `None` uses the environment's default.
    pub rate_limit: Option<RateLimitPolicy>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Where its keys may be used from, for keys with no list of their own; empty: anywhere.
    pub ip_allowlist: Vec<ipnet::IpNet>,
}

impl Workspace {
    /// The rate limit that applies to the workspace as a whole.
    pub fn effective_rate_limit(&self) -> RateLimitPolicy {
        self.rate_limit.clone().unwrap_or_else(|| self.environment.default_rate_limit())
    }
}

/// Where a key stands. Deletion is separate ([`ApiKey::deleted_at`]) and needs `Revoked`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyStatus {
    /// Works.
    Active,
    /// Switched off; can be switched on again.
    Inactive,
    /// Switched off for good.
    Revoked,
}

impl KeyStatus {
    /// `active`, `inactive` or `revoked`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An API key as stored: everything but its plaintext.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Id.
    pub id: KeyId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Descriptive name, e.g. "CI pipeline".
    pub name: String,
    /// `live` or `test`, as written in the key.
    pub environment: KeyEnvironment,
    /// The first 12 characters of the key, for display.
    pub prefix: String,
    /// The last 4 characters of the key, for display.
    pub last4: String,
    /// The stored digest.
    pub hash: KeyHash,
    /// What the key may do.
    pub scopes: ScopeSet,
    /// Resources the key is restricted to (sites, projects...); empty means all.
    pub resources: Vec<String>,
    /// Active, inactive or revoked.
    pub status: KeyStatus,
    /// When the key was soft-deleted; such keys are invisible to the API.
    pub deleted_at: Option<DateTime<Utc>>,
    /// When the key was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// The IP address the key was created from.
    pub created_ip: Option<String>,
    /// Last change to the record.
    pub updated_at: DateTime<Utc>,
    /// Last successful use (written behind, so up to the flush interval late).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// The key this one replaced.
    pub rotated_from: Option<KeyId>,
    /// The key that replaced this one.
    pub rotated_to: Option<KeyId>,
    /// After a rotation with grace: when this (old) key stops working.
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// The key's own rate limit; `None` uses the plan's.
    pub rate_limit: Option<RateLimitPolicy>,
    /// Most requests in flight at once; `None` is unlimited.
    pub concurrency_limit: Option<u32>,
    /// Remaining credits; `None` means the key does not use credits.
    pub credits: Option<i64>,
    /// How the credits refill; `None`: they do not.
    pub refill: Option<CreditRefill>,
    /// The last refill (creation, for a key created with a refill); `None`: never refilled.
    pub refilled_at: Option<DateTime<Utc>>,
    /// A spend that takes the credits to or below this sends a `key.credits_low` webhook event;
    /// `None`: no such event.
    pub credits_low_threshold: Option<i64>,
    /// Where the key may be used from; empty: the workspace's list applies (a non-empty list
    /// replaces it).
    pub ip_allowlist: Vec<ipnet::IpNet>,
    /// Free-form labels.
    pub metadata: BTreeMap<String, String>,
    /// Optimistic-concurrency version, bumped by every change to the record.
    pub version: u64,
    /// When a leak report named this key (it may still work: see the leak settings).
    pub leaked_at: Option<DateTime<Utc>>,
    /// Where the leak was found (the report's URL), when one was reported.
    pub leak_source: Option<String>,
    /// When the key was imported from another system (by its digest); `None` for keys keyward
    /// issued. An imported key's `prefix` and `last4` are what the import said, or empty.
    pub imported_at: Option<DateTime<Utc>>,
}

/// How often credits refill.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RefillInterval {
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC on a day of every month.
    Monthly,
}

/// Credits that refill: at the first use or read in each period (UTC) the balance is *set* to
/// `amount` (not increased by it), once per period whatever the number of nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditRefill {
    /// Daily or monthly.
    pub interval: RefillInterval,
    /// The balance after a refill, at least 1.
    pub amount: i64,
    /// Monthly only: the day of the month, 1 to 31 (`None`: 1). A month shorter than `day`
    /// refills on its last day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u32>,
}

impl CreditRefill {
    /// Checks the amount and the day; the error names the field (`amount`, `day`).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.amount < 1 {
            return Err(("amount", "must be at least 1"));
        }
        match (self.interval, self.day) {
            (RefillInterval::Daily, Some(_)) => Err(("day", "only a monthly refill takes a day")),
            (RefillInterval::Monthly, Some(d)) if !(1..=31).contains(&d) => Err(("day", "must be 1 to 31")),
            _ => Ok(()),
        }
    }

    /// When the period holding `now` began (UTC): today's midnight, or the midnight of this
    /// month's refill day if it has come, else last month's.
    pub fn period_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive();
        let start = match self.interval {
            RefillInterval::Daily => today,
            RefillInterval::Monthly => {
                let day = self.day.unwrap_or(1);
                let this_month = refill_day(today, day);
                if today >= this_month { this_month } else { refill_day(today - Months::new(1), day) }
            }
        };
        start.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    }

    /// Whether a key last refilled at `last` is due for a refill at `now`.
    pub fn is_due(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        last.is_none_or(|t| t < self.period_start(now))
    }
}

/// `day` of the month of `date`, or the month's last day when it is shorter.
fn refill_day(date: NaiveDate, day: u32) -> NaiveDate {
    let first = date.with_day(1).expect("every month has a first day");
    let last = (first + Months::new(1)).pred_opt().expect("a day before the next month").day();
    first.with_day(day.min(last)).expect("a day of the month")
}

/// The scope that lets a key manage keys; a workspace must always keep an active key holding it.
pub const KEY_ADMIN_SCOPE: &str = "keys:write";

impl ApiKey {
    /// The key as people may see it: its prefix, an ellipsis and its last four characters
    /// (`imported…` and the last four for an imported key of unknown prefix).
    pub fn masked(&self) -> String {
        match (self.imported_at, self.prefix.is_empty()) {
            (Some(_), true) => format!("imported…{}", self.last4),
            _ => format!("{}…{}", self.prefix, self.last4),
        }
    }

    /// The status as callers see it at `now`: a key whose rotation grace period has ended reads
    /// `Revoked`, whatever its stored status, since it no longer works.
    pub fn status_at(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.grace_ended(now) { KeyStatus::Revoked } else { self.status }
    }

    /// Whether a rotation's grace period has ended.
    pub fn grace_ended(&self, now: DateTime<Utc>) -> bool {
        self.grace_ends_at.is_some_and(|t| t <= now)
    }

    /// The record as callers see it at `now`: once a rotation's grace period has ended the key is
    /// revoked (at the end of the grace period).
    pub fn settled(mut self, now: DateTime<Utc>) -> Self {
        if self.status != KeyStatus::Revoked && self.grace_ended(now) {
            self.status = KeyStatus::Revoked;
            self.revoked_at = self.grace_ends_at;
        }
        self
    }

    /// Whether the key works at `now` and may manage keys (`keys:write`, or a wildcard covering
    /// it): the keys that keep a workspace manageable.
    pub fn can_manage_keys(&self, now: DateTime<Utc>) -> bool {
        self.deleted_at.is_none()
            && self.status_at(now) == KeyStatus::Active
            && self.expires_at.is_none_or(|t| t > now)
            && self.scopes.allows(&KEY_ADMIN_SCOPE.parse().expect("a valid scope"))
    }
}

/// What happened, in an audit event.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuditAction {
    /// A key was created.
    #[serde(rename = "key.created")]
    #[strum(serialize = "key.created")]
    KeyCreated,
    /// A key's settings changed.
    #[serde(rename = "key.updated")]
    #[strum(serialize = "key.updated")]
    KeyUpdated,
    /// A key was switched on.
    #[serde(rename = "key.activated")]
    #[strum(serialize = "key.activated")]
    KeyActivated,
    /// A key was switched off.
    #[serde(rename = "key.deactivated")]
    #[strum(serialize = "key.deactivated")]
    KeyDeactivated,
    /// A key was replaced by a new value.
    #[serde(rename = "key.rotated")]
    #[strum(serialize = "key.rotated")]
    KeyRotated,
    /// A key was revoked.
    #[serde(rename = "key.revoked")]
    #[strum(serialize = "key.revoked")]
    KeyRevoked,
    /// A revoked key was deleted.
    #[serde(rename = "key.deleted")]
    #[strum(serialize = "key.deleted")]
    KeyDeleted,
    /// A key issued elsewhere was imported by its digest.
    #[serde(rename = "key.imported")]
    #[strum(serialize = "key.imported")]
    KeyImported,
    /// A leak report named the key (revoked or flagged per the server's setting).
    #[serde(rename = "key.leaked")]
    #[strum(serialize = "key.leaked")]
    KeyLeaked,
    /// A workspace was created.
    #[serde(rename = "workspace.created")]
    #[strum(serialize = "workspace.created")]
    WorkspaceCreated,
    /// A workspace changed.
    #[serde(rename = "workspace.updated")]
    #[strum(serialize = "workspace.updated")]
    WorkspaceUpdated,
    /// A key's credits were refilled (by the system: `actorKeyId` is null).
    #[serde(rename = "key.credits_refilled")]
    #[strum(serialize = "key.credits_refilled")]
    KeyCreditsRefilled,
    /// A plan was created or changed.
    #[serde(rename = "plan.saved")]
    #[strum(serialize = "plan.saved")]
    PlanSaved,
    /// A webhook endpoint was registered.
    #[serde(rename = "webhook.created")]
    #[strum(serialize = "webhook.created")]
    WebhookCreated,
    /// A webhook endpoint's settings changed (enabled, disabled, url, events).
    #[serde(rename = "webhook.updated")]
    #[strum(serialize = "webhook.updated")]
    WebhookUpdated,
    /// A webhook endpoint was deleted.
    #[serde(rename = "webhook.deleted")]
    #[strum(serialize = "webhook.deleted")]
    WebhookDeleted,
    /// A webhook endpoint was disabled by the delivery worker after failing repeatedly (by the
    /// system: `actorKeyId` is null).
    #[serde(rename = "webhook.disabled")]
    #[strum(serialize = "webhook.disabled")]
    WebhookDisabled,
}

impl AuditAction {
    /// Every action.
    pub const ALL: &'static [AuditAction] = <Self as strum::VariantArray>::VARIANTS;

    /// The action's name, e.g. `key.revoked`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Id (time-ordered).
    pub id: AuditEventId,
    /// The workspace concerned; `None` for plan changes.
    pub workspace_id: Option<WorkspaceId>,
    /// What happened.
    pub action: AuditAction,
    /// The key acted on.
    pub key_id: Option<KeyId>,
    /// The key that acted; `None` for the system (CLI, first start).
    pub actor_key_id: Option<KeyId>,
    /// The caller's IP address.
    pub ip: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Requests made with one key on one (UTC) day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    /// The key.
    pub key_id: KeyId,
    /// The UTC day.
    pub day: NaiveDate,
    /// Successful verifications.
    pub count: u64,
}
