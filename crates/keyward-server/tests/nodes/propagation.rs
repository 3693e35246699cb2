//! A change made through one node reaches the other through the change feed; how fast, and how
//! fast a verify that misses the cache is on PostgreSQL.

use std::time::{Duration, Instant};

use keyward_core::Requirements;
use keyward_store::testing::PgTestSchema;
use reqwest::{Method, StatusCode};

use crate::support::{Cluster, ms, percentile, redis_url, within};

const TRIALS: usize = 120;

/// A key revoked through node A is refused by node B, which had it cached (for 60 s): only the
/// change feed can tell B. Measures the time from A's answer to B's first refusal, polling B
/// every millisecond over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_node_is_refused_by_the_other() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let redis = redis_url();
    let c = Cluster::start(schema, redis.as_deref(), |a| a, |b| b).await;
    let mut samples = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let (id, key) = c.key(|k| k).await;
        assert!(c.b.verify(&c.admin, &key).await.valid(), "trial {trial}: B accepts (and caches) the key");
        let r = c.a.call(Method::POST, &format!("/v1/keys/{id}/revoke"), &c.admin, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let took = within(
            &format!("trial {trial}: B refuses the revoked key"),
            Duration::from_secs(5),
            async || {
                let r = c.b.verify(&c.admin, &key).await;
                !r.valid() && r.verdict_code() == "KEY_REVOKED"
            },
        )
        .await;
        samples.push(took);
    }
    samples.sort();
    eprintln!(
        "cross-node revocation over {TRIALS} trials (HTTP polling every ~1 ms): p50 {}, p99 {}, max {}",
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        ms(samples[samples.len() - 1]),
    );
    assert!(c.b.node.feed.as_ref().expect("feed").notifications() >= TRIALS as u64);
    c.stop().await;
}

/// Other changes travel the same way: a deactivation, a key's new scopes, a plan withdrawing
/// API access (which drops every cached key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_changes_reach_the_other_node() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let c = Cluster::start(schema, None, |a| a, |b| b).await;
    let (id, key) = c.key(|k| k).await;
    let limit = Duration::from_secs(5);
    assert!(c.b.verify(&c.admin, &key).await.valid());
    c.a.call(Method::POST, &format!("/v1/keys/{id}/deactivate"), &c.admin, None).await;
    within("B sees the deactivation", limit, async || {
        c.b.verify(&c.admin, &key).await.verdict_code() == "KEY_INACTIVE"
    })
    .await;
    c.a.call(Method::POST, &format!("/v1/keys/{id}/activate"), &c.admin, None).await;
    within("B sees the activation", limit, async || c.b.verify(&c.admin, &key).await.valid()).await;

    // Through node A's service as an operator (the admin key may not withdraw its own
    // workspace's API access: SELF_LOCKOUT); the change travels the same way.
    let plan = keyward_core::Plan {
        id: "nodes".into(),
        name: "Nodes".into(),
        api_access: false,
        max_keys: None,
        key_rate_limit: keyward_core::RateLimitPolicy::new([keyward_core::RateLimitWindow::per_second(
            1_000_000,
        )]),
    };
    c.a.node.state.service.save_plan(plan, &keyward_core::Actor::system()).await.expect("plan saved");
    within("B applies the plan", limit, async || {
        let r = c.b.call(Method::GET, "/v1/status", &key, None).await;
        r.status == StatusCode::FORBIDDEN && r.code() == "FEATURE_NOT_IN_PLAN"
    })
    .await;
    c.stop().await;
}

/// Verifies that miss the cache and read PostgreSQL, on node B's verifier in process (the key
/// is read; its workspace and plan are cached), and fully cold ones (key, workspace and plan
/// read). Also the bare store read. Printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_verify_latency_on_postgres() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let redis = redis_url();
    let c = Cluster::start(schema, redis.as_deref(), |a| a, |b| b).await;
    const N: usize = 300;
    let mut keys = Vec::with_capacity(N);
    for _ in 0..N {
        keys.push(c.key(|k| k).await.1);
    }
    let verifier = &c.b.node.state.verifier;
    let req = Requirements::default();
    verifier.verify(&c.admin, &req).await.expect("warm the workspace and plan");
    let (mut key_only, mut cold) = (Vec::with_capacity(N / 2), Vec::with_capacity(N / 2));
    for (i, key) in keys.iter().enumerate() {
        if i % 2 == 1 {
            verifier.invalidate_all();
        }
        let start = Instant::now();
        let verified = verifier.verify(key, &req).await;
        let took = start.elapsed();
        verified.unwrap_or_else(|e| panic!("a fresh key verifies: {e}"));
        if i % 2 == 1 { cold.push(took) } else { key_only.push(took) }
    }
    let store = c.b.node.database.store();
    let digests: Vec<_> =
        keys.iter().map(|k| c.b.node.state.service.hasher().hash(&k.as_str().into()).digest).collect();
    let mut reads = Vec::with_capacity(N);
    for d in &digests {
        let start = Instant::now();
        store.find_key_by_digest(d).await.expect("read").expect("found");
        reads.push(start.elapsed());
    }
    for v in [&mut key_only, &mut cold, &mut reads] {
        v.sort();
    }
    let limiter = if redis.is_some() { "Redis" } else { "in-process" };
    eprintln!(
        "cold verify on PostgreSQL ({limiter} rate limiter), {} samples each: key read p50 {} p99 {}; \
         key+workspace+plan read p50 {} p99 {}; bare find_key_by_digest p50 {} p99 {}",
        N / 2,
        ms(percentile(&key_only, 50.0)),
        ms(percentile(&key_only, 99.0)),
        ms(percentile(&cold, 50.0)),
        ms(percentile(&cold, 99.0)),
        ms(percentile(&reads, 50.0)),
        ms(percentile(&reads, 99.0)),
    );
    c.stop().await;
}
