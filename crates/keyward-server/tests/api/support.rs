//! A running server and a small client for the tests.

use std::sync::Arc;

use keyward_core::testing::InstrumentedStore;
use keyward_core::{KeyService, ManualClock, UsageRecorder, Verifier};
use keyward_server::serve::{ConnectionLimits, serve_http};
use keyward_server::{AppState, app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) store: Arc<InstrumentedStore>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) root: String,
    pub(crate) workspace: String,
    pub(crate) usage: UsageRecorder,
    _dir: tempfile::TempDir,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {}", self.body))
    }

    /// Asserts the catalog error shape and code, and that the body's request id is the header's.
    pub(crate) fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        let err = &self.body["error"];
        assert!(err["message"].is_string() && err["details"].is_object(), "{}", self.body);
        let rid = self.headers.get("x-request-id").expect("x-request-id").to_str().unwrap();
        assert_eq!(err["requestId"], rid);
    }
}

impl Server {
    pub(crate) async fn start() -> Server {
        Self::start_with(|state| state).await
    }

    /// A server whose state `configure` adjusts first.
    pub(crate) async fn start_with(configure: impl FnOnce(AppState) -> AppState) -> Server {
        Self::start_on("127.0.0.1:0", configure).await
    }

    /// On `bind` (e.g. `[::1]:0` for IPv6).
    pub(crate) async fn start_on(bind: &str, configure: impl FnOnce(AppState) -> AppState) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
        let sqlite = Arc::new(keyward_store::SqliteStore::open(&url).await.unwrap());
        let store = InstrumentedStore::new(sqlite);
        let clock = Arc::new(ManualClock::starting_now());
        let service = KeyService::new(store.clone()).with_clock(clock.clone());
        let root = keyward_server::serve::bootstrap(&service).await.unwrap().expect("empty database");
        let usage = UsageRecorder::spawn(store.clone(), std::time::Duration::from_secs(10));
        let verifier = Verifier::builder(&service).usage(usage.clone()).build();
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(configure(AppState::new(service.clone(), verifier)));
        tokio::spawn(async move {
            serve_http(listener, router, ConnectionLimits::default(), std::future::pending()).await.unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            store,
            clock,
            workspace: root.key.workspace_id.to_string(),
            root: root.secret.expose_secret().to_owned(),
            usage,
            _dir: dir,
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        assert!(headers.contains_key("x-request-id"), "every response has X-Request-Id");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        assert_ne!(status.as_u16(), 500, "no 500s: {body}");
        Reply { status, headers, body }
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub(crate) async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    /// Creates a key with the root key; returns (id, secret).
    pub(crate) async fn key(&self, name: &str, scopes: &[&str]) -> (String, String) {
        self.key_as(&self.root, name, scopes).await
    }

    pub(crate) async fn key_as(&self, caller: &str, name: &str, scopes: &[&str]) -> (String, String) {
        let r = self.post("/v1/keys", caller, json!({"name": name, "scopes": scopes})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (r.body["key"]["id"].as_str().unwrap().to_owned(), r.body["secret"].as_str().unwrap().to_owned())
    }
}
