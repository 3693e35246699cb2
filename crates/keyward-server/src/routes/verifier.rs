//! `/v1/verifier`: the server side of keyward's remote mode, for services that verify keys
//! without holding database credentials. They resolve a presented key here on a cache miss,
//! hear of changes on one long-lived event stream, spend credits and report usage in batches.
//!
//! Every operation needs `keys:verify`. An internal key (`workspaces:admin`) sees the keys of
//! every workspace; any other key only those of its own workspace.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use keyward_core::{Change, CreditOutcome, Error, ErrorCode, KeyId, UsageBatch, WorkspaceId};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::dto::keys::ApiKeyView;
use crate::dto::verifier::{
    CreditOutcomeKind, MAX_USAGE_ENTRIES, ResolveRequest, ResolvedKey, SpendCreditsRequest,
    SpendCreditsResponse, UsageBatchRequest, UsageBatchResponse,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, Caller};

/// The scope of every `/v1/verifier` operation.
pub(crate) const VERIFY_SCOPE: &str = "keys:verify";
/// How often an idle event stream carries a comment, so that both ends notice a dead connection.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

impl Caller {
    /// Whether the caller may see keys of `workspace`.
    fn sees(&self, workspace: WorkspaceId) -> bool {
        self.is_admin() || workspace == self.key.workspace_id()
    }
}

