//! ```text
//! cargo xtask bench --propagation-only    # or: cargo run --profile bench -p keyward-propagation-bench
//! ```
//!
//! For each mode of `keyward::connect` (SQLite; PostgreSQL when `KEYWARD_TEST_POSTGRES_URL` is
//! set; remote): the management side revokes a key through its own connection to the database,
//! as `keyward serve` or the CLI in another process does (remote: through the `KeyService` of a
//! keyward server on a loopback socket, which the verifier reaches over HTTP and hears from on
//! its event stream), and the connected verifier is polled every 0.2 ms until it refuses the
//! key. Prints p50, p99 and the worst of `TRIALS` trials, then
//! the cost of a cache hit in each mode (the same verifier code: the mode only changes how
//! changes arrive). Then, per database, webhook delivery latency: from a change's commit to its
//! receipt by a receiver on a loopback port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keyward::{
    Actor, Connect, KeyService, NewKey, NewWorkspace, RateLimitPolicy, RateLimitWindow, Requirements,
};

const TRIALS: usize = 200;
const HITS: u32 = 100_000;

async fn run(mode: &str, manager: KeyService, connect: Connect) -> Result<()> {
    let keyward = connect.build().await.with_context(|| format!("connecting ({mode})"))?;
    let start = Instant::now();
    while !keyward.propagating() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "{mode}: propagation never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Limits out of the way: the polling below verifies thousands of times a second.
    let roomy = RateLimitPolicy::new([RateLimitWindow { limit: 1_000_000, period_secs: 1 }]);
    let new = NewWorkspace { rate_limit: Some(roomy.clone()), ..NewWorkspace::live("bench") };
    let ws = manager.create_workspace(new, &Actor::system()).await?;
    let mut samples = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let new = NewKey { rate_limit: Some(roomy.clone()), ..NewKey::new(ws.id, "k") };
        let key = manager.create_key(new, &Actor::system()).await?;
        let plain = key.secret.expose_secret();
        keyward.verifier().verify(plain, &Requirements::default()).await.context("a fresh key verifies")?;
        // Spread the changes over the poll interval: back to back, each would land just after a
        // poll and measure the worst case every time.
        tokio::time::sleep(Duration::from_micros((trial as u64 * 7_919) % 100_000)).await;
        manager.revoke_key(ws.id, key.key.id, &Actor::system()).await?;
        let start = Instant::now();
        while keyward.verifier().verify(plain, &Requirements::default()).await.is_ok() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "{mode}: the revocation never arrived"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((p / 100.0) * (samples.len() - 1) as f64).round() as usize];
    println!(
        "propagation {mode:<8} {TRIALS} trials: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(at(50.0)),
        ms(at(99.0)),
        ms(samples[samples.len() - 1])
    );

    let hot = NewKey { rate_limit: Some(roomy), ..NewKey::new(ws.id, "hot") };
    let key = manager.create_key(hot, &Actor::system()).await?;
    let plain = key.secret.expose_secret();
    let req = Requirements::default();
    keyward.verifier().verify(plain, &req).await.context("the hot key verifies")?;
    let start = Instant::now();
    for _ in 0..HITS {
        keyward.verifier().verify(plain, &req).await.context("an admitted cache hit")?;
    }
    let per = start.elapsed() / HITS;
    println!("cache hit   {mode:<8} {:.2} us per verify", per.as_nanos() as f64 / 1000.0);
    keyward.shutdown().await?;
    Ok(())
}

