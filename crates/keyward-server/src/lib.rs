//! keyward's management REST API: keys, verification, workspaces, plans, audit events and usage
//! under `/v1`, protected by keyward's own layer, documented with utoipa (`/openapi.json`, Swagger
//! UI at `/docs`).
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
mod dto;
mod error;
mod extract;
mod openapi;
mod openapi30;
mod routes;
pub mod serve;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use keyward_core::{KeyService, Verifier};
use keyward_tower::KeywardLayer;

pub use openapi::{openapi, openapi_json};

/// Largest accepted request body: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Lifecycle rules over the store.
    pub service: KeyService,
    /// The verifier behind the API's own layer and `POST /v1/verify`.
    pub verifier: Verifier,
}

impl AppState {
    /// State over a service and a verifier built from it.
    pub fn new(service: KeyService, verifier: Verifier) -> Self {
        Self { service, verifier }
    }
}

/// The whole application: `/v1` behind keyward's layer, plus `/openapi.json` and `/docs`.
///
/// The layer gives every `/v1` request its id (the caller's `X-Request-Id` when sane) and puts it
/// on the response; the handlers' error bodies carry the same one.
pub fn app(state: AppState) -> Router {
    let (v1, spec) = openapi::api();
    let v1 = v1
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn(error::with_request_id))
        .layer(KeywardLayer::new(state.verifier.clone()))
        .with_state(state);
    let docs = Router::new()
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", spec))
        .layer(middleware::from_fn(docs_request_id));
    Router::new().merge(docs).merge(v1).layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The documentation is public, so keyward's layer never sees its requests: they get their id
/// here, by the same rule.
async fn docs_request_id(req: Request, next: Next) -> Response {
    let header = HeaderName::from_static(keyward_core::http::REQUEST_ID);
    let id = keyward_core::http::request_id(req.headers().get(&header).map(HeaderValue::as_bytes));
    let mut response = next.run(req).await;
    response.headers_mut().insert(header, HeaderValue::from_str(&id).expect("request ids are visible ASCII"));
    response
}
