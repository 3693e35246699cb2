//! keyward for tower: [`KeywardLayer`] verifies the API key of every request in an http 1
//! stack (axum, tonic, hyper), and `VerifiedApiKey` (feature `axum`) hands the verified key
//! to axum handlers.
//!
//! A request passes through the [`Verifier`](keyward_core::Verifier) pipeline (format and
//! checksum, cache, status, expiry, scopes, resources, rate limits, concurrency, credits).
//! Verified, it reaches the inner service with an `Arc<VerifiedKey>` in its extensions, and its
//! response carries `X-Request-Id` and the `X-RateLimit-*`/`RateLimit-Policy`/`RateLimit`
//! headers (or the ones the verifier's
//! [`rate_limit_headers`](keyward_core::VerifierBuilder::rate_limit_headers) picks). Refused, it
//! gets keyward's catalog error: `{"error": {code, message, details, requestId}}` with the
//! matching status for HTTP, a trailers-only `grpc-status` response for gRPC
//! (`content-type: application/grpc*`).
//!
//! The layer records the request's id and the verified key's id and workspace in the request's
//! span, and the verifier records its metrics in your service's recorder: see [`trace`] for
//! request logs and a `/metrics` route.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::get};
//! use keyward_core::{KeyService, Verifier};
//! use keyward_store::SqliteStore;
//! use keyward_tower::{KeywardLayer, VerifiedApiKey};
//!
//! async fn orders(key: VerifiedApiKey) -> String {
//!     format!("orders of workspace {}", key.workspace_id())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open("keyward.db").await?;
//! let service = KeyService::new(Arc::new(store));
//! let verifier = Verifier::builder(&service).build();
//!
//! let app = Router::new()
//!     .route("/orders", get(orders))
//!     .layer(KeywardLayer::new(verifier).require_scope("orders:read".parse()?).cost(1));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! With tonic the same layer goes on the server, and refusals become gRPC statuses
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, ...):
//!
//! ```no_run
//! # async fn demo(verifier: keyward_core::Verifier) -> Result<(), Box<dyn std::error::Error>> {
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     .layer(keyward_tower::KeywardLayer::new(verifier))
//!     .add_service(health)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```

mod body;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod render;
mod service;
pub mod trace;

pub use body::KeywardBody;
#[cfg(feature = "axum")]
pub use extract::{MissingVerifiedKey, VerifiedApiKey};
pub use future::ResponseFuture;
pub use layer::{KeywardLayer, ResourceFrom};
pub use service::Keyward;

/// The verified key the layer puts into request extensions, re-exported for convenience.
pub use keyward_core::VerifiedKey;
