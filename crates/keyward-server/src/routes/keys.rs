//! `/v1/keys`: the key lifecycle.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Duration;
use keyward_core::{ImportedKey, KeyDigest, KeyFilter, KeyPatch, MAX_IMPORT_KEYS, NewKey, RateLimitPolicy};

use super::{parse_ip_allowlist, parse_scopes};
use crate::AppState;
use crate::dto::keys::{
    ApiKeyDetail, ApiKeyView, CreateKeyRequest, CreatedApiKey, ImportKeyRow, ImportKeysRequest, ImportedKeys,
    KeyPage, ListKeysQuery, RotateKeyRequest, UpdateKeyRequest, UsageDayView, UsageQuery, UsageReport,
};
use crate::error::ApiError;
use crate::extract::{ApiBytes, ApiJson, ApiPath, ApiQuery, Caller, key_id};

/// Days of usage shown with a key.
const RECENT_USAGE_DAYS: u32 = 30;

fn created(c: keyward_core::CreatedKey) -> CreatedApiKey {
    CreatedApiKey {
        id: c.key.id.0,
        key: ApiKeyView::from(&c.key),
        secret: c.secret.expose_secret().to_owned(),
    }
}

/// Creates a key. The response holds the full key, shown this once. Needs `keys:write`; the new
/// key's scopes and resources must lie within the caller's.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedApiKey),
        (status = 400, description = "VALIDATION_FAILED: a field is missing or breaks its rule (see the schema), or `expiresAt` is not in the future"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:write`, or the new key's scopes are wider than the caller's (`details.missing`); RESOURCE_NOT_ALLOWED: its resources are wider than the caller's; KEY_LIMIT_REACHED: the plan's `maxKeys` is reached"),
        (status = 404, description = "NOT_FOUND: the workspace named by `X-Workspace-Id` does not exist"),
    )
)]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    caller.require("keys:write")?;
    let new = NewKey {
        workspace_id: caller.workspace,
        name: body.name,
        scopes: parse_scopes("scopes", &body.scopes)?,
        resources: body.resources,
        active: body.active.unwrap_or(true),
        expires_at: body.expires_at,
        rate_limit: body.rate_limit.map(RateLimitPolicy::new),
        concurrency_limit: body.concurrency_limit,
        credits: body.credits,
        refill: body.refill.map(Into::into),
        credits_low_threshold: body.credits_low_threshold,
        ip_allowlist: parse_ip_allowlist(&body.ip_allowlist)?,
        metadata: body.metadata,
    };
    let c = state.service.create_key(new, &caller.actor).await?;
    Ok((StatusCode::CREATED, Json(created(c))))
}

/// Largest body `POST /v1/keys/import` accepts: 1 MiB, room for 1000 keys with their settings.
pub(crate) const MAX_IMPORT_BODY_BYTES: usize = 1024 * 1024;

/// Imports keys issued by another system, so they keep working: each by the SHA-256 digest of
/// its value (never the value itself), with the settings of `POST /v1/keys`. 1 to 1000 keys per
/// call, all or none (one refused row stores nothing); the body may be up to 1 MiB. Imported keys
/// are verified by hash like keyward's own; a value that is not keyward's format is accepted when
/// it matches the server's `--legacy-key-prefix` (its shape is checked, not a checksum). Needs
/// `keys:write`; every key's scopes and resources must lie within the caller's.
#[utoipa::path(
    post,
    path = "/v1/keys/import",
    tag = "keys",
    request_body = ImportKeysRequest,
    responses(
        (status = 201, description = "Imported, in the order given", body = ImportedKeys),
        (status = 400, description = "VALIDATION_FAILED: not 1 to 1000 keys, or a row's field breaks its rule (`details.field` is `keys[i].field`, `details.row` is `i`), e.g. a digest that is not 64 hex characters"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:write`, or a key's scopes are wider than the caller's (`details.missing`, `details.row`); RESOURCE_NOT_ALLOWED: a key's resources are wider than the caller's; KEY_LIMIT_REACHED: the keys would exceed the plan's `maxKeys`; FEATURE_NOT_IN_PLAN: the plan has no API access"),
        (status = 404, description = "NOT_FOUND: the workspace named by `X-Workspace-Id` does not exist"),
        (status = 409, description = "CONFLICT: a digest is given twice (`details.duplicateOf`) or is stored already (`details.row`, `details.field` `keys[i].digest`)"),
        (status = 413, description = "PAYLOAD_TOO_LARGE: the body is larger than 1 MiB"),
    )
)]
pub(crate) async fn import_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ImportKeysRequest>,
) -> Result<(StatusCode, Json<ImportedKeys>), ApiError> {
    caller.require("keys:write")?;
    if body.keys.is_empty() || body.keys.len() > MAX_IMPORT_KEYS {
        return Err(ApiError::validation("keys", "1 to 1000 keys per call"));
    }
    let rows = body
        .keys
        .into_iter()
        .enumerate()
        .map(|(i, row)| import_row(i, row, &caller).map_err(|ApiError(e)| ApiError(e.with_detail("row", i))))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let keys = state.service.import_keys(caller.workspace, rows, &caller.actor).await?;
    Ok((StatusCode::CREATED, Json(ImportedKeys { data: keys.iter().map(ApiKeyView::from).collect() })))
}

