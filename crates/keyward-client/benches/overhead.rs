//! The SDK's cost per call next to a plain reqwest call: `GET /v1/status` on the real server,
//! in-process on `127.0.0.1:0` over SQLite, with a key whose rate limits are out of reach.
//!
//! ```text
//! cargo bench -p keyward-client --bench overhead
//! ```
//!
//! Prints criterion's report, both medians and their ratio, then the medians of a paired run
//! that alternates the two calls.

use std::hint::black_box;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use keyward_client::{KeywardClient, types};
use keyward_core::{KeyService, UsageRecorder, Verifier};

const GROUP: &str = "status_call";

struct Target {
    base: String,
    key: String,
    _dir: tempfile::TempDir,
}

/// Starts the server and makes a key in a workspace whose limits a benchmark cannot reach.
async fn start() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let store = Arc::new(keyward_store::SqliteStore::open(&url).await.unwrap());
    let service = KeyService::new(store.clone());
    let root = keyward_server::serve::bootstrap(&service).await.unwrap().expect("an empty database");
    let usage = UsageRecorder::spawn(store, Duration::from_secs(10));
    let verifier = Verifier::builder(&service).usage(usage).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = keyward_server::app(keyward_server::AppState::new(service, verifier));
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    let base = format!("http://{addr}");
    let root = KeywardClient::new(&base, root.secret.expose_secret()).unwrap();
    // The most a window may allow: 1,000,000 requests a second.
    let unlimited = || {
        Some(vec![types::RateLimitWindow {
            limit: NonZeroU32::new(1_000_000).unwrap(),
            period_secs: NonZeroU32::MIN,
        }])
    };
    let ws = root
        .create_workspace()
        .body(types::CreateWorkspaceRequest::builder().name("bench").rate_limit(unlimited()))
        .send()
        .await
        .unwrap();
    let key = root
        .in_workspace(ws.id)
        .create_key()
        .body(types::CreateKeyRequest::builder().name("bench").rate_limit(unlimited()))
        .send()
        .await
        .unwrap()
        .into_inner();
    Target { base, key: key.secret.expose_secret().to_owned(), _dir: dir }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let target = rt.block_on(start());
    let sdk = KeywardClient::new(&target.base, &target.key).unwrap();
    let plain = reqwest::Client::new();
    let url = format!("{}/v1/status", target.base);

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4));
    let mut group = criterion.benchmark_group(GROUP);
    let plain_call = || {
        rt.block_on(async {
            let response = plain.get(&url).bearer_auth(&target.key).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        })
    };
    let sdk_call = || rt.block_on(async { sdk.status().send().await.unwrap() });
    group.bench_function("reqwest", |b| b.iter(plain_call));
    group.bench_function("sdk", |b| b.iter(sdk_call));
    group.finish();
    criterion.final_summary();

    match (median_ns("reqwest"), median_ns("sdk")) {
        (Some(plain), Some(sdk)) => println!(
            "{GROUP}: median plain reqwest {:.1} µs, SDK {:.1} µs, ratio SDK/reqwest {:.3}",
            plain / 1e3,
            sdk / 1e3,
            sdk / plain
        ),
        _ => println!("{GROUP}: medians not found (run without a filter to measure both)"),
    }

    // The two benchmarks above run one after the other, so load that comes and goes on the
    // machine skews their ratio; alternating the two calls makes a paired comparison.
    let (mut plain_times, mut sdk_times) = (Vec::new(), Vec::new());
    for _ in 0..PAIRED_ROUNDS {
        let started = Instant::now();
        black_box(plain_call());
        plain_times.push(started.elapsed());
        let started = Instant::now();
        black_box(sdk_call());
        sdk_times.push(started.elapsed());
    }
    let (plain, sdk) = (median(&mut plain_times), median(&mut sdk_times));
    println!(
        "{GROUP} paired ({PAIRED_ROUNDS} alternating rounds): median plain reqwest {:.1} µs, SDK {:.1} µs, ratio {:.3}",
        plain.as_secs_f64() * 1e6,
        sdk.as_secs_f64() * 1e6,
        sdk.as_secs_f64() / plain.as_secs_f64()
    );
}

const PAIRED_ROUNDS: usize = 2000;

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// Criterion's median estimate for one benchmark of the group, in nanoseconds.
fn median_ns(bench: &str) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("criterion")
    });
    let text = std::fs::read_to_string(home.join(GROUP).join(bench).join("new/estimates.json")).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
