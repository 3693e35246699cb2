//! The metrics keyward records, through the [`metrics`] facade.
//!
//! Every keyward crate records through the facade's macros: without a recorder installed they
//! cost a check and do nothing; with one (your service's, or the Prometheus recorder
//! `keyward serve` installs) the verifier, the layer, the stores, the change feed and the usage
//! recorder all report to it. No label holds a key, its hash, its prefix or its id: labels are
//! outcome codes, subjects (`key`, `workspace`), operation and backend names, route templates.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`VERIFICATIONS`] | counter | `outcome` | verifications, by `VALID` or the refusal's catalog code (`MISSING_API_KEY`, `INVALID_API_KEY`, ...) |
//! | [`VERIFY_DURATION`] | histogram | | seconds [`Verifier::verify`](crate::Verifier::verify) took |
//! | [`CACHE_HITS`] | counter | | verifications answered by the verifier's cache (a known key, or a key known not to exist) |
//! | [`CACHE_MISSES`] | counter | | verifications that read the store |
//! | [`CACHE_ENTRIES`] | gauge | | digests in the verifier's cache (approximate) |
//! | [`RATE_LIMIT_DECISIONS`] | counter | `subject` (`key`, `workspace`), `decision` (`allowed`, `limited`) | rate-limit decisions |
//! | [`STORE_DURATION`] | histogram | `backend`, `operation` | seconds a store call took |
//! | [`STORE_ERRORS`] | counter | `backend`, `operation`, `kind` | store calls that failed: `unavailable` and `other` are faults, the rest (`conflict`, `duplicate`, ...) the store's answers to the rules |
//! | [`CHANGE_FEED_CONNECTED`] | gauge | `channel` | 1 while the PostgreSQL change feed listens, else 0 |
//! | [`CHANGE_FEED_NOTIFICATIONS`] | counter | `channel` | change notifications received |
//! | [`CHANGE_FEED_RECONNECTIONS`] | counter | `channel` | times the feed listened again after losing its connection |
//! | [`CHANGE_FEED_CONFIRMED`] | gauge | `channel` | Unix time the feed last heard from the database (a notification, or an answered probe): `time() - x` bounds how far behind the node may be |
//! | [`USAGE_FLUSH_SIZE`] | histogram | | uses written per usage flush |
//! | [`USAGE_FLUSH_FAILURES`] | counter | | usage flushes that failed (their uses are kept and retried) |
//! | [`HTTP_REQUESTS`] | counter | `method`, `route`, `status` | requests `keyward serve` answered, by route template (never the raw path) |
//! | [`HTTP_DURATION`] | histogram | `method`, `route` | seconds `keyward serve` took to answer |
//!
//! Any recorder sees them. With `metrics-exporter-prometheus` (no default features needed),
//! install its recorder at startup and serve its handle's `render()` on a route of your own
//! (`keyward-tower`'s documentation shows it in an axum service):
//!
//! ```
//! use keyward_core::{ErrorCode, metrics};
//! use metrics_exporter_prometheus::PrometheusBuilder;
//!
//! let recorder = PrometheusBuilder::new().build_recorder();
//! let prometheus = recorder.handle();
//! // An application calls `install_recorder()` instead, once, for the whole process.
//! ::metrics::with_local_recorder(&recorder, || {
//!     metrics::describe();
//!     metrics::record_verification(Err(ErrorCode::MissingApiKey));
//! });
//! let text = prometheus.render();
//! assert!(text.contains(r#"keyward_verifications_total{outcome="MISSING_API_KEY"} 1"#), "{text}");
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{Key, Label};

use crate::error::ErrorCode;
use crate::store::StoreError;

/// Counter of verifications by `outcome`: [`VALID`] or a catalog code.
pub const VERIFICATIONS: &str = "keyward_verifications_total";
/// Histogram of the seconds a verification took.
pub const VERIFY_DURATION: &str = "keyward_verify_duration_seconds";
/// Counter of verifications the cache answered.
pub const CACHE_HITS: &str = "keyward_cache_hits_total";
/// Counter of verifications that read the store.
pub const CACHE_MISSES: &str = "keyward_cache_misses_total";
/// Gauge of the digests cached.
pub const CACHE_ENTRIES: &str = "keyward_cache_entries";
/// Counter of rate-limit decisions by `subject` and `decision`.
pub const RATE_LIMIT_DECISIONS: &str = "keyward_rate_limit_decisions_total";
/// Histogram of the seconds store calls took, by `backend` and `operation`.
pub const STORE_DURATION: &str = "keyward_store_operation_duration_seconds";
/// Counter of failed store calls, by `backend`, `operation` and `kind`.
pub const STORE_ERRORS: &str = "keyward_store_errors_total";
/// Gauge: 1 while the change feed listens.
pub const CHANGE_FEED_CONNECTED: &str = "keyward_change_feed_connected";
/// Counter of change notifications received.
pub const CHANGE_FEED_NOTIFICATIONS: &str = "keyward_change_feed_notifications_total";
/// Counter of the change feed's reconnections.
pub const CHANGE_FEED_RECONNECTIONS: &str = "keyward_change_feed_reconnections_total";
/// Gauge: Unix time the change feed last heard from the database.
pub const CHANGE_FEED_CONFIRMED: &str = "keyward_change_feed_confirmed_timestamp_seconds";
/// Histogram of the uses written per usage flush.
pub const USAGE_FLUSH_SIZE: &str = "keyward_usage_flush_size";
/// Counter of failed usage flushes.
pub const USAGE_FLUSH_FAILURES: &str = "keyward_usage_flush_failures_total";
/// Counter of HTTP requests answered, by `method`, `route` and `status`.
pub const HTTP_REQUESTS: &str = "keyward_http_requests_total";
/// Histogram of the seconds HTTP requests took, by `method` and `route`.
pub const HTTP_DURATION: &str = "keyward_http_request_duration_seconds";