fn import_row(i: usize, row: ImportKeyRow, caller: &Caller) -> Result<ImportedKey, ApiError> {
    let field = |f: &str| format!("keys[{i}].{f}");
    let digest = Some(row.digest.as_str())
        .filter(|d| d.len() == 64)
        .and_then(KeyDigest::from_hex)
        .ok_or_else(|| ApiError::validation(&field("digest"), "64 hex characters (SHA-256)"))?;
    Ok(ImportedKey {
        key: NewKey {
            workspace_id: caller.workspace,
            name: row.name,
            scopes: parse_scopes(&field("scopes"), &row.scopes)?,
            resources: row.resources,
            active: row.active.unwrap_or(true),
            expires_at: row.expires_at,
            rate_limit: row.rate_limit.map(RateLimitPolicy::new),
            concurrency_limit: row.concurrency_limit,
            credits: row.credits,
            refill: row.refill.map(Into::into),
            credits_low_threshold: row.credits_low_threshold,
            ip_allowlist: keyward_core::parse_ip_allowlist(&row.ip_allowlist).map_err(|(j, reason)| {
                let at = j.map_or_else(|| field("ipAllowlist"), |j| field(&format!("ipAllowlist[{j}]")));
                ApiError::validation(&at, reason)
            })?,
            metadata: row.metadata,
        },
        digest,
        prefix: row.prefix,
        last4: row.last4,
    })
}

/// Lists the workspace's keys, newest first, masked. Needs `keys:read`.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    params(ListKeysQuery),
    responses(
        (status = 200, description = "A page of keys", body = KeyPage),
        (status = 400, description = "VALIDATION_FAILED: bad `status`, `cursor` or `limit`, an unknown or repeated query parameter"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:read`"),
    )
)]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListKeysQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    caller.require("keys:read")?;
    let filter = KeyFilter { status: q.status, cursor: q.cursor, limit: q.limit };
    let page = state.service.list_keys(caller.workspace, filter).await?;
    Ok(Json(KeyPage {
        data: page.items.iter().map(ApiKeyView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A key with its usage over the last 30 days. Needs `keys:read`.
#[utoipa::path(
    get,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = uuid::Uuid, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key", body = ApiKeyDetail),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:read`"),
        (status = 404, description = "NOT_FOUND: no such key in this workspace (deleted keys and other workspaces' keys included)"),
    )
)]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<ApiKeyDetail>, ApiError> {
    caller.require("keys:read")?;
    let id = key_id(&id)?;
    let key = state.service.get_key(caller.workspace, id).await?;
    let usage = state.service.usage(caller.workspace, id, RECENT_USAGE_DAYS).await?;
    Ok(Json(ApiKeyDetail {
        key: ApiKeyView::from(&key),
        recent_usage: usage.iter().map(UsageDayView::from).collect(),
    }))
}

