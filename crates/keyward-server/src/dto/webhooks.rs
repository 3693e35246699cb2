//! Bodies and queries of `/v1/webhooks`.

use chrono::{DateTime, Utc};
use keyward_core::webhook::{
    DeliveryAttempt, DeliveryState, WebhookDelivery, WebhookEndpoint, WebhookEventType,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Cursor;

/// A webhook endpoint: where a workspace's events are POSTed, signed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookView {
    /// The endpoint's id.
    pub(crate) id: Uuid,
    /// The workspace whose events it receives.
    pub(crate) workspace_id: Uuid,
    /// Where events are POSTed.
    #[schema(example = "https://hooks.example.com/keyward")]
    pub(crate) url: String,
    /// A note for people.
    pub(crate) description: String,
    /// The event types it receives; empty: every type.
    pub(crate) events: Vec<WebhookEventType>,
    /// Whether deliveries go out. The server disables an endpoint whose attempts fail too often
    /// in a row (`disabledReason` says so); enable it again with `PATCH`.
    pub(crate) enabled: bool,
    /// Why the server disabled it; `null` otherwise.
    pub(crate) disabled_reason: Option<String>,
    /// Failed attempts since the last successful one.
    #[schema(format = "uint32", minimum = 0, maximum = 4294967295_u32)]
    pub(crate) consecutive_failures: u32,
    /// When it was registered.
    pub(crate) created_at: DateTime<Utc>,
    /// When it last changed.
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<&WebhookEndpoint> for WebhookView {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id.0,
            workspace_id: e.workspace_id.0,
            url: e.url.clone(),
            description: e.description.clone(),
            events: e.events.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            consecutive_failures: e.consecutive_failures,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateWebhookRequest {
    /// Where events are POSTed: an `https://` URL of at most 2048 characters: a host name or IPv4
    /// address (ASCII letters, digits, `-` and `.`; IDNs in their `xn--` form, IPv6 endpoints by
    /// name), an optional port, then a path, query or fragment without spaces or control
    /// characters.
    /// A server started with `--webhook-allow-http` also takes `http://`.
    #[schema(
        min_length = 9,
        max_length = 2048,
        pattern = r"^https://[A-Za-z0-9.\-]+(:[0-9]{1,5})?([/?#][^\x00-\x20\x7F-\x9F\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*)?$",
        example = "https://hooks.example.com/keyward"
    )]
    pub(crate) url: String,
    /// A note for people, at most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub(crate) description: String,
    /// The event types to receive; absent or empty: every type.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub(crate) events: Vec<WebhookEventType>,
    /// Whether deliveries go out at once. Default: true.
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
}

/// Body of `PATCH /v1/webhooks/{id}`: absent fields stay as they are.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateWebhookRequest {
    /// New URL, rules as on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 9,
        max_length = 2048,
        pattern = r"^https://[A-Za-z0-9.\-]+(:[0-9]{1,5})?([/?#][^\x00-\x20\x7F-\x9F\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*)?$"
    )]
    pub(crate) url: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub(crate) description: Option<String>,
    /// New event types; empty: every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 16)]
    pub(crate) events: Option<Vec<WebhookEventType>>,
    /// Switch deliveries on or off. Switching on resets the failure count; deliveries that
    /// waited while the endpoint was off go out, failed ones stay failed (resend them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
}

/// A registered endpoint with its signing secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedWebhook {
    /// The endpoint.
    pub(crate) webhook: WebhookView,
    /// The signing secret, `whsec_...`: after the prefix, the base64 of the HMAC-SHA256 key that
    /// signs the `webhook-signature` header. Shown only now.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub(crate) secret: String,
}

/// A workspace's endpoints, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookList {
    /// The endpoints (at most 20).
    pub(crate) data: Vec<WebhookView>,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryAttemptView {
    /// 1 for the first.
    #[schema(format = "uint32", minimum = 1, maximum = 4294967295_u32)]
    pub(crate) number: u32,
    /// When it was sent.
    pub(crate) at: DateTime<Utc>,
    /// The endpoint's HTTP status; `null` when it did not answer.
    #[schema(value_type = Option<u32>, format = "uint32", minimum = 100, maximum = 999)]
    pub(crate) status: Option<u16>,
    /// Why it failed; `null` when it succeeded.
    pub(crate) error: Option<String>,
    /// How long it took, in milliseconds.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) duration_ms: u64,
}

impl From<&DeliveryAttempt> for DeliveryAttemptView {
    fn from(a: &DeliveryAttempt) -> Self {
        Self {
            number: a.number,
            at: a.at,
            status: a.status,
            error: a.error.clone(),
            duration_ms: a.duration_ms,
        }
    }
}

/// An event's delivery to one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryView {
    /// The delivery's id.
    pub(crate) id: Uuid,
    /// The event's id: the `webhook-id` header, the same on every attempt and resend.
    pub(crate) event_id: Uuid,
    /// The event's type.
    pub(crate) event_type: WebhookEventType,
    /// `pending` (waiting for its next attempt), `delivered` (a 2xx answer) or `failed` (its
    /// retry window passed).
    pub(crate) state: DeliveryState,
    /// Every attempt, oldest first.
    pub(crate) attempts: Vec<DeliveryAttemptView>,
    /// When the next attempt is due; `null` unless pending.
    pub(crate) next_attempt_at: Option<DateTime<Utc>>,
    /// When the event was written.
    pub(crate) created_at: DateTime<Utc>,
    /// When its retry window began: its creation, or its last resend.
    pub(crate) retry_from: DateTime<Utc>,
    /// When a 2xx answer came.
    pub(crate) delivered_at: Option<DateTime<Utc>>,
    /// The body as sent: `{"type", "timestamp", "data"}`.
    pub(crate) payload: serde_json::Value,
}

impl From<&WebhookDelivery> for DeliveryView {
    fn from(d: &WebhookDelivery) -> Self {
        Self {
            id: d.id.0,
            event_id: d.event_id.0,
            event_type: d.event_type,
            state: d.state,
            attempts: d.attempts.iter().map(DeliveryAttemptView::from).collect(),
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            retry_from: d.retry_from,
            delivered_at: d.delivered_at,
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Query of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only deliveries in this state.
    pub(crate) state: Option<DeliveryState>,
    /// The previous page's `nextCursor`.
    #[param(value_type = Option<Cursor>, inline)]
    pub(crate) cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(format = "uint32", minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryPage {
    /// The deliveries.
    pub(crate) data: Vec<DeliveryView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(value_type = Option<Cursor>, inline)]
    pub(crate) next_cursor: Option<String>,
}
