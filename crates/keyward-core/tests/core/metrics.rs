//! What the verifier and the usage recorder record through the `metrics` facade, read back from a
//! Prometheus recorder set for this test's thread only (`#[tokio::test]` runs on one thread), so
//! that tests running beside it do not add to its counts.

use std::sync::Arc;
use std::time::Duration;

use keyward_core::testing::fixture::setup;
use keyward_core::testing::{InstrumentedStore, MemoryStore};
use keyward_core::{
    ErrorCode, KeyEnvironment, KeyFormat, NewKey, Presented, RateLimitPolicy, RateLimitWindow, Requirements,
    UsageRecorder, Verifier,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The value of the series `series` (name and labels as rendered), or `None` when absent.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn recorder() -> (metrics_exporter_prometheus::PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().set_buckets(&[0.001, 1.0]).expect("buckets").build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

#[tokio::test]
async fn verifications_are_counted_by_outcome_with_cache_and_rate_limit_decisions() {
    let (recorder, prometheus) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = InstrumentedStore::new(Arc::new(MemoryStore::new()));
    let ctx = setup(store.clone()).await;
    let verifier = Verifier::builder(&ctx.service).build();
    let limited = NewKey {
        rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_minute(2)])),
        ..ctx.new_key("limited")
    };
    let key = ctx.create(limited).await;
    let plain = key.secret.expose_secret();

    for _ in 0..2 {
        verifier.verify(plain, &Requirements::default()).await.expect("within the limit");
    }
    let e = verifier.verify(plain, &Requirements::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::RateLimited);
    let unknown = KeyFormat::default().generate(KeyEnvironment::Live);
    verifier.verify(unknown.expose_secret(), &Requirements::default()).await.unwrap_err();
    verifier.verify("kw_live_garbage", &Requirements::default()).await.unwrap_err();
    let e = Presented::default().key(verifier.config()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MissingApiKey);
    let e = verifier.check_format("kw_live_garbage").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidApiKey);

    let text = prometheus.render();
    let count = |series: &str| value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(count(r#"keyward_verifications_total{outcome="VALID"}"#), 2.0);
    assert_eq!(count(r#"keyward_verifications_total{outcome="RATE_LIMITED"}"#), 1.0);
    assert_eq!(count(r#"keyward_verifications_total{outcome="INVALID_API_KEY"}"#), 3.0);
    assert_eq!(count(r#"keyward_verifications_total{outcome="MISSING_API_KEY"}"#), 1.0);
    assert_eq!(count("keyward_verify_duration_seconds_count"), 5.0, "Verifier::verify ran 5 times");
    // The first verify and the unknown key read the store; the malformed key stops before the cache.
    assert_eq!(count("keyward_cache_misses_total"), 2.0);
    assert_eq!(count("keyward_cache_hits_total"), 2.0);
    assert!(count("keyward_cache_entries") >= 1.0, "{text}");
    assert_eq!(count(r#"keyward_rate_limit_decisions_total{subject="key",decision="allowed"}"#), 2.0);
    assert_eq!(count(r#"keyward_rate_limit_decisions_total{subject="key",decision="limited"}"#), 1.0);
    assert_eq!(count(r#"keyward_rate_limit_decisions_total{subject="workspace",decision="allowed"}"#), 2.0);
    assert!(!text.contains(plain) && !text.contains(&key.key.prefix), "no key in a label");
    assert!(!text.contains(&key.key.id.to_string()), "no key id either");
}

#[tokio::test]
async fn usage_flushes_record_their_size_and_their_failures() {
    let (recorder, prometheus) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let store = InstrumentedStore::new(Arc::new(MemoryStore::new()));
    let ctx = setup(store.clone()).await;
    let key = ctx.create(ctx.new_key("k")).await;
    let usage = UsageRecorder::spawn(store.clone(), Duration::from_secs(10));
    for _ in 0..3 {
        usage.record(key.key.id, ctx.now());
    }
    store.set_down(true);
    usage.flush().await.unwrap_err();
    assert_eq!(value(&prometheus.render(), "keyward_usage_flush_failures_total"), Some(1.0));
    store.set_down(false);
    usage.flush().await.expect("flushed");
    let text = prometheus.render();
    assert_eq!(value(&text, "keyward_usage_flush_size_sum"), Some(3.0), "{text}");
    assert_eq!(value(&text, "keyward_usage_flush_size_count"), Some(1.0), "{text}");
    usage.shutdown().await.expect("nothing left");
}
