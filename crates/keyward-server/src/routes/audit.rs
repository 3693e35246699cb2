//! `/v1/audit-events`.

use axum::Json;
use axum::extract::State;
use keyward_core::{AuditFilter, KeyId};

use crate::AppState;
use crate::dto::audit::{AuditChainView, AuditEventView, AuditPage, AuditQuery, BrokenLinkView};
use crate::error::ApiError;
use crate::extract::{ApiQuery, Caller};

/// The workspace's audit events, newest first: who did what, from where, with which request.
/// Kept 90 days by default. Needs `audit:read`.
#[utoipa::path(
    get,
    path = "/v1/audit-events",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "VALIDATION_FAILED: a bad filter, `cursor` or `limit`, or an unknown or repeated query parameter"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `audit:read`"),
    )
)]
pub(crate) async fn list_audit_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require("audit:read")?;
    let filter = AuditFilter {
        key_id: q.key_id.map(KeyId),
        action: q.action,
        since: q.since,
        until: q.until,
        cursor: q.cursor,
        limit: q.limit,
    };
    let page = state.service.audit_events(Some(caller.workspace), filter).await?;
    Ok(Json(AuditPage {
        data: page.items.iter().map(AuditEventView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Verifies the workspace's audit hash chain: every event carries a SHA-256 linking it to the
/// one before, written with the change it records, so an event edited, deleted or reordered in
/// the database breaks the chain there. Reports the first broken link. Needs `audit:read`.
#[utoipa::path(
    get,
    path = "/v1/audit-events/verify",
    tag = "audit",
    responses(
        (status = 200, description = "The chain's state; `valid` false names the first broken link", body = AuditChainView),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `audit:read`"),
    )
)]
pub(crate) async fn verify_audit_chain(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AuditChainView>, ApiError> {
    caller.require("audit:read")?;
    let chains = state
        .service
        .store()
        .verify_audit(Some(caller.workspace), &[])
        .await
        .map_err(|e| ApiError(e.into()))?;
    let view = match chains.into_iter().next() {
        Some(c) => AuditChainView {
            workspace_id: caller.workspace.0,
            valid: c.broken.is_none(),
            events: c.events,
            anchor_seq: c.anchor_seq,
            head_seq: c.head_seq,
            head_hash: c.head_hash,
            broken: c.broken.map(|b| BrokenLinkView {
                seq: b.seq,
                event_id: b.event_id.map(|e| e.0),
                reason: b.reason,
            }),
        },
        // No event written since the chain began.
        None => AuditChainView {
            workspace_id: caller.workspace.0,
            valid: true,
            events: 0,
            anchor_seq: 0,
            head_seq: 0,
            head_hash: keyward_core::audit_chain::to_hex(&keyward_core::audit_chain::GENESIS),
            broken: None,
        },
    };
    Ok(Json(view))
}