/// The record behind a presented key, whatever its status, for a remote verifier to decide on
/// and cache. Spends nothing and records no use: the verifier limits rates itself and reports
/// usage with `POST /v1/verifier/usage`. Needs `keys:verify`.
#[utoipa::path(
    post,
    path = "/v1/verifier/resolve",
    tag = "verifier",
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "The key's record, or `found: false`", body = ResolvedKey),
        (status = 400, description = "VALIDATION_FAILED: the body is malformed"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:verify`"),
    )
)]
pub(crate) async fn resolve_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ResolveRequest>,
) -> Result<Json<ResolvedKey>, ApiError> {
    caller.require(VERIFY_SCOPE)?;
    if body.key.len() > 512 {
        return Err(ApiError::validation("key", "must be at most 512 bytes"));
    }
    let Some(record) = state.verifier.lookup(body.key.trim()).await.map_err(ApiError)? else {
        return Ok(Json(ResolvedKey::not_found()));
    };
    if !caller.sees(record.key.workspace_id) {
        return Ok(Json(ResolvedKey::not_found()));
    }
    Ok(Json(ResolvedKey {
        found: true,
        digest: Some(record.key.hash.digest.to_hex()),
        key: Some(ApiKeyView::from(&record.key)),
        workspace: Some((&record.workspace).into()),
        plan: Some((&record.plan).into()),
    }))
}

/// Server-Sent Events: every change to keys, workspaces and plans from now on, made through
/// any node, the CLI or the database, so that a remote verifier drops what it cached.
///
/// - `ready` (data `{}`) first: the stream listens; whatever the verifier cached before may be
///   stale, so it forgets everything.
/// - `key` (data `{"digest": "<64 hex digits>"}`): the key stored under that digest (see
///   `POST /v1/verifier/resolve`) changed.
/// - `reset` (data `{"reason": "workspace" | "plan" | "missed"}`): anything may have changed;
///   forget everything.
///
/// Events name digests only, never keys or their owners. An idle stream carries a comment
/// every 15 seconds. Needs `keys:verify`.
#[utoipa::path(
    get,
    path = "/v1/verifier/events",
    tag = "verifier",
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:verify`"),
    )
)]
pub(crate) async fn verifier_events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(VERIFY_SCOPE)?;
    let changes = state.relay.subscribe();
    let relay = state.relay.clone();
    let ready = Event::default().event("ready").data("{}");
    let stream = futures_util::stream::unfold((Some(ready), changes), move |(first, mut changes)| {
        let relay = relay.clone();
        async move {
            if let Some(ready) = first {
                return Some((Ok(ready), (None, changes)));
            }
            let next = tokio::select! {
                next = changes.recv() => next,
                () = relay.closed() => return None,
            };
            let event = match next {
                Ok(Change::Key(digest)) => {
                    Event::default().event("key").data(format!(r#"{{"digest":"{}"}}"#, digest.to_hex()))
                }
                Ok(Change::Workspace(_)) => reset("workspace"),
                Ok(Change::Plan(_)) => reset("plan"),
                Ok(Change::Missed) | Err(RecvError::Lagged(_)) => reset("missed"),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), (None, changes)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn reset(reason: &str) -> Event {
    Event::default().event("reset").data(format!(r#"{{"reason":"{reason}"}}"#))
}

/// Takes credits from a key, atomically, for a request a remote verifier let through. Needs
/// `keys:verify`.
#[utoipa::path(
    post,
    path = "/v1/verifier/credits",
    tag = "verifier",
    request_body = SpendCreditsRequest,
    responses(
        (status = 200, description = "What was taken", body = SpendCreditsResponse),
        (status = 400, description = "VALIDATION_FAILED: the body is malformed"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:verify`"),
        (status = 404, description = "NOT_FOUND: no such key, or one the caller may not see"),
    )
)]
pub(crate) async fn spend_credits(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SpendCreditsRequest>,
) -> Result<Json<SpendCreditsResponse>, ApiError> {
    caller.require(VERIFY_SCOPE)?;
    if body.amount == 0 {
        return Err(ApiError::validation("amount", "must be at least 1"));
    }
    let id = KeyId(body.key_id);
    let store = state.service.store();
    match store.get_key(id).await.map_err(|e| ApiError(e.into()))? {
        Some(key) if key.deleted_at.is_none() && caller.sees(key.workspace_id) => {
            // Remote verifiers leave refills to where the credits are kept: here.
            store.refill_if_due(&key, state.service.clock().now()).await.map_err(|e| ApiError(e.into()))?;
        }
        _ => return Err(ApiError(Error::new(ErrorCode::NotFound, "no such key"))),
    }
    let outcome = store.consume_credits(id, i64::from(body.amount)).await.map_err(|e| ApiError(e.into()))?;
    Ok(Json(match outcome {
        CreditOutcome::Remaining(n) => {
            SpendCreditsResponse { outcome: CreditOutcomeKind::Spent, remaining: Some(n) }
        }
        CreditOutcome::Unlimited => {
            SpendCreditsResponse { outcome: CreditOutcomeKind::Unlimited, remaining: None }
        }
        CreditOutcome::Insufficient(n) => {
            SpendCreditsResponse { outcome: CreditOutcomeKind::Insufficient, remaining: Some(n) }
        }
    }))
}

/// Records the uses a remote verifier counted: requests per key per day, added to the key's
/// daily usage, and each key's latest use (`lastUsedAt`). At most 500 entries of each kind,
/// within the 64 KiB body limit.
/// Keys deleted since are skipped; a key the caller may not see refuses the whole report.
/// Needs `keys:verify`.
#[utoipa::path(
    post,
    path = "/v1/verifier/usage",
    tag = "verifier",
    request_body = UsageBatchRequest,
    responses(
        (status = 200, description = "Recorded", body = UsageBatchResponse),
        (status = 400, description = "VALIDATION_FAILED: the body is malformed, too long, or a count is 0"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:verify`; RESOURCE_NOT_ALLOWED: a key of a workspace the caller may not see"),
    )
)]
pub(crate) async fn report_usage(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<UsageBatchRequest>,
) -> Result<Json<UsageBatchResponse>, ApiError> {
    caller.require(VERIFY_SCOPE)?;
    for (field, len) in [("counts", body.counts.len()), ("lastUsed", body.last_used.len())] {
        if len > MAX_USAGE_ENTRIES {
            return Err(ApiError::validation(field, format!("at most {MAX_USAGE_ENTRIES} entries")));
        }
    }
    if let Some(i) = body.counts.iter().position(|c| c.count == 0) {
        return Err(ApiError::validation(&format!("counts[{i}].count"), "must be at least 1"));
    }
    let ids: BTreeSet<KeyId> = body
        .counts
        .iter()
        .map(|c| KeyId(c.key_id))
        .chain(body.last_used.iter().map(|l| KeyId(l.key_id)))
        .collect();
    let store = state.service.store();
    let mut live = HashMap::new();
    for id in ids {
        match store.get_key(id).await.map_err(|e| ApiError(e.into()))? {
            Some(key) if !caller.sees(key.workspace_id) => {
                return Err(ApiError(
                    Error::new(ErrorCode::ResourceNotAllowed, "the report names a key of another workspace")
                        .with_detail("keyId", id.to_string()),
                ));
            }
            Some(key) => {
                live.insert(id, key.deleted_at.is_none());
            }
            None => {
                live.insert(id, false);
            }
        }
    }
    let mut batch = UsageBatch::default();
    let (mut recorded, mut skipped) = (0, 0);
    for c in &body.counts {
        let id = KeyId(c.key_id);
        if live[&id] {
            *batch.counts.entry((id, c.day)).or_default() += u64::from(c.count);
            recorded += 1;
        } else {
            skipped += 1;
        }
    }
    for l in &body.last_used {
        let id = KeyId(l.key_id);
        if live[&id] {
            let at = batch.last_used.entry(id).or_insert(l.at);
            *at = (*at).max(l.at);
            recorded += 1;
        } else {
            skipped += 1;
        }
    }
    store.record_usage(&batch).await.map_err(|e| ApiError(e.into()))?;
    Ok(Json(UsageBatchResponse { recorded, skipped }))
}
