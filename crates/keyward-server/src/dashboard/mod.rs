//! The dashboard: key management screens in the browser, served by `keyward serve` itself at
//! `/dashboard/` (`/` redirects there), every asset embedded in the binary.
//!
//! These routes are the server's UI, not part of the public `/v1` API, so they are not in the
//! OpenAPI document. The UI's data calls go to the real `/v1` API:
//!
//! - `POST /dashboard/session` with `{"key": "kw_live_..."}` checks the key with the app's
//!   [`Verifier`](keyward_core::Verifier) (it must be active and unexpired; no particular scope),
//!   starts a [session](Sessions) and answers `Set-Cookie: kw_session=...; HttpOnly;
//!   SameSite=Strict; Path=/` (`Secure` behind https) with the session's CSRF token, the key's
//!   id, name and scopes and its workspace. `GET` tells who is signed in (after a reload);
//!   `DELETE` (CSRF required) ends the session.
//! - A `/v1` request with no `Authorization`/`X-Api-Key` header, the session cookie and the
//!   session's token in `X-Keyward-Csrf` gets `Authorization: Bearer <the session's key>`
//!   before keyward's layer sees it, so the layer's checks, scopes, rate limits and audit apply
//!   unchanged. The cookie without the matching header is ignored: the request is then
//!   unauthenticated.
//!
//! Every dashboard response carries a strict Content-Security-Policy (no inline script or
//! style), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and
//! `X-Frame-Options: DENY`, and a request id like the other public routes.
//!
//! The UI is TypeScript in `crates/keyward-server/dashboard/`, typed against
//! `openapi/keyward.openapi.json`; `cargo xtask codegen` builds it into `dashboard/dist/`,
//! which is checked in, so building the server never needs Node.

mod session;

use std::sync::OnceLock;

use axum::extract::{Path, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH, SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use keyward_core::{ApiKeySecret, Error, ErrorCode, Requirements};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use session::{CSRF_HEADER, SESSION_COOKIE, SessionConfig, Sessions};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ClientIp};
use session::SessionInfo;

/// The Content-Security-Policy of every dashboard response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    content_type: &'static str,
    body: &'static [u8],
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(content_type: &'static str, body: &'static [u8]) -> Self {
        Self { content_type, body, etag: OnceLock::new() }
    }

    fn etag(&self) -> &str {
        self.etag.get_or_init(|| format!("\"{}\"", hex::encode(&Sha256::digest(self.body)[..16])))
    }

    /// The file, or 304 when the browser holds this version (`no-cache`: it always asks, so a
    /// new binary's UI is picked up at once).
    fn serve(&self, headers: &HeaderMap) -> Response {
        let etag = self.etag();
        let fresh = headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let cache = [(CACHE_CONTROL, "no-cache"), (ETAG, etag)];
        if fresh {
            return (StatusCode::NOT_MODIFIED, cache).into_response();
        }
        (cache, [(CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

static INDEX: Asset =
    Asset::new("text/html; charset=utf-8", include_bytes!("../../dashboard/dist/index.html"));
static APP_JS: Asset =
    Asset::new("text/javascript; charset=utf-8", include_bytes!("../../dashboard/dist/app.js"));
static APP_CSS: Asset = Asset::new("text/css; charset=utf-8", include_bytes!("../../dashboard/dist/app.css"));

/// The dashboard's routes: `/`, `/dashboard/`, its assets and its session.
pub(crate) fn router(state: &AppState) -> Router {
    Router::new()
        // 303: where the root leads may change; the dashboard's own address does not.
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::permanent("/dashboard/") }))
        .route("/dashboard/", get(|headers: HeaderMap| async move { INDEX.serve(&headers) }))
        .route("/dashboard/assets/{file}", get(asset))
        .route("/dashboard/session", get(current).post(sign_in).delete(sign_out))
        .with_state(state.clone())
        .layer(middleware::from_fn(crate::error::with_request_id))
        .layer(middleware::from_fn(request_id))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(crate::observe::route_template))
}