/// Changes a key's name, scopes, resources, status, expiry, limits or labels; its value stays
/// the same. Needs `keys:write`, and the caller's scopes and resources must cover the key's (both
/// before and after the change).
#[utoipa::path(
    patch,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = uuid::Uuid, Path, description = "Key id")),
    request_body = UpdateKeyRequest,
    responses(
        (status = 200, description = "The updated key", body = ApiKeyView),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID, a field breaks its rule (see the schema), or `expiresAt` is not in the future"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:write`, or the key's scopes (or the new ones) are wider than the caller's (`details.missing`); RESOURCE_NOT_ALLOWED: the key's resources are wider than the caller's"),
        (status = 404, description = "NOT_FOUND: no such key in this workspace"),
        (status = 409, description = "CONFLICT: the key is revoked; LAST_ADMIN_KEY: the change (`active: false`, or scopes that lose `keys:write`) would leave the workspace without an active key holding `keys:write` or `*`; SELF_LOCKOUT: a new `ipAllowlist` on the calling key itself would refuse its own address (`details.address`)"),
    )
)]
pub(crate) async fn update_key(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ClientIp(client_ip): crate::extract::ClientIp,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateKeyRequest>,
) -> Result<Json<ApiKeyView>, ApiError> {
    caller.require("keys:write")?;
    let id = key_id(&id)?;
    let patch = KeyPatch {
        name: body.name,
        scopes: body.scopes.as_deref().map(|s| parse_scopes("scopes", s)).transpose()?,
        resources: body.resources,
        active: body.active,
        expires_at: body.expires_at,
        rate_limit: body.rate_limit.map(|r| r.map(RateLimitPolicy::new)),
        concurrency_limit: body.concurrency_limit,
        metadata: body.metadata,
        refill: body.refill.map(|r| r.map(Into::into)),
        credits_low_threshold: body.credits_low_threshold,
        ip_allowlist: body.ip_allowlist.as_deref().map(parse_ip_allowlist).transpose()?,
    };
    if let Some(list) = &patch.ip_allowlist
        && id == caller.key.key_id()
    {
        super::keeps_own_address(list, &caller.key.workspace().ip_allowlist, client_ip)?;
    }
    let key = state.service.update_key(caller.workspace, id, patch, &caller.actor).await?;
    Ok(Json(ApiKeyView::from(&key)))
}

