//! `/v1/audit-events`.

use axum::Json;
use axum::extract::State;
use keyward_core::{AuditFilter, KeyId};

use crate::AppState;
use crate::dto::audit::{AuditEventView, AuditPage, AuditQuery};
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
