//! Webhooks: the events keyward sends, the endpoints they go to and the deliveries that carry
//! them.
//!
//! An event is written by the store in the transaction of the change it describes (an outbox):
//! with it, one [`WebhookDelivery`] per enabled endpoint of the workspace that subscribes to its
//! type. A delivery worker (in `keyward serve`) claims due deliveries with a lease, sends them
//! signed (see [`crate::webhook_signature`]), and records each attempt: delivered, retried later
//! with exponential backoff and jitter, or failed once its retry window has passed. A crash
//! between a change and its delivery therefore loses nothing: the delivery is still pending, and
//! a lease that ran out is claimed again. Receivers de-duplicate by the event id, which stays the
//! same across retries and resends.
//!
//! Deliveries of one endpoint about one key go out in the order of the changes: a delivery is
//! claimed only once every older pending delivery of the same endpoint and key has been
//! delivered or has failed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{ApiKey, AuditAction, AuditEvent, WorkspaceId};
use crate::store::StoreError;

/// The types of event keyward sends.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WebhookEventType {
    /// A key was created or imported.
    #[serde(rename = "key.created")]
    #[strum(serialize = "key.created")]
    KeyCreated,
    /// A key's settings, status (activated, deactivated) or credits (a refill) changed.
    #[serde(rename = "key.updated")]
    #[strum(serialize = "key.updated")]
    KeyUpdated,
    /// A key was rotated: the event names the old key, `data.key.rotatedTo` the new one.
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
    /// A leak report named the key.
    #[serde(rename = "key.leaked")]
    #[strum(serialize = "key.leaked")]
    KeyLeaked,
    /// A key expires within the server's notice period (`--webhook-expiry-notice`); sent once
    /// per expiry time.
    #[serde(rename = "key.expiring")]
    #[strum(serialize = "key.expiring")]
    KeyExpiring,
    /// A spend took the key's credits to or below its `creditsLowThreshold`.
    #[serde(rename = "key.credits_low")]
    #[strum(serialize = "key.credits_low")]
    KeyCreditsLow,
    /// An endpoint of the workspace was disabled after failing repeatedly.
    #[serde(rename = "webhook.disabled")]
    #[strum(serialize = "webhook.disabled")]
    WebhookDisabled,
    /// A checkpoint of the workspace's audit hash chain (`--audit-checkpoint-every`).
    #[serde(rename = "audit.checkpoint")]
    #[strum(serialize = "audit.checkpoint")]
    AuditCheckpoint,
}

impl WebhookEventType {
    /// Every type.
    pub const ALL: &'static [WebhookEventType] = <Self as strum::VariantArray>::VARIANTS;

    /// The type's name, e.g. `key.revoked`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The event an audited action sends, if any.
    pub fn for_action(action: AuditAction) -> Option<Self> {
        use AuditAction as A;
        Some(match action {
            A::KeyCreated | A::KeyImported => Self::KeyCreated,
            A::KeyUpdated | A::KeyActivated | A::KeyDeactivated | A::KeyCreditsRefilled => Self::KeyUpdated,
            A::KeyRotated => Self::KeyRotated,
            A::KeyRevoked => Self::KeyRevoked,
            A::KeyDeleted => Self::KeyDeleted,
            A::KeyLeaked => Self::KeyLeaked,
            // Sent by the worker with the endpoint's details (see [`endpoint_disabled_event`]).
            A::WebhookDisabled
            | A::WorkspaceCreated
            | A::WorkspaceUpdated
            | A::PlanSaved
            | A::WebhookCreated
            | A::WebhookUpdated
            | A::WebhookDeleted => return None,
        })
    }
}

impl fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which event types an endpoint receives: an empty list receives every type.
pub fn subscribes(events: &[WebhookEventType], ty: WebhookEventType) -> bool {
    events.is_empty() || events.contains(&ty)
}

/// A registered receiver of a workspace's events. Its signing secret is not part of it: it is
/// shown once, when the endpoint is created, and read back only by the delivery worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Id.
    pub id: crate::model::WebhookId,
    /// The workspace whose events it receives.
    pub workspace_id: WorkspaceId,
    /// Where events are POSTed.
    pub url: String,
    /// A note for people.
    pub description: String,
    /// The types it receives; empty: all.
    pub events: Vec<WebhookEventType>,
    /// Whether deliveries go out. Disabled by hand, or by the worker after too many
    /// consecutive failed attempts (then `disabled_reason` says so).
    pub enabled: bool,
    /// Why the worker disabled it.
    pub disabled_reason: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// The retry window passed without a 2xx answer.
    Failed,
}

