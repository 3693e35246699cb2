//! `/v1/webhooks` and `/v1/webhook-deliveries`: endpoints receiving a workspace's events, and
//! their deliveries.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyward_core::{DeliveryId, NewWebhook, WebhookId, WebhookPatch};
use secrecy::ExposeSecret as _;

use crate::AppState;
use crate::dto::webhooks::{
    CreateWebhookRequest, CreatedWebhook, DeliveryPage, DeliveryQuery, DeliveryView, UpdateWebhookRequest,
    WebhookList, WebhookView,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, parse_id};

/// Deliveries show the workspace's keys (names, scopes, status): whoever points them somewhere
/// must be allowed to read keys too.
fn require_manage(caller: &Caller) -> Result<(), ApiError> {
    caller.require("webhooks:write")?;
    caller.require("keys:read")?;
    Ok(())
}

fn webhook_id(raw: &str) -> Result<WebhookId, ApiError> {
    parse_id("id", raw)
}

/// At most 16 event types, kept sorted and once each.
fn event_list(
    mut events: Vec<keyward_core::WebhookEventType>,
) -> Result<Vec<keyward_core::WebhookEventType>, ApiError> {
    if events.len() > 16 {
        return Err(ApiError::validation("events", "at most 16 event types"));
    }
    events.sort();
    events.dedup();
    Ok(events)
}

/// Registers an endpoint for the workspace's events. Each event is POSTed as JSON
/// (`{"type", "timestamp", "data"}`) and signed the Standard Webhooks way: `webhook-id` (the
/// event's id, the same on every retry), `webhook-timestamp` and `webhook-signature` (`v1,` and
/// the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret). Failed deliveries are
/// retried with exponential backoff for 24 hours by default. The response holds the signing
/// secret, shown this once. At most 20 endpoints per workspace. Needs `webhooks:write` and, since
/// deliveries show the workspace's keys, `keys:read`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; `secret` is shown only now", body = CreatedWebhook),
        (status = 400, description = "VALIDATION_FAILED: `url` is not an `https://` URL with a host (or `http://` where the server allows it), is longer than 2048 characters or holds spaces or control characters; `description` is longer than 500 characters; an unknown event type, or more than 16"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `webhooks:write`, or `keys:read` (deliveries show the workspace's keys); WEBHOOK_LIMIT_REACHED: the workspace has 20 endpoints"),
        (status = 404, description = "NOT_FOUND: the workspace named by `X-Workspace-Id` does not exist"),
    )
)]
pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    require_manage(&caller)?;
    let events = event_list(body.events)?;
    let new = NewWebhook {
        workspace_id: caller.workspace,
        url: body.url,
        description: body.description,
        events,
        enabled: body.enabled.unwrap_or(true),
    };
    let created = state.service.create_webhook(new, &caller.actor).await?;
    let view = CreatedWebhook {
        webhook: WebhookView::from(&created.endpoint),
        secret: created.secret.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// The workspace's endpoints, oldest first. Needs `webhooks:read`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The endpoints", body = WebhookList),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `webhooks:read`"),
    )
)]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, ApiError> {
    caller.require("webhooks:read")?;
    let all = state.service.webhooks(caller.workspace).await?;
    Ok(Json(WebhookList { data: all.iter().map(WebhookView::from).collect() }))
}

/// One endpoint. Needs `webhooks:read`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `webhooks:read`"),
        (status = 404, description = "NOT_FOUND: no such endpoint in this workspace"),
    )
)]
pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require("webhooks:read")?;
    let endpoint = state.service.webhook(caller.workspace, webhook_id(&id)?).await?;
    Ok(Json(WebhookView::from(&endpoint)))
}

/// Changes an endpoint: its URL, description, event types, or whether it is enabled (enabling
/// one the server disabled resets its failure count). Needs `webhooks:write` and `keys:read`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The endpoint as changed", body = WebhookView),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID, or a field breaks its rule (as on create)"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `webhooks:write`, or `keys:read`"),
        (status = 404, description = "NOT_FOUND: no such endpoint in this workspace"),
    )
)]
pub(crate) async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    require_manage(&caller)?;
    let id = webhook_id(&id)?;
    let events = body.events.map(event_list).transpose()?;
    let patch = WebhookPatch { url: body.url, description: body.description, events, enabled: body.enabled };
    let endpoint = state.service.update_webhook(caller.workspace, id, patch, &caller.actor).await?;
    Ok(Json(WebhookView::from(&endpoint)))
}

/// Deletes an endpoint and its deliveries. Needs `webhooks:write`.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `webhooks:write`"),
        (status = 404, description = "NOT_FOUND: no such endpoint in this workspace"),
    )
)]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    caller.require("webhooks:write")?;
    state.service.delete_webhook(caller.workspace, webhook_id(&id)?, &caller.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's deliveries with every attempt, newest first. Needs `webhooks:read`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Endpoint id"), DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID, a bad `state`, `cursor` or `limit`, or an unknown or repeated query parameter"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `webhooks:read`"),
        (status = 404, description = "NOT_FOUND: no such endpoint in this workspace"),
    )
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    caller.require("webhooks:read")?;
    let id = webhook_id(&id)?;
    let page =
        state.service.webhook_deliveries(caller.workspace, id, q.state, q.cursor.as_deref(), q.limit).await?;
    Ok(Json(DeliveryPage {
        data: page.items.iter().map(DeliveryView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Sends a delivery again, whatever its state: it becomes pending, due at once, with a new retry
/// window. The receiver sees the same `webhook-id` (and may drop it as a duplicate). Needs
/// `webhooks:write`.
#[utoipa::path(
    post,
    path = "/v1/webhook-deliveries/{id}/resend",
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "Due again", body = DeliveryView),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `webhooks:write`"),
        (status = 404, description = "NOT_FOUND: no such delivery to an endpoint of this workspace"),
    )
)]
pub(crate) async fn resend_delivery(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    caller.require("webhooks:write")?;
    let id: DeliveryId = parse_id("id", &id)?;
    let delivery = state.service.resend_delivery(caller.workspace, id).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(&delivery))))
}
