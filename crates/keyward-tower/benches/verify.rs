//! Criterion benchmarks for the layer's hot path.
//!
//! Run with `cargo bench -p keyward-tower --bench verify` (or `cargo xtask bench`).
//!
//! * `verify_hit/verifier`: `Verifier::verify` of a cached key, and `verify_hit/tower`: one
//!   request through the `Keyward` service (header parsing, verification, extensions, response
//!   headers) to an inner service that answers at once. While measuring, the verifier's cache
//!   holds 100 000 entries: 10 000 real keys, created through `KeyService` in an SQLite file
//!   (a few seconds: the store writes one key per transaction, and creating all 100 000 takes
//!   over 30 s), and 90 000 well-formed keys that were never issued, which the cache remembers
//!   as unknown (negative entries). Entries live for an hour here, so none expires while
//!   measuring. Iterations walk through the 10 000 real keys, so hits are spread over the
//!   cache; the keys (and the `Authorization` values) lie one after another in one buffer, as
//!   a server's lie in the bytes it read. Key and workspace limits are large, so every request
//!   passes.
//! * `reject_malformed/verifier`: `Verifier::verify` of a key that fails the checksum, and
//!   `reject_malformed/tower`: such a request through `Keyward`, answered with the rendered 401,
//!   both before any I/O.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use keyward_core::{
    Actor, ErrorCode, KeyEnvironment, KeyService, NewKey, NewWorkspace, RateLimitPolicy, RateLimitWindow,
    Requirements, Verifier,
};
use keyward_store::SqliteStore;
use keyward_tower::KeywardLayer;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

/// Entries in the verifier's cache while measuring.
const CACHED: usize = 100_000;
/// Real keys among them; the hits walk through all of these.
const KEYS: usize = 10_000;
/// Callers that fill the cache at once (the store's pool reads in parallel).
const SETUP_TASKS: usize = 8;

struct Fixture {
    verifier: Verifier,
    keys: KeyText,
    headers: Vec<HeaderValue>,
}

/// The real keys, one after another in one buffer (see [`fixture`]).
struct KeyText {
    text: String,
    ranges: Vec<(usize, usize)>,
}

impl KeyText {
    fn get(&self, i: usize) -> &str {
        let (start, end) = self.ranges[i];
        &self.text[start..end]
    }
}

async fn fixture(dir: &std::path::Path) -> Fixture {
    let path = dir.join("bench.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("open sqlite");
    let service = KeyService::new(Arc::new(store));
    let mut new = NewWorkspace::live("Bench");
    // The highest rate a window may have (1M/s), over an hour: every key's requests pass through
    // this one window, and a hit takes well under a microsecond, so a one-second window's burst
    // would run out while measuring.
    new.rate_limit = Some(RateLimitPolicy::new([RateLimitWindow::per_hour(3_600_000_000)]));
    let workspace = service.create_workspace(new, &Actor::system()).await.expect("workspace");
    let verifier = Verifier::builder(&service)
        .cache_capacity(2 * CACHED as u64)
        // Nothing may expire while measuring, or hits would turn into store reads.
        .cache_ttl(Duration::from_secs(3600))
        .negative_ttl(Duration::from_secs(3600))
        .build();

    let started = Instant::now();
    let policy = Some(RateLimitPolicy::new([RateLimitWindow::per_second(1_000_000)]));
    let mut keys = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let new = NewKey { rate_limit: policy.clone(), ..NewKey::new(workspace.id, &format!("bench {i}")) };
        let created = service.create_key(new, &Actor::system()).await.expect("create key");
        keys.push(created.secret.expose_secret().to_owned());
    }
    let created = started.elapsed();

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..SETUP_TASKS {
        let (service, verifier, keys) = (service.clone(), verifier.clone(), keys.clone());
        tasks.spawn(async move {
            let requirements = Requirements::default();
            for key in keys.iter().skip(t).step_by(SETUP_TASKS) {
                verifier.verify(key, &requirements).await.expect("warm the cache");
            }
            // Well-formed keys that were never issued: cached as unknown.
            for _ in (t..CACHED - KEYS).step_by(SETUP_TASKS) {
                let unknown = service.format().generate(KeyEnvironment::Live);
                let refused = verifier.verify(unknown.expose_secret(), &requirements).await;
                assert_eq!(refused.expect_err("unknown").code(), ErrorCode::InvalidApiKey);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("setup task");
    }
    eprintln!(
        "fixture: {KEYS} keys created in {created:.1?}; cache filled to {} entries after {:.1?}",
        verifier.cached_entries(),
        started.elapsed(),
    );
    // Presented keys laid out as a server sees them: hyper parses a request's headers into
    // slices of the buffer it read from the socket, so the key's bytes are fresh in the CPU's
    // cache, not somewhere on the heap. Contiguous text walked in order gives the bench that
    // (the prefetcher streams it), where a `String` per key would add a cache miss per request
    // that no server pays.
    let text: String = keys.iter().map(|k| format!("Bearer {k}")).collect();
    let mut headers = Vec::with_capacity(KEYS);
    let mut ranges = Vec::with_capacity(KEYS);
    let shared = Bytes::from(text.clone());
    let mut start = 0;
    for key in &keys {
        let end = start + "Bearer ".len() + key.len();
        headers.push(HeaderValue::from_maybe_shared(shared.slice(start..end)).expect("ascii"));
        ranges.push((start + "Bearer ".len(), end));
        start = end;
    }
    Fixture { verifier, keys: KeyText { text, ranges }, headers }
}

fn bench(c: &mut Criterion) {
    // A current-thread runtime: a multi-thread one adds a cross-thread wake-up to every
    // iteration, which would be measured as verification time.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = rt.block_on(fixture(dir.path()));
    let inner = service_fn(|_: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    let service = KeywardLayer::new(fixture.verifier.clone()).layer(inner);
    let requirements = Requirements::default();

    let mut group = c.benchmark_group("verify_hit");
    let next = AtomicUsize::new(0);
    group.bench_function("verifier", |b| {
        b.to_async(&rt).iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed) % KEYS;
            let key = fixture.keys.get(i);
            let (verifier, requirements) = (&fixture.verifier, &requirements);
            async move { verifier.verify(key, requirements).await.expect("verified") }
        })
    });
    group.bench_function("tower", |b| {
        b.to_async(&rt).iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed) % KEYS;
            let mut request = Request::new(Empty::new());
            request.headers_mut().insert(http::header::AUTHORIZATION, fixture.headers[i].clone());
            let service = service.clone();
            async move {
                let response = service.oneshot(request).await.expect("infallible");
                assert_eq!(response.status(), 200);
                response
            }
        })
    });
    group.finish();

    let malformed =
        HeaderValue::from_static("Bearer kw_live_0000000000000000000000000000000000000000000000000");
    let mut group = c.benchmark_group("reject_malformed");
    let bad_key = "kw_live_0000000000000000000000000000000000000000000000000";
    group.bench_function("verifier", |b| {
        b.to_async(&rt).iter(|| {
            let (verifier, requirements) = (&fixture.verifier, &requirements);
            async move { verifier.verify(bad_key, requirements).await.expect_err("malformed") }
        })
    });
    group.bench_function("tower", |b| {
        b.to_async(&rt).iter(|| {
            let mut request = Request::new(Empty::new());
            request.headers_mut().insert(http::header::AUTHORIZATION, malformed.clone());
            let service = service.clone();
            async move {
                let response = service.oneshot(request).await.expect("infallible");
                assert_eq!(response.status(), 401);
                response
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
