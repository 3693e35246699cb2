//! keyward's management REST API: keys, verification, workspaces, plans, audit events and usage
//! under `/v1`, protected by keyward's own layer, documented with utoipa (`/openapi.json`, Swagger
//! UI at `/docs`); health checks at `/healthz` and `/readyz` ([`health`]), Prometheus metrics at
//! `/metrics` ([`metrics`]), and one log line per request.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use keyward_core::{KeyService, Verifier};
//!
//! let store = Arc::new(keyward_store::SqliteStore::open("sqlite://keyward.db").await?);
//! let service = KeyService::new(store);
//! let verifier = Verifier::builder(&service).build();
//! let app = keyward_server::app(keyward_server::AppState::new(service, verifier));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod dashboard;
mod dto;
mod error;
mod extract;
pub mod health;
pub mod leaks;
pub mod metrics;
mod observe;
mod openapi;
mod openapi30;
mod relay;
mod routes;
pub mod serve;
pub mod webhooks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use keyward_core::{KeyService, Verifier};
use keyward_tower::KeywardLayer;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use health::Readiness;
pub use openapi::{openapi, openapi_json};
pub use relay::ChangeRelay;

/// Largest accepted request body: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Lifecycle rules over the store.
    pub service: KeyService,
    /// The verifier behind the API's own layer and `POST /v1/verify`.
    pub verifier: Verifier,
    /// What `GET /readyz` checks.
    pub readiness: Readiness,
    /// Every change this node hears of, for `GET /v1/verifier/events`: those made through the
    /// service; start the change log poller or feed with it too for everyone else's.
    pub relay: ChangeRelay,
    /// The recorder `GET /metrics` renders; `None` serves no `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// The dashboard's sign-in sessions.
    pub dashboard: dashboard::Sessions,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client (none by default).
    pub trusted_proxies: Vec<keyward_core::IpNet>,
    /// What leak reports do, and the keys GitHub signs them with.
    pub leaks: leaks::LeakSettings,
}

impl AppState {
    /// State over a service and a verifier built from it; `/readyz` checks that the service's
    /// store answers, and there is no `/metrics`. The relay hears of the service's changes.
    pub fn new(service: KeyService, verifier: Verifier) -> Self {
        let readiness = Readiness::store(service.store().clone());
        let relay = ChangeRelay::for_service(&service);
        Self {
            service,
            verifier,
            readiness,
            relay,
            metrics: None,
            dashboard: dashboard::Sessions::default(),
            trusted_proxies: Vec::new(),
            leaks: leaks::LeakSettings::default(),
        }
    }

    /// Believes `Forwarded` / `X-Forwarded-For` from these proxies when checking IP allowlists.
    pub fn with_trusted_proxies(mut self, proxies: Vec<keyward_core::IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Handles leak reports with `settings` (by default: revoke, and no GitHub keys, so every
    /// GitHub report is refused).
    pub fn with_leaks(mut self, settings: leaks::LeakSettings) -> Self {
        self.leaks = settings;
        self
    }

    /// Checks `readiness` at `/readyz`.
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Serves `handle`'s metrics at `/metrics`, to keys with scope
    /// [`metrics:read`](metrics::METRICS_SCOPE).
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }
}

/// The whole application: `/v1` behind keyward's layer, the [`dashboard`] (`/` leads there),
/// `/openapi.json` and `/docs`, the health
/// checks `/healthz` and `/readyz` (see [`health`]), and `/metrics` when the state has a recorder
/// (see [`metrics`]). Every request is logged in one line, in a span holding its route and, once
/// verified, its key's id and workspace (never the key or its headers), and counted in the HTTP
/// metrics by route template and status.
///
/// The layer gives every `/v1` request its id (the caller's `X-Request-Id` when sane) and puts it
/// on the response; the handlers' error bodies carry the same one.
pub fn app(state: AppState) -> Router {
    let (v1, signed, spec) = openapi::api();
    // Authenticated by their signature: keyward's layer never sees them.
    let signed = signed
        .layer(middleware::from_fn(signed_request_id))
        .with_state(state.clone())
        .layer(middleware::from_fn(observe::route_template));
    let v1 = v1
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn(error::with_request_id))
        .layer(KeywardLayer::new(state.verifier.clone()).trusted_proxies(state.trusted_proxies.clone()))
        .layer(middleware::from_fn_with_state(state.dashboard.clone(), dashboard::session_credentials))
        .with_state(state.clone())
        .layer(middleware::from_fn(observe::route_template));
    let docs = Router::new()
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", spec))
        .layer(middleware::from_fn(public_request_id))
        .layer(middleware::from_fn(observe::route_template));
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state.readiness.clone())
        .layer(middleware::from_fn(public_request_id))
        .layer(middleware::from_fn(observe::route_template));
    let mut app =
        Router::new().merge(docs).merge(health).merge(signed).merge(v1).merge(dashboard::router(&state));
    if let Some(handle) = state.metrics.clone() {
        let scope = metrics::METRICS_SCOPE.parse().expect("a valid scope");
        let metrics = Router::new()
            .route("/metrics", get(move || std::future::ready(metrics::render(&handle))))
            .layer(
                KeywardLayer::new(state.verifier.clone())
                    .trusted_proxies(state.trusted_proxies.clone())
                    .require_scope(scope),
            )
            .layer(middleware::from_fn(observe::route_template));
        app = app.merge(metrics);
    }
    with_request_logs(app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
}

/// `router` with the route template carried back, then the layers of the whole app.
fn observed(router: Router) -> Router {
    with_request_logs(router.layer(middleware::from_fn(observe::route_template)))
}

/// The layers on the whole app: the HTTP metrics, the request's span and log line, and the key
/// headers marked sensitive before anything sees them.
fn with_request_logs(router: Router) -> Router {
    let api_key = HeaderName::from_static("x-api-key");
    router
        .layer(middleware::from_fn(observe::http_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observe::request_span)
                .on_request(())
                .on_response(observe::log_response)
                // The response's line says it all: one line per request.
                .on_failure(()),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION, api_key]))
}

/// The signed routes get their request id by the same rule, also for their error bodies.
async fn signed_request_id(mut req: Request, next: Next) -> Response {
    let header = HeaderName::from_static(keyward_core::http::REQUEST_ID);
    let id = keyward_core::http::request_id(req.headers().get(&header).map(HeaderValue::as_bytes));
    let value = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    req.headers_mut().insert(header.clone(), value.clone());
    let mut response = error::with_request_id(req, next).await;
    response.headers_mut().insert(header, value);
    response
}

/// Public routes (the documentation, the health checks), which keyward's layer never sees, get
/// their request id here, by the same rule.
async fn public_request_id(req: Request, next: Next) -> Response {
    let header = HeaderName::from_static(keyward_core::http::REQUEST_ID);
    let id = keyward_core::http::request_id(req.headers().get(&header).map(HeaderValue::as_bytes));
    let mut response = next.run(req).await;
    response.headers_mut().insert(header, HeaderValue::from_str(&id).expect("request ids are visible ASCII"));
    response
}
