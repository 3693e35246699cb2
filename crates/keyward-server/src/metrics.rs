//! Prometheus metrics: keyward's recorder, and `/metrics` in the Prometheus text format.
//!
//! `keyward serve` installs one recorder for the process ([`prometheus`]) and serves what every
//! crate recorded (see [`keyward_core::metrics`] for the names) in two ways:
//!
//! - `GET /metrics` on the API's own listener, for a key with scope [`METRICS_SCOPE`]
//!   (Prometheus sends it with `authorization: {credentials: <key>}`); without one it is 401,
//!   with a key lacking the scope 403;
//! - with `--metrics-bind ADDR`, `GET /metrics` on a listener of its own that asks for no key:
//!   bind it to an address only the scraper reaches.
//!
//! Histograms of seconds have buckets from 0.5 ms to 10 s; [`USAGE_FLUSH_SIZE`] from 1 to 10^6.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use keyward_core::metrics::USAGE_FLUSH_SIZE;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The scope a key needs to read `/metrics` on the API's listener.
pub const METRICS_SCOPE: &str = "metrics:read";

/// The text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of the histograms of seconds.
const SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Bucket bounds of the usage flush sizes.
const SIZES: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];

/// How often samples recorded since the last scrape are folded into the histograms.
const UPKEEP: Duration = Duration::from_secs(5);

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// keyward's Prometheus recorder, installed as the process's global recorder on the first call;
/// `None` when the process installed another recorder first (keyward's metrics go to that one,
/// and `/metrics` is not served).
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS.get_or_init(install).clone()
}

fn install() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(USAGE_FLUSH_SIZE.into()), SIZES))
        .expect("bucket lists are not empty")
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!(
            "another metrics recorder is installed: keyward records to it and does not serve /metrics"
        );
        return None;
    }
    keyward_core::metrics::describe();
    // A thread rather than a task: the recorder outlives any one runtime.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name("keyward-metrics".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP);
            upkeep.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread; histograms are folded at each scrape only");
    }
    Some(handle)
}

/// The metrics in the Prometheus text format.
pub(crate) fn render(handle: &PrometheusHandle) -> axum::response::Response {
    ([(CONTENT_TYPE, TEXT_FORMAT)], handle.render()).into_response()
}

/// `GET /metrics` and nothing else, with no key asked: what `--metrics-bind` serves.
pub fn metrics_app(handle: PrometheusHandle) -> Router {
    let metrics = Router::new()
        .route("/metrics", get(move || std::future::ready(render(&handle))))
        .layer(axum::middleware::from_fn(crate::public_request_id));
    crate::observed(metrics)
}
