//! keyward for actix-web: a native [`Transform`](actix_web::dev::Transform) middleware over the
//! framework-neutral [`Verifier`], and the [`VerifiedApiKey`] extractor.
//!
//! actix-web 4 is built on `http` 0.2 types, so this crate does not bridge to the tower layer: it
//! runs the same pipeline directly. For every request the middleware takes the request id from
//! `X-Request-Id` (or makes one), reads the verifier's bearer and API-key headers and the query
//! string, verifies the key against the route's [`Requirements`], and then either
//!
//! - calls the route with an `Arc<`[`VerifiedKey`]`>` in the request extensions and adds
//!   `X-Request-Id`, `X-RateLimit-*` and `RateLimit-Policy`/`RateLimit` to its response (or the
//!   ones the verifier's [`rate_limit_headers`](keyward_core::VerifierBuilder::rate_limit_headers)
//!   picks), or
//! - answers with the catalog error (`{"error": {"code", "message", "details", "requestId"}}`)
//!   and the same status and headers as the tower integration, rendered by
//!   [`keyward_core::http::ErrorResponse`].
//!
//! A key's concurrency slot is held until the response body has been sent (see [`VerifiedBody`]).
//! No key is ever logged.
//!
//! ```
//! use actix_web::{App, HttpServer, Responder, web};
//! use keyward_actix::{KeywardMiddleware, VerifiedApiKey};
//! use keyward_core::{KeyService, Verifier};
//!
//! async fn report(key: VerifiedApiKey, site: web::Path<String>) -> impl Responder {
//!     format!("report for {site}, read with key {}", key.key_id())
//! }
//!
//! # async fn run(service: KeyService) -> std::io::Result<()> {
//! let verifier = Verifier::builder(&service).build();
//! let keyward = KeywardMiddleware::new(verifier)
//!     .require_scope("reports:read".parse().expect("a valid scope"))
//!     // Keys restricted to some sites may only read those.
//!     .resource(|req| req.match_info().get("site").map(str::to_owned));
//!
//! HttpServer::new(move || {
//!     App::new().service(
//!         web::resource("/sites/{site}/report").wrap(keyward.clone()).route(web::get().to(report)),
//!     )
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await
//! # }
//! ```
//!
//! Wrap a [`web::resource`](actix_web::web::resource) or [`web::scope`](actix_web::web::scope)
//! rather than the whole `App` when the resource extractor reads path parameters: actix matches
//! routes only after app-level middleware has run, so `match_info` is empty there.

mod body;
mod extract;
mod middleware;
mod rejection;

pub use body::VerifiedBody;
pub use extract::VerifiedApiKey;
pub use keyward_core::{Requirements, VerifiedKey, Verifier};
pub use middleware::{KeywardMiddleware, KeywardService};
pub use rejection::Rejection;
