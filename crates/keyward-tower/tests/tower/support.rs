//! Shared setup: a real SQLite file store behind `InstrumentedStore`, a `KeyService` on a
//! manual clock, real servers on `127.0.0.1:0`, and a reqwest client that checks every reply.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::routing::get;
use axum::{Json, Router};
use keyward_core::testing::InstrumentedStore;
use keyward_core::{
    Actor, CreatedKey, KeyService, ManualClock, NewKey, NewWorkspace, RateLimitPolicy, RateLimitWindow,
    Verifier, VerifierBuilder, Workspace,
};
use keyward_store::SqliteStore;
use keyward_tower::{KeywardLayer, VerifiedApiKey};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The workspace-wide limit of test workspaces: large, so that only key limits are reached.
pub(crate) const WORKSPACE_LIMIT: u32 = 100_000;

/// One isolated deployment: its own database file, service, clock and workspace.
pub(crate) struct Harness {
    _dir: TempDir,
    pub(crate) store: Arc<InstrumentedStore>,
    pub(crate) service: KeyService,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) workspace: Workspace,
}

impl Harness {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keyward.db");
        let sqlite = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("open sqlite");
        let store = InstrumentedStore::new(Arc::new(sqlite));
        let clock = Arc::new(ManualClock::starting_now());
        let service = KeyService::new(store.clone()).with_clock(clock.clone());
        let mut new = NewWorkspace::live("Acme");
        new.rate_limit = Some(RateLimitPolicy::new([RateLimitWindow::per_minute(WORKSPACE_LIMIT)]));
        let workspace = service.create_workspace(new, &Actor::system()).await.expect("workspace");
        Self { _dir: dir, store, service, clock, workspace }
    }

    /// A verifier with default settings.
    pub(crate) fn verifier(&self) -> Verifier {
        self.verifier_with(|b| b)
    }

    /// A verifier with custom settings.
    pub(crate) fn verifier_with(&self, f: impl FnOnce(VerifierBuilder) -> VerifierBuilder) -> Verifier {
        f(Verifier::builder(&self.service)).build()
    }

    /// A key in the harness's workspace, shaped by `f`.
    pub(crate) async fn key(&self, f: impl FnOnce(NewKey) -> NewKey) -> CreatedKey {
        let new = f(NewKey::new(self.workspace.id, "test key"));
        self.service.create_key(new, &Actor::system()).await.expect("create key")
    }
}

/// Lets a test hold a request inside its handler.
#[derive(Clone, Default)]
pub(crate) struct Gate {
    pub(crate) entered: Arc<Notify>,
    pub(crate) release: Arc<Notify>,
}

/// The protected test app: `/whoami` reports what the handler sees, `/slow` waits on the gate.
pub(crate) fn app(layer: KeywardLayer, gate: Gate) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/slow", get(slow))
        .route("/projects/{project}", get(whoami))
        .layer(layer)
        .with_state(gate)
}

pub(crate) async fn whoami(key: VerifiedApiKey, headers: HeaderMap) -> Json<Value> {
    Json(json!({
        "keyId": key.key_id().to_string(),
        "workspaceId": key.workspace_id().to_string(),
        "authorizationSensitive": headers.get(AUTHORIZATION).map(|v| v.is_sensitive()),
        "apiKeySensitive": headers.get("x-api-key").map(|v| v.is_sensitive()),
        "requestId": headers.get("x-request-id").and_then(|v| v.to_str().ok()),
    }))
}

async fn slow(State(gate): State<Gate>) -> StatusCode {
    gate.entered.notify_one();
    gate.release.notified().await;
    StatusCode::OK
}

/// Serves `router` on `127.0.0.1:0`; returns its base URL.
pub(crate) async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    format!("http://{addr}")
}

/// Serves the test app behind `layer`.
pub(crate) async fn serve_app(layer: KeywardLayer) -> (Client, Gate) {
    let gate = Gate::default();
    let base = serve(app(layer, gate.clone())).await;
    (Client::new(base), gate)
}

/// A reqwest client for one server.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
}

/// How a request presents its key.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
}

impl Client {
    pub(crate) fn new(base: String) -> Self {
        Self { http: reqwest::Client::new(), base }
    }

    /// `GET path` with a bearer key.
    pub(crate) async fn get(&self, path: &str, key: &str) -> Reply {
        self.send(path, Auth::Bearer(key), &[]).await
    }

    /// `GET path` with any key presentation and extra headers.
    pub(crate) async fn send(&self, path: &str, auth: Auth<'_>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.http.get(format!("{}{path}", self.base));
        req = match auth {
            Auth::None => req,
            Auth::Bearer(key) => req.header("authorization", format!("Bearer {key}")),
            Auth::ApiKey(key) => req.header("x-api-key", key),
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let json = headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = match () {
            _ if bytes.is_empty() => Value::Null,
            _ if json => serde_json::from_slice(&bytes).expect("JSON body"),
            _ => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        // No request a test sends may end in an internal error.
        assert_ne!(status, 500, "500 from {path}: {body}");
        Reply { status, headers, body }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn header_u64(&self, name: &str) -> u64 {
        self.header(name).unwrap_or_else(|| panic!("no {name} header")).parse().expect("integer header")
    }

    /// Asserts a success and returns the body.
    pub(crate) fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected 200, got {}: {}", self.status, self.body);
        assert!(self.header("x-request-id").is_some(), "x-request-id missing");
        &self.body
    }

    /// Asserts the catalog error shape, status and code; returns `details`.
    pub(crate) fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "status of {}", self.body);
        assert_error_shape(&self.body);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(error["requestId"].as_str(), self.header("x-request-id"), "requestId = X-Request-Id");
        if status == 401 {
            let auth = self.header("www-authenticate").expect("401 carries WWW-Authenticate");
            assert!(auth.starts_with("Bearer "), "{auth}");
        }
        if status == 429 {
            assert!(self.header("retry-after").is_some(), "429 carries Retry-After");
        }
        &error["details"]
    }
}

/// `{"error": {"code", "message", "details", "requestId"}}` and nothing else.
pub(crate) fn assert_error_shape(body: &Value) {
    let outer = body.as_object().expect("error body is an object");
    assert_eq!(outer.len(), 1, "{body}");
    let error = body["error"].as_object().expect("error object");
    let mut fields: Vec<&str> = error.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["code", "details", "message", "requestId"], "{body}");
    assert!(error["code"].is_string() && error["message"].is_string(), "{body}");
    assert!(error["details"].is_object(), "{body}");
    assert!(error["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
}

pub(crate) fn now_epoch_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// A key policy of `n` requests a minute.
pub(crate) fn per_minute(n: u32) -> Option<RateLimitPolicy> {
    Some(RateLimitPolicy::new([RateLimitWindow::per_minute(n)]))
}