impl DeliveryState {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed, when it did (no answer, a timeout, a non-2xx status).
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// An event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Id.
    pub id: crate::model::DeliveryId,
    /// The event's id: the `webhook-id` header, the same for every endpoint, retry and resend.
    pub event_id: crate::model::WebhookEventId,
    /// The event's type.
    pub event_type: WebhookEventType,
    /// The endpoint.
    pub endpoint_id: crate::model::WebhookId,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the event was written.
    pub created_at: DateTime<Utc>,
    /// When its retry window began: its creation, or its last resend.
    pub retry_from: DateTime<Utc>,
    /// When a 2xx answer came.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The event as sent: the JSON body.
    pub payload: String,
}

/// A delivery a worker holds a lease on, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: crate::model::DeliveryId,
    /// The `webhook-id` header.
    pub event_id: crate::model::WebhookEventId,
    /// The event's type.
    pub event_type: WebhookEventType,
    /// The body.
    pub payload: String,
    /// The endpoint.
    pub endpoint_id: crate::model::WebhookId,
    /// Its URL.
    pub url: String,
    /// Its signing secret (`whsec_...`).
    pub secret: secrecy::SecretString,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When its retry window began: its creation, or its last resend.
    pub retry_from: DateTime<Utc>,
    /// The lease: the worker's claim, checked when it records the attempt (a worker whose lease
    /// ran out and was claimed by another records nothing).
    pub lease: i64,
}

/// What a worker makes of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// 2xx.
    Delivered,
    /// Failed; try again at this time.
    RetryAt(DateTime<Utc>),
    /// Failed, and the retry window has passed.
    Failed,
}

/// How a failing endpoint is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// Consecutive failed attempts (across its deliveries) after which the endpoint is disabled.
    pub after_failures: u32,
}

/// What [`WebhookStore::record_attempt`] did to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointOutcome {
    /// Nothing beyond counting.
    Unchanged,
    /// The attempt was the one too many: the endpoint is now disabled, with an audit event and a
    /// `webhook.disabled` event to the workspace's other endpoints.
    Disabled,
    /// The lease had run out and another worker holds the delivery: nothing was recorded.
    LeaseLost,
}

/// Which deliveries to list: one endpoint's, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// The endpoint.
    pub endpoint_id: crate::model::WebhookId,
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only deliveries older than this one.
    pub before: Option<crate::model::DeliveryId>,
    /// Most rows.
    pub limit: u32,
}

/// Persistence of webhooks, implemented by the SQL stores beside [`KeyStore`](crate::KeyStore)
/// (see [`KeyStore::webhooks`](crate::KeyStore::webhooks)). Every method is one transaction.
#[async_trait]
pub trait WebhookStore: Send + Sync + fmt::Debug {
    /// Registers an endpoint with its secret (`whsec_...`) and audit event.
    async fn insert_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        secret: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Replaces an endpoint's settings (url, description, events, enabled; enabling resets the
    /// failure count and reason), with its audit event. `NotFound` if absent.
    async fn update_endpoint(&self, endpoint: &WebhookEndpoint, event: &AuditEvent)
    -> Result<(), StoreError>;
    /// Deletes an endpoint and its deliveries, with its audit event. `NotFound` if absent.
    async fn delete_endpoint(&self, endpoint: &WebhookEndpoint, event: &AuditEvent)
    -> Result<(), StoreError>;
    /// An endpoint by id.
    async fn get_endpoint(&self, id: crate::model::WebhookId) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// A workspace's endpoints, oldest first.
    async fn list_endpoints(&self, workspace: WorkspaceId) -> Result<Vec<WebhookEndpoint>, StoreError>;

    /// Writes an event not tied to another change (an expiry notice, a checkpoint), with one
    /// delivery per subscribed enabled endpoint of the workspace. With `once`, a notice of that
    /// name is written at most once ever (e.g. `key.expiring:<key>:<expiry>`): `false` when it
    /// was written before.
    async fn enqueue(&self, event: &NewWebhookEvent, once: Option<&str>) -> Result<bool, StoreError>;

