//! `POST /v1/verify` through the server's real router (its own `KeywardLayer` for the caller,
//! JSON extraction, verification of the key in the body, JSON response), one request at a time
//! on a current-thread runtime: the median is the CPU time of one request on one core.
//!
//! Run with `cargo bench -p keyward-server --bench verify_route` (or `cargo xtask bench`).
//! The caller's and the verified keys are cached after the first request; their limits (a
//! million a second) never bind. The verified keys walk through 1,000 keys.

use std::sync::Arc;

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use keyward_core::{
    Actor, KeyService, NewKey, NewWorkspace, Plan, PlanId, RateLimitPolicy, RateLimitWindow, Verifier,
};
use keyward_server::{AppState, app};
use tower::ServiceExt;

/// Keys the verified keys walk through.
const KEYS: usize = 1_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, caller, bodies) = rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = keyward_store::SqliteStore::open(&url).await.expect("open sqlite");
        let service = KeyService::new(Arc::new(store));
        let unlimited = RateLimitPolicy::new([RateLimitWindow::per_second(1_000_000)]);
        let plan =
            Plan { id: PlanId::from("bench"), key_rate_limit: unlimited.clone(), ..Plan::default_plan() };
        let plan = service.save_plan(plan, &Actor::system()).await.expect("plan");
        let mut ws = NewWorkspace::live("bench").with_plan(plan.id);
        ws.rate_limit = Some(unlimited);
        let ws = service.create_workspace(ws, &Actor::system()).await.expect("workspace");
        let new = NewKey::new(ws.id, "caller").with_scopes("keys:verify".parse().expect("scope"));
        let caller = service.create_key(new, &Actor::system()).await.expect("caller");
        let mut bodies = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let new = NewKey::new(ws.id, &format!("verified {i}"));
            let key = service.create_key(new, &Actor::system()).await.expect("key");
            bodies.push(serde_json::json!({ "key": key.secret.expose_secret() }).to_string());
        }
        let verifier = Verifier::builder(&service).build();
        let router = app(AppState::new(service, verifier));
        (router, format!("Bearer {}", caller.secret.expose_secret()), bodies)
    });

    let next = std::sync::atomic::AtomicUsize::new(0);
    c.bench_function("verify_route/post_v1_verify", |b| {
        b.to_async(&rt).iter(|| {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % KEYS;
            let request = axum::http::Request::post("/v1/verify")
                .header("authorization", &caller)
                .header("content-type", "application/json")
                .body(Body::from(bodies[i].clone()))
                .expect("request");
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await.expect("infallible");
                assert_eq!(response.status(), 200);
                let body = response.into_body().collect().await.expect("body").to_bytes();
                assert!(body.starts_with(br#"{"valid":true"#), "{body:?}");
                body
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