/// Webhook delivery latency: keys are created one at a time through a service whose node runs
/// the delivery worker, and a receiver on a loopback port notes when each `key.created` arrives.
/// The clock starts when the create returns (its transaction committed) and stops when the
/// receiver has the request. The worker is woken by the node's change relay, as in `keyward
/// serve`.
async fn webhook_latency(mode: &str, store: Arc<dyn keyward::KeyStore>) -> Result<()> {
    use std::collections::HashMap;
    use std::sync::Mutex;

    type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;
    async fn receive(
        axum::extract::State(arrivals): axum::extract::State<Arrivals>,
        body: axum::body::Bytes,
    ) -> &'static str {
        let at = Instant::now();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(id) = v["data"]["key"]["id"].as_str() {
            arrivals.lock().expect("lock").insert(id.to_owned(), at);
        }
        "ok"
    }
    let arrivals: Arrivals = Arc::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let service = KeyService::new(store.clone()).with_insecure_webhooks(true);
    let relay = keyward_server::ChangeRelay::for_service(&service);
    let config = keyward_server::webhooks::WebhookConfig { allow_http: true, ..Default::default() };
    let worker =
        keyward_server::webhooks::WebhookWorker::spawn(store, &relay, config)?.context("webhooks")?;
    let ws = service.create_workspace(NewWorkspace::live("hooks"), &Actor::system()).await?;
    let hook = keyward::NewWebhook {
        workspace_id: ws.id,
        url,
        description: String::new(),
        events: vec![keyward::WebhookEventType::KeyCreated],
        enabled: true,
    };
    service.create_webhook(hook, &Actor::system()).await?;
    let mut samples = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        tokio::time::sleep(Duration::from_micros((trial as u64 * 7_919) % 20_000)).await;
        let key = service.create_key(NewKey::new(ws.id, "k"), &Actor::system()).await?;
        let committed = Instant::now();
        let id = key.key.id.to_string();
        loop {
            if let Some(at) = arrivals.lock().expect("lock").get(&id) {
                samples.push(at.saturating_duration_since(committed));
                break;
            }
            anyhow::ensure!(committed.elapsed() < Duration::from_secs(10), "{mode}: a webhook never arrived");
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
    worker.shutdown().await;
    samples.sort();
    let at = |p: f64| samples[((p / 100.0) * (samples.len() - 1) as f64).round() as usize];
    println!(
        "webhook  {mode:<8} {TRIALS} deliveries, commit to receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(at(50.0)),
        ms(at(99.0)),
        ms(samples[samples.len() - 1])
    );
    Ok(())
}

/// Serves the management API over `service` on a loopback port; returns its base URL.
async fn server(service: KeyService) -> Result<String> {
    let verifier = keyward::Verifier::builder(&service).build();
    let app = keyward_server::app(keyward_server::AppState::new(service, verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let limits = keyward_server::serve::ConnectionLimits::default();
    tokio::spawn(keyward_server::serve::serve_http(listener, app, limits, std::future::pending()));
    Ok(base)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let manager = KeyService::new(Arc::new(keyward::store::SqliteStore::open(&url).await?));
    run("sqlite", manager.clone(), Connect::new(&url)).await?;
    webhook_latency("sqlite", manager.store().clone()).await?;
    let base = server(manager.clone()).await?;
    // A service key resolves every cache miss through the server: its limits must fit them.
    let roomy = RateLimitPolicy::new([RateLimitWindow { limit: 1_000_000, period_secs: 1 }]);
    let new = NewWorkspace { rate_limit: Some(roomy.clone()), ..NewWorkspace::live("services") };
    let ws = manager.create_workspace(new, &Actor::system()).await?;
    let scopes = "keys:verify workspaces:admin".parse()?;
    let new = NewKey { rate_limit: Some(roomy), ..NewKey::new(ws.id, "bench service").with_scopes(scopes) };
    let service_key = manager.create_key(new, &Actor::system()).await?;
    run("remote", manager, Connect::new(&base).service_key(service_key.secret.expose_secret())).await?;

    match keyward_store::testing::PgTestSchema::from_env() {
        Some(schema) => {
            let manager = KeyService::new(Arc::new(schema.open().await));
            run("postgres", manager.clone(), Connect::new(schema.url()).database_schema(schema.name()))
                .await?;
            webhook_latency("postgres", manager.store().clone()).await?;
        }
        None => println!("propagation postgres skipped: KEYWARD_TEST_POSTGRES_URL is not set"),
    }
    Ok(())
}