/// The `/v1` middleware that turns a dashboard session into the key it stands for (see the
/// [module docs](self)). Goes outside keyward's layer.
pub(crate) async fn session_credentials(
    State(sessions): State<Sessions>,
    mut req: Request,
    next: Next,
) -> Response {
    // The session token stands for a key: kept out of anything that prints headers.
    for name in [COOKIE, HeaderName::from_static(CSRF_HEADER)] {
        if let Some(value) = req.headers_mut().get_mut(name) {
            value.set_sensitive(true);
        }
    }
    let headers = req.headers();
    if !headers.contains_key(AUTHORIZATION) && !headers.contains_key("x-api-key") {
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let key = session_token(headers).zip(csrf).and_then(|(token, csrf)| sessions.key(token, csrf));
        if let Some(key) = key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .expect("a verified key is visible ASCII");
            value.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, value);
        }
    }
    next.run(req).await
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "app.js" => APP_JS.serve(&headers),
        "app.css" => APP_CSS.serve(&headers),
        _ => ApiError(Error::new(ErrorCode::NotFound, "no such dashboard asset")).into_response(),
    }
}

/// The request id, by the rule of the other public routes, for the error bodies (through
/// [`crate::error::with_request_id`]) and the response.
async fn request_id(mut req: Request, next: Next) -> Response {
    let header = HeaderName::from_static(keyward_core::http::REQUEST_ID);
    let id = keyward_core::http::request_id(req.headers().get(&header).map(HeaderValue::as_bytes));
    let id = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    req.headers_mut().insert(header.clone(), id.clone());
    let mut response = next.run(req).await;
    response.headers_mut().insert(header, id);
    response
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}

/// The session token in the request's cookies.
fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether the browser reached us over https (directly, or through a proxy saying so).
fn secure(sessions: &Sessions, req: &HeaderMap) -> bool {
    sessions.config().secure_cookies
        || req
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .expect("a cookie of visible ASCII")
}

fn no_session() -> ApiError {
    ApiError(Error::new(ErrorCode::MissingApiKey, "no dashboard session: sign in with an API key"))
}

/// Body of `POST /dashboard/session`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// Who is signed in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    csrf_token: String,
    key_id: uuid::Uuid,
    key_name: String,
    scopes: Vec<String>,
    workspace_id: uuid::Uuid,
    workspace_name: String,
}

impl From<SessionInfo> for SessionView {
    fn from(i: SessionInfo) -> Self {
        Self {
            csrf_token: i.csrf,
            key_id: i.key_id,
            key_name: i.key_name,
            scopes: i.scopes,
            workspace_id: i.workspace_id,
            workspace_name: i.workspace_name,
        }
    }
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(client_ip): ClientIp,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let key = ApiKeySecret::new(body.key);
    // The key's IP allowlist applies to the browser signing in, as to its later calls.
    let req = Requirements { client_ip, ..Requirements::default() };
    let verified = state.verifier.verify(key.expose_secret(), &req).await?;
    let info = SessionInfo {
        csrf: Sessions::csrf_token(),
        key_id: verified.key_id().0,
        key_name: verified.name().to_owned(),
        scopes: verified.scopes().iter().map(ToString::to_string).collect(),
        workspace_id: verified.workspace_id().0,
        workspace_name: verified.workspace().name.clone(),
    };
    let sessions = &state.dashboard;
    let token = sessions.start(key, info.clone());
    let max_age = sessions.config().absolute_timeout.as_secs();
    let set_cookie = cookie(&token, max_age, secure(sessions, &headers));
    Ok((
        [(SET_COOKIE, set_cookie), (CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(SessionView::from(info)),
    )
        .into_response())
}

async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(client_ip): ClientIp,
) -> Result<Response, ApiError> {
    let token = session_token(&headers).ok_or_else(no_session)?;
    let (key, info) = state.dashboard.get(token).ok_or_else(no_session)?;
    // The key may have been revoked, deactivated or have expired since sign-in.
    let req = Requirements { client_ip, ..Requirements::default() };
    if let Err(e) = state.verifier.verify(key.expose_secret(), &req).await {
        state.dashboard.end(token);
        return Err(ApiError(e));
    }
    Ok(([(CACHE_CONTROL, "no-store")], Json(SessionView::from(info))).into_response())
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = session_token(&headers).ok_or_else(no_session)?;
    let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(no_session)?;
    state.dashboard.key(token, csrf).ok_or_else(no_session)?;
    state.dashboard.end(token);
    let clear = cookie("", 0, secure(&state.dashboard, &headers));
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response())
}
