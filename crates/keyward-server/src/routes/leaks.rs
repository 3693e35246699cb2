//! Leak reports: `POST /v1/leaks/github` (GitHub's secret scanning, authenticated by its
//! signature, outside keyward's layer) and `POST /v1/keys/leaked` (an operator's own scanner,
//! authenticated by a key like every other operation).

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest as _, Request, State};
use keyward_core::{Actor, ApiKeySecret, Error, ErrorCode, WorkspaceId};
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::dto::leaks::{
    GitHubLeak, GitHubLeakFeedback, LeakLabel, LeakReportRequest, LeakVerdict, LeakVerdicts,
};
use crate::error::{ApiError, current_request_id};
use crate::extract::{ApiBytes, ApiJson, Caller, parse_json};

/// Most tokens one report may hold.
pub(crate) const MAX_REPORTED_TOKENS: usize = 1000;
/// Longest token looked at; a longer one is no key of ours.
const MAX_TOKEN_LEN: usize = 1024;

/// The headers GitHub signs its reports with.
pub(crate) const KEY_ID_HEADER: &str = "github-public-key-identifier";
pub(crate) const SIGNATURE_HEADER: &str = "github-public-key-signature";

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Revokes or flags the key behind `token` (per the server's setting); whether it was one.
async fn handle(
    state: &AppState,
    token: &str,
    url: Option<&str>,
    within: Option<WorkspaceId>,
    actor: &Actor,
) -> Result<LeakLabel, ApiError> {
    if token.len() > MAX_TOKEN_LEN {
        return Ok(LeakLabel::FalsePositive);
    }
    let secret = ApiKeySecret::from(token);
    let found = state.service.report_leak(&secret, url, state.leaks.policy, within, actor).await?;
    Ok(if found.is_some() { LeakLabel::TruePositive } else { LeakLabel::FalsePositive })
}

/// GitHub secret scanning's leak report (the partner programme's contract): a JSON array of
/// `{token, type, url, source}`, signed with ECDSA P-256 over SHA-256 of the raw body. Each token
/// that is one of this deployment's keys is revoked at once, or flagged (`leakedAt`,
/// `leakSource`), per `keyward serve --leaked-keys`, with a `key.leaked` audit event; a leaked
/// key is revoked even when it is its workspace's last key able to manage keys. The answer is
/// GitHub's feedback format, one entry per token, in order. Authenticated by the signature, not
/// by an API key: the public keys are configured with `--github-scanning-key ID=FILE`. An
/// unsigned, badly signed or unknown-key report is 401 `INVALID_SIGNATURE` and changes nothing.
/// The answer says only whether each token was a key.
#[utoipa::path(
    post,
    path = "/v1/leaks/github",
    tag = "leaks",
    request_body(content = Vec<GitHubLeak>, description = "At most 1000 tokens; the raw bytes are what the signature covers"),
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "The id of the GitHub key that signed the body"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 of the DER ECDSA P-256 (SHA-256) signature of the raw body"),
    ),
    responses(
        (status = 200, description = "GitHub's feedback: one label per token, in order", body = Vec<GitHubLeakFeedback>),
        (status = 400, description = "VALIDATION_FAILED: a signed body that is not an array of at most 1000 reports"),
        (status = 401, description = "INVALID_SIGNATURE: a signature header is missing, names an unconfigured key, or does not sign the body; nothing was changed"),
    )
)]
pub(crate) async fn report_github_leaks(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Vec<GitHubLeakFeedback>>, ApiError> {
    let ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let headers = request.headers().clone();
    let ApiBytes(body) = ApiBytes::from_request(request, &()).await?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !state.leaks.github_signed(header(KEY_ID_HEADER), header(SIGNATURE_HEADER), &body) {
        return Err(ApiError(Error::new(
            ErrorCode::InvalidSignature,
            "the report is not signed by a configured GitHub secret-scanning key",
        )));
    }
    let reports: Vec<GitHubLeak> = parse_json(&body)?;
    if reports.len() > MAX_REPORTED_TOKENS {
        return Err(ApiError::validation("body", "at most 1000 reports"));
    }
    let actor = Actor {
        ip,
        user_agent: Some("GitHub secret scanning".into()),
        request_id: Some(current_request_id()),
        ..Actor::system()
    };
    let mut feedback = Vec::with_capacity(reports.len());
    for report in reports {
        let label = handle(&state, &report.token, report.url.as_deref(), None, &actor).await?;
        feedback.push(GitHubLeakFeedback {
            token_hash: token_hash(&report.token),
            token_type: report.token_type,
            label,
        });
    }
    Ok(Json(feedback))
}

/// Reports tokens an operator's own scanner found: each that is a key the caller may manage
/// (of the workspace acted on, and within the caller's scopes and resources) is revoked at once
/// or flagged, per `keyward serve --leaked-keys`, with a `key.leaked` audit event, even when it
/// is the workspace's last key able to manage keys. Any other token, a key of another workspace
/// included, is "false_positive". Needs `keys:write`.
#[utoipa::path(
    post,
    path = "/v1/keys/leaked",
    tag = "keys",
    request_body = LeakReportRequest,
    responses(
        (status = 200, description = "One verdict per token, in order", body = LeakVerdicts),
        (status = 400, description = "VALIDATION_FAILED: not 1 to 1000 tokens, or a field breaks its rule"),
        (status = 403, description = "INSUFFICIENT_SCOPE: the caller lacks `keys:write`"),
    )
)]
pub(crate) async fn report_leaked_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<LeakReportRequest>,
) -> Result<Json<LeakVerdicts>, ApiError> {
    caller.require("keys:write")?;
    if body.tokens.is_empty() || body.tokens.len() > MAX_REPORTED_TOKENS {
        return Err(ApiError::validation("tokens", "1 to 1000 tokens"));
    }
    let mut data = Vec::with_capacity(body.tokens.len());
    for (i, t) in body.tokens.iter().enumerate() {
        if t.token.is_empty() || t.token.chars().count() > MAX_TOKEN_LEN {
            return Err(ApiError::validation(&format!("tokens[{i}].token"), "1 to 1024 characters"));
        }
        if t.url.as_ref().is_some_and(|u| u.chars().count() > keyward_core::MAX_LEAK_SOURCE_LEN) {
            return Err(ApiError::validation(&format!("tokens[{i}].url"), "at most 2048 characters"));
        }
    }
    for t in &body.tokens {
        let label = handle(&state, &t.token, t.url.as_deref(), Some(caller.workspace), &caller.actor).await?;
        data.push(LeakVerdict { token_hash: token_hash(&t.token), label });
    }
    Ok(Json(LeakVerdicts { data }))
}