    /// Keys (not deleted, not revoked) whose expiry falls in `(after, until]`, at most `limit`.
    async fn keys_expiring(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError>;

    /// Claims up to `limit` due deliveries of enabled endpoints for `lease`: none that another
    /// worker holds, and for each endpoint and key only the oldest pending one. On PostgreSQL
    /// rows are claimed with `FOR UPDATE SKIP LOCKED`, so concurrent workers never claim one
    /// delivery twice.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records an attempt of a claimed delivery and its result, and counts the endpoint's
    /// consecutive failures, disabling it per `policy`.
    async fn record_attempt(
        &self,
        delivery: &ClaimedDelivery,
        attempt: &DeliveryAttempt,
        result: &AttemptResult,
        policy: DisablePolicy,
    ) -> Result<EndpointOutcome, StoreError>;

    /// A page of an endpoint's deliveries with their attempts, newest first.
    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Vec<WebhookDelivery>, StoreError>;
    /// One delivery with its attempts.
    async fn get_delivery(&self, id: crate::model::DeliveryId)
    -> Result<Option<WebhookDelivery>, StoreError>;
    /// Makes a delivery pending and due at `now`, with a new retry window from `now`.
    /// `NotFound` if absent.
    async fn resend_delivery(
        &self,
        id: crate::model::DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// An event to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookEvent {
    /// Its id.
    pub id: crate::model::WebhookEventId,
    /// The workspace whose endpoints receive it.
    pub workspace_id: WorkspaceId,
    /// Its type.
    pub event_type: WebhookEventType,
    /// What deliveries are ordered by: the key's id for key events, else the workspace's.
    pub ordering_key: String,
    /// The body.
    pub payload: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// How long a delivery is retried when the server does not say otherwise: 24 hours.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

/// The body of an event: `{"type", "timestamp", "data"}`, the Standard Webhooks envelope.
pub fn envelope(ty: WebhookEventType, at: DateTime<Utc>, data: serde_json::Value) -> String {
    json!({
        "type": ty.as_str(),
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// What an event says of a key: never its plaintext nor its digest.
pub fn key_data(key: &ApiKey, now: DateTime<Utc>) -> serde_json::Value {
    let ts = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    json!({
        "id": key.id,
        "workspaceId": key.workspace_id,
        "name": key.name,
        "maskedKey": key.masked(),
        "status": key.status_at(now).as_str(),
        "scopes": key.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "expiresAt": ts(key.expires_at),
        "credits": key.credits,
        "creditsLowThreshold": key.credits_low_threshold,
        "rotatedFrom": key.rotated_from,
        "rotatedTo": key.rotated_to,
        "leakedAt": ts(key.leaked_at),
        "metadata": key.metadata,
    })
}

/// The event an audited change sends, given the key as the change left it: `None` when the
/// action sends none.
pub fn event_for_audit(ev: &AuditEvent, key: Option<&ApiKey>) -> Option<NewWebhookEvent> {
    let ty = WebhookEventType::for_action(ev.action)?;
    let workspace_id = ev.workspace_id?;
    let mut data = json!({
        "action": ev.action.as_str(),
        "workspaceId": workspace_id,
        "auditEventId": ev.id,
        "actorKeyId": ev.actor_key_id,
        "requestId": ev.request_id,
    });
    if let Some(k) = key {
        data["key"] = key_data(k, ev.at);
    }
    let ordering_key = ev.key_id.map_or_else(|| workspace_id.to_string(), |k| k.to_string());
    Some(new_event(workspace_id, ty, ordering_key, ev.at, data))
}

fn new_event(
    workspace_id: WorkspaceId,
    ty: WebhookEventType,
    ordering_key: String,
    at: DateTime<Utc>,
    data: serde_json::Value,
) -> NewWebhookEvent {
    NewWebhookEvent {
        id: crate::model::WebhookEventId::new(),
        workspace_id,
        event_type: ty,
        ordering_key,
        payload: envelope(ty, at, data),
        at,
    }
}

/// `key.credits_low`: a spend left `key` (as it now stands) with `left` credits, at or below
/// its threshold.
pub fn credits_low_event(key: &ApiKey, left: i64, at: DateTime<Utc>) -> NewWebhookEvent {
    let data = json!({
        "workspaceId": key.workspace_id,
        "credits": left,
        "threshold": key.credits_low_threshold,
        "key": key_data(key, at),
    });
    new_event(key.workspace_id, WebhookEventType::KeyCreditsLow, key.id.to_string(), at, data)
}

/// `key.expiring`: `key` expires within the notice period.
pub fn expiring_event(key: &ApiKey, at: DateTime<Utc>) -> NewWebhookEvent {
    let data = json!({ "workspaceId": key.workspace_id, "key": key_data(key, at) });
    new_event(key.workspace_id, WebhookEventType::KeyExpiring, key.id.to_string(), at, data)
}

/// The name under which a key's expiry notice is sent once.
pub fn expiring_notice(key: &ApiKey) -> Option<String> {
    key.expires_at.map(|t| format!("key.expiring:{}:{}", key.id, t.timestamp_millis()))
}

/// `webhook.disabled`: the worker disabled `endpoint` after `failures` consecutive failed
/// attempts.
pub fn endpoint_disabled_event(
    endpoint: &WebhookEndpoint,
    failures: u32,
    at: DateTime<Utc>,
) -> NewWebhookEvent {
    let data = json!({
        "workspaceId": endpoint.workspace_id,
        "webhookId": endpoint.id,
        "url": endpoint.url,
        "consecutiveFailures": failures,
    });
    new_event(
        endpoint.workspace_id,
        WebhookEventType::WebhookDisabled,
        endpoint.workspace_id.to_string(),
        at,
        data,
    )
}

/// `audit.checkpoint`: the head of the workspace's audit hash chain, to keep outside the
/// database (see [`crate::audit_chain::KnownHead`]).
pub fn checkpoint_event(
    workspace_id: WorkspaceId,
    seq: u64,
    hash: &str,
    at: DateTime<Utc>,
) -> NewWebhookEvent {
    let data = json!({ "workspaceId": workspace_id, "seq": seq, "hash": hash });
    new_event(workspace_id, WebhookEventType::AuditCheckpoint, workspace_id.to_string(), at, data)
}

/// Exponential backoff with jitter: the wait before the attempt after attempt number
/// `attempts`, `base` doubled for each attempt after the first and capped at `cap`, then scaled
/// by a random factor in [0.5, 1.0] so that receivers coming back are not hit by every sender at
/// once.
pub fn backoff(attempts: u32, base: Duration, cap: Duration) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(cap);
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() { u16::from_le_bytes(b) } else { u16::MAX };
    full.mul_f64(0.5 + 0.5 * f64::from(r) / f64::from(u16::MAX))
}

/// Parses a list of event type names.
pub fn parse_event_types<S: AsRef<str>>(names: &[S]) -> Result<Vec<WebhookEventType>, String> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let n = n.as_ref();
        let ty = WebhookEventType::from_str(n).map_err(|_| format!("unknown event type `{n}`"))?;
        if !out.contains(&ty) {
            out.push(ty);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_its_jitter_and_cap() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(3600);
        for attempts in 1..=20u32 {
            let full = base.saturating_mul(1 << (attempts - 1).min(30)).min(cap);
            let d = backoff(attempts, base, cap);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempts}: {d:?} outside [{:?}, {full:?}]",
                full / 2
            );
        }
        assert!(backoff(20, base, cap) <= cap);
    }

    #[test]
    fn every_key_action_sends_an_event_and_management_actions_do_not() {
        assert_eq!(WebhookEventType::for_action(AuditAction::KeyRevoked), Some(WebhookEventType::KeyRevoked));
        assert_eq!(
            WebhookEventType::for_action(AuditAction::KeyDeactivated),
            Some(WebhookEventType::KeyUpdated)
        );
        assert_eq!(
            WebhookEventType::for_action(AuditAction::KeyImported),
            Some(WebhookEventType::KeyCreated)
        );
        assert_eq!(WebhookEventType::for_action(AuditAction::PlanSaved), None);
        for a in AuditAction::ALL {
            let is_key = a.as_str().starts_with("key.");
            assert_eq!(WebhookEventType::for_action(*a).is_some(), is_key, "{a:?}");
        }
    }

    #[test]
    fn event_types_parse_by_name_and_an_empty_list_subscribes_to_all() {
        assert_eq!(
            parse_event_types(&["key.revoked", "key.created", "key.revoked"]).unwrap(),
            vec![WebhookEventType::KeyCreated, WebhookEventType::KeyRevoked]
        );
        assert!(parse_event_types(&["key.exploded"]).unwrap_err().contains("key.exploded"));
        assert!(subscribes(&[], WebhookEventType::KeyLeaked));
        assert!(!subscribes(&[WebhookEventType::KeyCreated], WebhookEventType::KeyLeaked));
    }
}