macro_rules! state_change {
    ($fn_name:ident, $path:literal, $method:ident, $summary:literal, $conflict:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            tag = "keys",
            params(("id" = uuid::Uuid, Path, description = "Key id")),
            responses(
                (status = 200, description = "The key as it now stands", body = ApiKeyView),
                (status = 400, description = "VALIDATION_FAILED: the id is not a UUID"),
                (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:write`, or the key's scopes are wider than the caller's (`details.missing`); RESOURCE_NOT_ALLOWED: the key's resources are wider than the caller's"),
                (status = 404, description = "NOT_FOUND: no such key in this workspace"),
                (status = 409, description = $conflict),
            )
        )]
        pub(crate) async fn $fn_name(
            State(state): State<AppState>,
            caller: Caller,
            ApiPath(id): ApiPath,
        ) -> Result<Json<ApiKeyView>, ApiError> {
            caller.require("keys:write")?;
            let id = key_id(&id)?;
            let key = state.service.$method(caller.workspace, id, &caller.actor).await?;
            Ok(Json(ApiKeyView::from(&key)))
        }
    };
}

state_change!(
    activate_key,
    "/v1/keys/{id}/activate",
    activate_key,
    "Switches a key on again; it works from the next request. Needs `keys:write`, and the caller's scopes and resources must cover the key's.",
    "CONFLICT: the key is revoked"
);
state_change!(
    deactivate_key,
    "/v1/keys/{id}/deactivate",
    deactivate_key,
    "Switches a key off until it is activated; it stops from the next request. Needs `keys:write`, and the caller's scopes and resources must cover the key's.",
    "CONFLICT: the key is revoked; LAST_ADMIN_KEY: the workspace would have no active key holding `keys:write` or `*`"
);
state_change!(
    revoke_key,
    "/v1/keys/{id}/revoke",
    revoke_key,
    "Revokes a key for good; it stops from the next request. Revoking a revoked key changes nothing. Needs `keys:write`, and the caller's scopes and resources must cover the key's.",
    "LAST_ADMIN_KEY: the workspace would have no active key holding `keys:write` or `*`"
);

/// Issues a new value with the same configuration. The old key stops at once (it reads `revoked`),
/// or after `graceSeconds` (it reads `revoked` once the grace period ends). The response holds the
/// new full key, shown this once. Needs `keys:write`, and the caller's scopes and resources must
/// cover the key's.
#[utoipa::path(
    post,
    path = "/v1/keys/{id}/rotate",
    tag = "keys",
    params(("id" = uuid::Uuid, Path, description = "Key id")),
    request_body(content = Option<RotateKeyRequest>, description = "Optional: the grace period. No body, an empty body and `null` all mean none."),
    responses(
        (status = 201, description = "The successor; `secret` is shown only now", body = CreatedApiKey),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID, or `graceSeconds` is not 0 to 2592000"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:write`, or the key's scopes are wider than the caller's (`details.missing`); RESOURCE_NOT_ALLOWED: the key's resources are wider than the caller's"),
        (status = 404, description = "NOT_FOUND: no such key in this workspace"),
        (status = 409, description = "CONFLICT: the key is revoked, or was already rotated (`details.successor`)"),
    )
)]
pub(crate) async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    caller.require("keys:write")?;
    let id = key_id(&id)?;
    // No body, an empty body and `null` all mean "no grace period".
    let body: RotateKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKeyRequest::default()
    } else {
        crate::extract::parse_json::<Option<RotateKeyRequest>>(&body)?.unwrap_or_default()
    };
    let grace = body
        .grace_seconds
        .map(|s| {
            i64::try_from(s)
                .ok()
                .and_then(Duration::try_seconds)
                .ok_or_else(|| ApiError::validation("graceSeconds", "too large"))
        })
        .transpose()?;
    let c = state.service.rotate_key(caller.workspace, id, grace, &caller.actor).await?;
    Ok((StatusCode::CREATED, Json(created(c))))
}

/// Deletes a revoked key. The record is kept for the audit log but the API no longer shows it.
/// Needs `keys:write`, and the caller's scopes and resources must cover the key's.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = uuid::Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:write`, or the key's scopes are wider than the caller's (`details.missing`); RESOURCE_NOT_ALLOWED: the key's resources are wider than the caller's"),
        (status = 404, description = "NOT_FOUND: no such key in this workspace"),
        (status = 409, description = "KEY_NOT_REVOKED: revoke the key first"),
    )
)]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    caller.require("keys:write")?;
    let id = key_id(&id)?;
    state.service.delete_key(caller.workspace, id, &caller.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A key's requests per day. Needs `usage:read`.
#[utoipa::path(
    get,
    path = "/v1/keys/{id}/usage",
    tag = "usage",
    params(("id" = uuid::Uuid, Path, description = "Key id"), UsageQuery),
    responses(
        (status = 200, description = "Daily counts", body = UsageReport),
        (status = 400, description = "VALIDATION_FAILED: the id is not a UUID, `days` is not 1 to 366, or an unknown or repeated query parameter"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `usage:read`"),
        (status = 404, description = "NOT_FOUND: no such key in this workspace"),
    )
)]
pub(crate) async fn key_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    caller.require("usage:read")?;
    let id = key_id(&id)?;
    let usage = state.service.usage(caller.workspace, id, q.days.unwrap_or(RECENT_USAGE_DAYS)).await?;
    Ok(Json(UsageReport {
        key_id: id.0,
        total: usage.iter().map(|u| u.count).sum(),
        data: usage.iter().map(UsageDayView::from).collect(),
    }))
}
