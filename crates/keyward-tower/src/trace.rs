//! What the layer tells your logs and metrics.
//!
//! **Spans.** Inside a request span (tower-http's `TraceLayer`, or any span entered around the
//! service), the layer records these fields, when the span declares them:
//!
//! | field | value |
//! |---|---|
//! | [`REQUEST_ID`] | the request's id, as its response's `X-Request-Id` carries it |
//! | [`KEY_ID`] | the verified key's id (not the key: a name for it, like its masked form) |
//! | [`WORKSPACE_ID`] | the verified key's workspace |
//!
//! A span records only the fields it declared, so declare them empty
//! (`tracing::field::Empty`) in `make_span_with`. The key itself and the `Authorization` and
//! `X-API-Key` values are never recorded, and the layer marks those headers sensitive for the
//! inner service.
//!
//! **Metrics.** The verifier behind the layer records the metrics of
//! [`keyward_core::metrics`] (verifications by outcome, latency, cache, rate limits, store
//! calls) through the `metrics` facade. Install a recorder in your service to collect them,
//! e.g. `metrics-exporter-prometheus`'s, and serve its text on a route of your own:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::get};
//! use keyward_core::{KeyService, Verifier};
//! use keyward_tower::{KeywardLayer, trace};
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use tower_http::trace::TraceLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let prometheus = PrometheusBuilder::new().install_recorder()?;
//! keyward_core::metrics::describe();
//!
//! let store = keyward_store::SqliteStore::open("keyward.db").await?;
//! let verifier = Verifier::builder(&KeyService::new(Arc::new(store))).build();
//! let api: Router = Router::new()
//!     .route("/orders", get(|| async { "orders" }))
//!     .layer(KeywardLayer::new(verifier));
//! // Scraped by Prometheus: bind it to a private address, or put it behind a key of its own.
//! let metrics = Router::new().route("/metrics", get(move || std::future::ready(prometheus.render())));
//! let app = api.merge(metrics).layer(TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
//!     tracing::info_span!(
//!         "request",
//!         method = %req.method(),
//!         request_id = tracing::field::Empty,
//!         key_id = tracing::field::Empty,
//!         workspace_id = tracing::field::Empty,
//!     )
//! }));
//! # let _ = (trace::KEY_ID, app);
//! # Ok(())
//! # }
//! ```
//!
//! The recorder must be installed before requests arrive; metrics recorded before it are lost.
//! (`PrometheusHandle::run_upkeep` should run now and then, e.g. every few seconds from a task,
//! so that histogram samples do not pile up between scrapes.)

use http::HeaderValue;
use keyward_core::VerifiedKey;

/// The span field holding the request's id.
pub const REQUEST_ID: &str = "request_id";
/// The span field holding the verified key's id.
pub const KEY_ID: &str = "key_id";
/// The span field holding the verified key's workspace id.
pub const WORKSPACE_ID: &str = "workspace_id";

pub(crate) fn record_request_id(id: &HeaderValue) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    if let Ok(id) = id.to_str() {
        span.record(REQUEST_ID, id);
    }
}

pub(crate) fn record_verified(key: &VerifiedKey) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.record(KEY_ID, tracing::field::display(key.key_id()));
    span.record(WORKSPACE_ID, tracing::field::display(key.workspace_id()));
}
