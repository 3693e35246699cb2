//! The server under test and helpers to check catalog errors.

use std::net::SocketAddr;
use std::sync::Arc;

use keyward_client::{ApiError, CatalogErrorExt, CreatedApiKey, ErrorCode, KeywardClient, types};
use keyward_core::{KeyService, ManualClock, UsageRecorder, Verifier};
use keyward_server::{AppState, app};

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) root: KeywardClient,
    pub(crate) workspace: uuid::Uuid,
    pub(crate) clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The server as `keyward serve` wires it (bootstrap included), with a manual clock.
    pub(crate) async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
        let store = Arc::new(keyward_store::SqliteStore::open(&url).await.unwrap());
        let clock = Arc::new(ManualClock::starting_now());
        let service = KeyService::new(store.clone()).with_clock(clock.clone());
        let root = keyward_server::serve::bootstrap(&service).await.unwrap().expect("an empty database");
        let usage = UsageRecorder::spawn(store, std::time::Duration::from_secs(10));
        let verifier = Verifier::builder(&service).usage(usage).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(AppState::new(service, verifier));
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        let base = format!("http://{addr}");
        Server {
            root: KeywardClient::new(&base, root.secret.expose_secret()).unwrap(),
            workspace: uuid::Uuid::parse_str(&root.key.workspace_id.to_string()).unwrap(),
            base,
            clock,
            _dir: dir,
        }
    }

    /// A client that authenticates with `key`.
    pub(crate) fn client(&self, key: &CreatedApiKey) -> KeywardClient {
        self.client_with(key.secret.expose_secret())
    }

    pub(crate) fn client_with(&self, key: &str) -> KeywardClient {
        KeywardClient::new(&self.base, key).unwrap()
    }

    /// Creates a key through `by`.
    pub(crate) async fn create(&self, by: &KeywardClient, name: &str, scopes: &[&str]) -> CreatedApiKey {
        by.create_key()
            .body(
                types::CreateKeyRequest::builder()
                    .name(name)
                    .scopes(scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"))
            .into_inner()
    }

    /// Advances the server's clock.
    pub(crate) fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
    }
}

/// Asserts `result` failed with the catalog error `code` and `status`, with a message and a
/// request id that matches the `X-Request-Id` header; returns the error for more checks.
#[track_caller]
pub(crate) fn expect_catalog<T: std::fmt::Debug>(
    result: Result<T, ApiError>,
    status: u16,
    code: ErrorCode,
) -> ApiError {
    let err = result.expect_err("the call fails");
    assert!(matches!(err, keyward_client::Error::ErrorResponse(_)), "a typed catalog error, got {err:?}");
    assert_eq!(err.code(), Some(code), "{err:?}");
    assert_eq!(err.http_status().map(|s| s.as_u16()), Some(status), "{err:?}");
    assert!(!err.message().unwrap().is_empty());
    assert!(err.details().is_some());
    let header = err.headers().unwrap().get("x-request-id").expect("X-Request-Id").to_str().unwrap();
    assert_eq!(err.request_id(), Some(header), "the body's requestId is the header's");
    err
}
