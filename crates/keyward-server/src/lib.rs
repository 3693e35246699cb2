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
pub mod openapi30;
mod routes;
pub mod serve;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use keyward_core::{KeyService, Verifier};
use keyward_tower::KeywardLayer;

pub use dto::*;
pub use error::ApiError;
pub use extract::{ADMIN_SCOPE, WORKSPACE_HEADER};
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
pub fn app(state: AppState) -> Router {
    let (v1, spec) = openapi::api();
    let v1 = v1
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(KeywardLayer::new(state.verifier.clone()))
        .with_state(state);
    Router::new()
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", spec))
        .merge(v1)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_id))
}

/// Gives every request an id (the caller's `X-Request-Id` when sane), makes it visible to the
/// layer, the handlers and the error bodies, and returns it in `X-Request-Id`.
async fn request_id(mut req: Request, next: Next) -> Response {
    let header = HeaderName::from_static(keyward_core::http::REQUEST_ID);
    let id = keyward_core::http::request_id(req.headers().get(&header).map(HeaderValue::as_bytes));
    let value = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    req.headers_mut().insert(header.clone(), value.clone());
    let mut response = error::REQUEST_ID.scope(id, next.run(req)).await;
    response.headers_mut().entry(header).or_insert(value);
    response
}
