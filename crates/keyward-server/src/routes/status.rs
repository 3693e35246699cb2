//! `GET /v1/status` and `POST /v1/verify`.

use axum::Json;
use axum::extract::State;
use keyward_core::{ErrorCode, Requirements};

use super::parse_scopes;
use crate::AppState;
use crate::dto::status::{RateLimitState, StatusResponse, VerifyFailure, VerifyRequest, VerifyResponse};
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};

/// Describes the calling key: whether it is valid, its workspace, scopes and limits. Needs no
/// scope.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "status",
    responses(
        (status = 200, description = "The key is valid", body = StatusResponse),
        (status = 404, description = "NOT_FOUND: the workspace named by `X-Workspace-Id` does not exist"),
    )
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<StatusResponse>, ApiError> {
    let key = &caller.key;
    // The workspace as the verifier cached it, so that keys the layer serves during a store
    // outage get their status too; only an internal key naming another workspace reads it.
    let ws = if caller.workspace == key.workspace_id() {
        key.workspace().clone()
    } else {
        state.service.get_workspace(caller.workspace).await?
    };
    Ok(Json(StatusResponse {
        valid: true,
        key_id: key.key_id().0,
        key_name: key.name().to_owned(),
        workspace_id: ws.id.0,
        workspace_name: ws.name.clone(),
        environment: ws.environment,
        plan: ws.plan_id.0.clone(),
        scopes: key.scopes().iter().map(ToString::to_string).collect(),
        credits: live_credits(&state, key).await,
        refill: key.key().refill.map(Into::into),
        rate_limit: RateLimitState::from(key.rate_limit()),
    }))
}

/// The key's credits as stored now (the cached record holds those of when it was loaded); during
/// a rotation's grace period, its successor's, which it spends. Falls back to the last known
/// balance when the store cannot be read.
async fn live_credits(state: &AppState, key: &keyward_core::VerifiedKey) -> Option<i64> {
    let cached = key.credits_remaining().or(key.key().credits);
    if cached.is_none() && key.key().refill.is_none() {
        return None;
    }
    let account = key.key().rotated_to.unwrap_or(key.key_id());
    let store = state.service.store();
    let now = state.service.clock().now();
    match store.get_key(account).await {
        Ok(Some(stored)) => match store.refill_if_due(&stored, now).await {
            Ok(Some(refilled)) => Some(refilled),
            Ok(None) => stored.credits,
            Err(e) => {
                tracing::warn!(error = %e, "key store unavailable; reporting stored credits");
                stored.credits
            }
        },
        Ok(None) => cached,
        Err(e) => {
            tracing::warn!(error = %e, "key store unavailable; reporting cached credits");
            cached
        }
    }
}

/// Checks a key presented to another service: whether it may make a request with the given
/// scopes, resource and cost. Spends the key's rate limit and credits like a protected request.
/// Needs `keys:verify`. Keys of other workspaces are reported as invalid.
#[utoipa::path(
    post,
    path = "/v1/verify",
    tag = "verify",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict; `valid` false carries the catalog code", body = VerifyResponse),
        (status = 400, description = "VALIDATION_FAILED: the body is malformed, or a scope breaks the scope rule"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:verify`"),
    )
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    caller.require("keys:verify")?;
    let scopes = parse_scopes("scopes", &body.scopes)?;
    let req = Requirements {
        scopes: scopes.iter().cloned().collect(),
        resource: body.resource,
        cost: body.cost.unwrap_or(0),
        client_ip: body.client_ip,
    };
    let outcome = match state.verifier.verify(body.key.trim(), &req).await {
        Ok(v) if v.workspace_id() == caller.workspace => Ok(v),
        // Another workspace's key is reported exactly like an unknown one.
        Ok(_) => Err(keyward_core::Error::new(ErrorCode::InvalidApiKey, "invalid API key")),
        Err(e) if e.code() == ErrorCode::StoreUnavailable || e.code() == ErrorCode::Internal => {
            return Err(ApiError(e));
        }
        Err(e) => Err(e),
    };
    Ok(Json(match outcome {
        Ok(v) => VerifyResponse {
            valid: true,
            error: None,
            key_id: Some(v.key_id().0),
            workspace_id: Some(v.workspace_id().0),
            scopes: Some(v.scopes().iter().map(ToString::to_string).collect()),
            credits: v.credits_remaining().or(v.key().credits),
            rate_limit: Some(RateLimitState::from(v.rate_limit())),
        },
        Err(e) => VerifyResponse {
            valid: false,
            error: Some(VerifyFailure {
                code: e.code(),
                message: e.message().to_owned(),
                status: e.code().http_status(),
                retry_after: e.retry_after().map(|d| d.as_secs()),
                details: e.details().clone(),
            }),
            key_id: None,
            workspace_id: None,
            scopes: None,
            credits: None,
            rate_limit: None,
        },
    }))
}
