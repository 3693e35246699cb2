//! The verifier's cold path: `Verifier::verify` of a key that is not in its cache, on SQLite
//! (a file in a temporary directory) and on PostgreSQL (a fresh schema of the database
//! `KEYWARD_TEST_POSTGRES_URL` names; skipped when it is unset). Prints p50, p99 and the mean.
//!
//! Run with `cargo bench -p keyward-server --bench cold_path` (or `cargo xtask bench`).
//!
//! * `key cold`: the key was dropped from the cache (`Verifier::invalidate`) before each timed
//!   verification; other keys of its workspace stay cached.
//! * `fully cold`: the whole cache was dropped (`Verifier::invalidate_all`) before each.
//!
//! Only the verification is timed, one at a time on a current-thread runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::{
    Actor, KeyHasher, KeyService, KeyStore, NewKey, NewWorkspace, RateLimitPolicy, RateLimitWindow,
    Requirements, Verifier,
};

/// Keys the samples walk through.
const KEYS: usize = 200;
/// Timed verifications per variant.
const SAMPLES: usize = 2_000;

async fn run(backend: &str, store: Arc<dyn KeyStore>) {
    let service = KeyService::new(store);
    let mut ws = NewWorkspace::live("cold");
    ws.rate_limit = Some(RateLimitPolicy::new([RateLimitWindow::per_second(1_000_000)]));
    let ws = service.create_workspace(ws, &Actor::system()).await.expect("workspace");
    let mut keys = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let new = NewKey {
            rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_second(1_000_000)])),
            ..NewKey::new(ws.id, &format!("cold {i}"))
        };
        let created = service.create_key(new, &Actor::system()).await.expect("key");
        let digest = KeyHasher::sha256().hash(&created.secret).digest;
        keys.push((created.secret.expose_secret().to_owned(), digest));
    }
    let verifier = Verifier::builder(&service).build();
    let requirements = Requirements::default();
    for (key, _) in &keys {
        verifier.verify(key, &requirements).await.expect("warm up");
    }
    for fully in [false, true] {
        let mut times = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES {
            let (key, digest) = &keys[i % KEYS];
            if fully {
                verifier.invalidate_all();
            } else {
                verifier.invalidate(digest).await;
            }
            let start = Instant::now();
            verifier.verify(key, &requirements).await.expect("verified");
            times.push(start.elapsed());
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "cold_path/{backend}/{:<10}  p50 {:>8.1} us  p99 {:>8.1} us  mean {:>8.1} us  ({SAMPLES} samples)",
            if fully { "fully cold" } else { "key cold" },
            us(at(0.50)),
            us(at(0.99)),
            us(mean),
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cold.db").display());
        let sqlite = keyward_store::SqliteStore::open(&url).await.expect("open sqlite");
        run("sqlite", Arc::new(sqlite)).await;
        match keyward_store::testing::PgTestStore::from_env().await {
            Some(pg) => run("postgres", pg).await,
            None => println!("cold_path/postgres: skipped (KEYWARD_TEST_POSTGRES_URL is unset)"),
        }
    });
}