/// The `outcome` of a verification that passed.
pub const VALID: &str = "VALID";

/// Gives every metric its description and unit in the installed recorder (Prometheus shows them
/// as `# HELP`). Call it once, after installing the recorder; metrics are recorded without it.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        VERIFICATIONS,
        "API-key verifications, by outcome: VALID or the refusal's catalog code"
    );
    describe_histogram!(VERIFY_DURATION, Unit::Seconds, "Time one verification took");
    describe_counter!(CACHE_HITS, "Verifications answered by the verifier's cache");
    describe_counter!(CACHE_MISSES, "Verifications that read the key store");
    describe_gauge!(CACHE_ENTRIES, "Digests in the verifier's cache (approximate)");
    describe_counter!(RATE_LIMIT_DECISIONS, "Rate-limit decisions, by subject (key, workspace) and decision");
    describe_histogram!(STORE_DURATION, Unit::Seconds, "Time one key-store call took");
    describe_counter!(STORE_ERRORS, "Key-store calls that failed, by kind");
    describe_gauge!(CHANGE_FEED_CONNECTED, "1 while the PostgreSQL change feed listens, else 0");
    describe_counter!(CHANGE_FEED_NOTIFICATIONS, "Change notifications the change feed received");
    describe_counter!(
        CHANGE_FEED_RECONNECTIONS,
        "Times the change feed listened again after losing its connection"
    );
    describe_gauge!(
        CHANGE_FEED_CONFIRMED,
        Unit::Seconds,
        "Unix time the change feed last heard from the database (a notification or an answered probe)"
    );
    describe_histogram!(USAGE_FLUSH_SIZE, Unit::Count, "Uses written per usage flush");
    describe_counter!(USAGE_FLUSH_FAILURES, "Usage flushes that failed; their uses are kept and retried");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time taken to answer an HTTP request");
}

/// Counts one verification with its outcome.
pub fn record_verification(outcome: Result<(), ErrorCode>) {
    // One key per outcome, built on first use: the facade's macros would build a label vector
    // and hash the key on every verification.
    static OUTCOMES: OnceLock<Box<[Key]>> = OnceLock::new();
    let keys = OUTCOMES.get_or_init(|| {
        let outcome =
            |value| Key::from_parts(VERIFICATIONS, vec![Label::from_static_parts("outcome", value)]);
        std::iter::once(outcome(VALID)).chain(ErrorCode::ALL.iter().map(|c| outcome(c.as_str()))).collect()
    });
    // `ALL` lists the codes in declaration order, so a code's discriminant is its place there.
    let key = match outcome {
        Ok(()) => &keys[0],
        Err(code) => &keys[1 + code as usize],
    };
    register!(register_counter, key).increment(1);
}

/// Registers a key that is built once (a `static`, or a table built on first use) with the
/// installed recorder, as `counter!`/`histogram!` do, with the same target, level and module:
/// the recorder sees the same metric, but no key is built and hashed per call (a key caches its
/// hash). For the metrics each verification records.
macro_rules! register {
    ($register:ident, $key:expr) => {{
        static METADATA: ::metrics::Metadata<'static> =
            ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));
        ::metrics::with_recorder(|recorder| recorder.$register($key, &METADATA))
    }};
}
pub(crate) use register;

/// [`CACHE_HITS`], built once.
pub(crate) static CACHE_HITS_KEY: Key = Key::from_static_name(CACHE_HITS);
/// [`CACHE_MISSES`], built once.
pub(crate) static CACHE_MISSES_KEY: Key = Key::from_static_name(CACHE_MISSES);
/// [`VERIFY_DURATION`], built once.
pub(crate) static VERIFY_DURATION_KEY: Key = Key::from_static_name(VERIFY_DURATION);

/// [`RATE_LIMIT_DECISIONS`] for each subject the limiter counts: the subject (the `subject_kind`
/// of its windows), then its `allowed` and `limited` keys.
pub(crate) fn rate_limit_decision_keys() -> [(&'static str, [&'static Key; 2]); 2] {
    macro_rules! decision {
        ($subject:literal, $decision:literal) => {{
            static LABELS: [Label; 2] = [
                Label::from_static_parts("subject", $subject),
                Label::from_static_parts("decision", $decision),
            ];
            static KEY: Key = Key::from_static_parts(RATE_LIMIT_DECISIONS, &LABELS);
            &KEY
        }};
    }
    [
        ("key", [decision!("key", "allowed"), decision!("key", "limited")]),
        ("workspace", [decision!("workspace", "allowed"), decision!("workspace", "limited")]),
    ]
}

/// The `kind` label of a store error.
pub fn store_error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Conflict => "conflict",
        StoreError::KeyLimitReached => "key_limit_reached",
        StoreError::LastAdminKey => "last_admin_key",
        StoreError::Duplicate => "duplicate",
        StoreError::NotFound => "not_found",
        StoreError::Other(_) => "other",
    }
}

/// Records one store call of `operation` on `backend`: how long it took, and its error if any.
pub fn record_store_call<T>(
    backend: &'static str,
    operation: &'static str,
    took: Duration,
    result: &Result<T, StoreError>,
) {
    ::metrics::histogram!(STORE_DURATION, "backend" => backend, "operation" => operation)
        .record(took.as_secs_f64());
    if let Err(e) = result {
        ::metrics::counter!(STORE_ERRORS, "backend" => backend, "operation" => operation, "kind" => store_error_kind(e))
            .increment(1);
    }
}
