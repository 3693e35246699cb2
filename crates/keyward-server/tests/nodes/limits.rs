//! Rate limits shared by the nodes through Redis, and what happens when Redis is cut.

use std::time::Duration;

use keyward_core::RateLimitPolicy;
use keyward_core::RateLimitWindow;
use keyward_core::testing::TcpProxy;
use keyward_store::testing::PgTestSchema;
use reqwest::{Method, StatusCode};

use crate::support::{Cluster, TestNode, host_port, redis_url, via, within};

/// Sends `n` requests with `key`, alternating between the nodes; returns how many each admitted.
/// Every refusal is a 429 `RATE_LIMITED`: never a 5xx.
async fn alternate(nodes: [&TestNode; 2], key: &str, n: usize) -> [usize; 2] {
    let mut admitted = [0; 2];
    for i in 0..n {
        let r = nodes[i % 2].call(Method::GET, "/v1/status", key, None).await;
        match r.status {
            StatusCode::OK => admitted[i % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => assert_eq!(r.code(), "RATE_LIMITED"),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    admitted
}

fn per_minute(n: u32) -> Option<RateLimitPolicy> {
    Some(RateLimitPolicy::new([RateLimitWindow::per_minute(n)]))
}

/// A limit of N a minute admits N requests across both nodes, not N on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_is_shared_by_the_nodes() {
    let (Some(schema), Some(redis)) = (PgTestSchema::from_env(), redis_url()) else { return };
    let c = Cluster::start(schema, Some(&redis), |a| a, |b| b).await;
    const N: u32 = 20;
    let (_, key) = c.key(|k| keyward_core::NewKey { rate_limit: per_minute(N), ..k }).await;
    let admitted = alternate([&c.a, &c.b], &key, 3 * N as usize).await;
    eprintln!(
        "shared limit of {N}/min over 2 nodes, {} alternating requests: admitted {} (A {}, B {})",
        3 * N,
        admitted[0] + admitted[1],
        admitted[0],
        admitted[1]
    );
    assert_eq!(admitted[0] + admitted[1], N as usize, "N in total, not 2N");
    assert!(admitted[0] > 0 && admitted[1] > 0, "both nodes admitted some: {admitted:?}");
    c.stop().await;
}

/// With Redis cut, each node limits locally (a 429 at its own N, never a 5xx); once Redis is
/// back the limit is shared again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_to_local_limits_and_recovers() {
    let (Some(schema), Some(redis)) = (PgTestSchema::from_env(), redis_url()) else { return };
    let proxy = TcpProxy::start(&host_port(&redis)).await.expect("proxy");
    let proxied = via(&redis, proxy.addr());
    let c = Cluster::start(schema, Some(&proxied), |a| a, |b| b).await;
    const N: usize = 5;
    let (_, key) = c.key(|k| keyward_core::NewKey { rate_limit: per_minute(N as u32), ..k }).await;
    assert_eq!(alternate([&c.a, &c.b], &key, 2).await, [1, 1], "shared through Redis: 2 of 5 spent");

    proxy.cut();
    for node in [&c.a, &c.b] {
        let admitted = alternate([node, node], &key, 2 * N).await;
        assert_eq!(admitted[0] + admitted[1], N, "each node applies the limit itself while Redis is away");
        assert!(node.node.limiter.as_ref().expect("limiter").in_outage());
    }

    proxy.restore();
    for node in [&c.a, &c.b] {
        let limiter = node.node.limiter.as_ref().expect("limiter");
        within("the limiter returns to Redis", Duration::from_secs(5), async || {
            node.call(Method::GET, "/v1/status", &c.admin, None).await;
            !limiter.in_outage()
        })
        .await;
    }
    let (_, fresh) = c.key(|k| keyward_core::NewKey { rate_limit: per_minute(N as u32), ..k }).await;
    let admitted = alternate([&c.a, &c.b], &fresh, 3 * N).await;
    assert_eq!(admitted[0] + admitted[1], N, "shared again after recovery: {admitted:?}");
    c.stop().await;
}
