//! `/v1/audit-events`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use keyward_core::{AuditAction, AuditFilter};

use super::parse_limit;
use crate::AppState;
use crate::dto::{AuditEventView, AuditPage, AuditQueryParams};
use crate::error::ApiError;
use crate::extract::{ApiQuery, Caller, key_id};

fn time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::validation(field, "must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"))
    })
    .transpose()
}

/// The workspace's audit events, newest first: who did what, from where, with which request.
/// Kept 90 days by default. Needs `audit:read`.
#[utoipa::path(
    get,
    path = "/v1/audit-events",
    tag = "audit",
    params(AuditQueryParams),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "VALIDATION_FAILED: a bad filter, `cursor` or `limit`, or an unknown or repeated query parameter"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `audit:read`"),
    )
)]
pub(crate) async fn list_audit_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQueryParams>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require("audit:read")?;
    let filter = AuditFilter {
        key_id: q
            .key_id
            .as_deref()
            .map(key_id)
            .transpose()
            .map_err(|_| ApiError::validation("keyId", "must be a UUID"))?,
        action: q
            .action
            .as_deref()
            .map(|a| {
                a.parse::<AuditAction>().map_err(|()| {
                    let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                    ApiError::validation("action", format!("must be one of {}", known.join(", ")))
                })
            })
            .transpose()?,
        since: time("since", q.since.as_deref())?,
        until: time("until", q.until.as_deref())?,
        cursor: q.cursor,
        limit: parse_limit(q.limit.as_deref())?,
    };
    let page = state.service.audit_events(Some(caller.workspace), filter).await?;
    Ok(Json(AuditPage {
        data: page.items.iter().map(AuditEventView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
