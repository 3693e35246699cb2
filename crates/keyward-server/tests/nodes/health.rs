//! `/readyz` of a node whose PostgreSQL goes away: 503 naming the database and the change feed
//! while the database is cut off or stops answering, answered within its timeout either way,
//! and 200 again by itself once the database is back. The other node stays ready.

use std::time::{Duration, Instant};

use keyward_core::testing::TcpProxy;
use keyward_server::health::READY_TIMEOUT;
use keyward_store::testing::PgTestSchema;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Cluster, TestNode, host_port, via, within};

async fn readyz(node: &TestNode) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{}/readyz", node.base)).await.expect("request");
    (r.status(), r.json().await.expect("JSON body"))
}

fn ready() -> (StatusCode, Value) {
    let checks = json!({ "database": "ok", "migrations": "ok", "changeFeed": "ok" });
    (StatusCode::OK, json!({ "status": "ready", "checks": checks }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_database_is_away_and_recovers_by_itself() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let proxy = TcpProxy::start(&host_port(schema.url())).await.expect("proxy");
    let proxied = via(schema.url(), proxy.addr());
    let c = Cluster::start(
        schema,
        None,
        |a| a,
        |mut b| {
            b.database = proxied;
            b
        },
    )
    .await;
    assert_eq!(readyz(&c.b).await, ready());

    proxy.cut();
    let away = json!({ "database": "unreachable", "migrations": "unknown", "changeFeed": "disconnected" });
    within("B reports the database and its feed away", Duration::from_secs(5), async || {
        readyz(&c.b).await
            == (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "unavailable", "checks": away }))
    })
    .await;
    assert_eq!(readyz(&c.a).await, ready(), "A has its own connection");

    proxy.restore();
    within("B is ready again", Duration::from_secs(10), async || readyz(&c.b).await == ready()).await;

    // A database that stops answering: the check gives up within its timeout.
    proxy.freeze();
    let asked = Instant::now();
    let (status, body) = readyz(&c.b).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["database"], "unreachable", "{body}");
    assert!(asked.elapsed() < READY_TIMEOUT + Duration::from_secs(1), "answered in {:?}", asked.elapsed());
    proxy.thaw();
    within("B is ready again", Duration::from_secs(20), async || readyz(&c.b).await == ready()).await;
    c.stop().await;
}
