//! Bodies and query of `/v1/audit-events`.

use chrono::{DateTime, Utc};
use keyward_core::{AuditAction, AuditEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Cursor;

/// An audit event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditEventView {
    /// The event's id.
    pub(crate) id: Uuid,
    /// The workspace concerned; `null` for plan changes.
    pub(crate) workspace_id: Option<Uuid>,
    /// What happened.
    pub(crate) action: AuditAction,
    /// The key acted on.
    pub(crate) key_id: Option<Uuid>,
    /// The key that acted; `null` for the system (first start, internal jobs).
    pub(crate) actor_key_id: Option<Uuid>,
    /// The caller's IP address.
    pub(crate) ip: Option<String>,
    /// The caller's user agent.
    pub(crate) user_agent: Option<String>,
    /// The request's id (`X-Request-Id`).
    pub(crate) request_id: Option<String>,
    /// When it happened.
    pub(crate) at: DateTime<Utc>,
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
pub(crate) struct AuditQuery {
    /// Only events about this key.
    pub(crate) key_id: Option<Uuid>,
    /// Only this action, e.g. `key.revoked`.
    pub(crate) action: Option<AuditAction>,
    /// From this time on (RFC 3339).
    pub(crate) since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    pub(crate) until: Option<DateTime<Utc>>,
    /// The previous page's `nextCursor`.
    #[param(value_type = Option<Cursor>, inline)]
    pub(crate) cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(format = "uint32", minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

/// A page of audit events, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditPage {
    /// The events.
    pub(crate) data: Vec<AuditEventView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(value_type = Option<Cursor>, inline)]
    pub(crate) next_cursor: Option<String>,
}

/// What verifying a workspace's audit hash chain found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditChainView {
    /// The workspace.
    pub(crate) workspace_id: Uuid,
    /// Whether the chain holds from its anchor to its head.
    pub(crate) valid: bool,
    /// Events checked.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) events: u64,
    /// The position of the last event purged by the retention (0: none); the chain starts
    /// after it.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) anchor_seq: u64,
    /// The position of the newest event.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub(crate) head_seq: u64,
    /// The newest event's hash: keep it where the database's administrators cannot write, and
    /// compare it later (`keyward audit verify --expect`).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub(crate) head_hash: String,
    /// The first broken link; `null` when the chain holds.
    pub(crate) broken: Option<BrokenLinkView>,
}

/// Where an audit chain breaks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BrokenLinkView {
    /// The position it breaks at.
    #[schema(format = "uint64", minimum = 1, maximum = 18446744073709551615_u64)]
    pub(crate) seq: u64,
    /// The event found there; `null` when it is missing.
    pub(crate) event_id: Option<Uuid>,
    /// What is wrong.
    pub(crate) reason: String,
}
