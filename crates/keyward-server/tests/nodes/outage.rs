//! Node B loses PostgreSQL (its pool and its change feed connect through a proxy that the test
//! cuts): cached keys follow the store policy, everything else is a 503 `STORE_UNAVAILABLE`,
//! never a 500, and B recovers by itself once the database is back.

use std::time::Duration;

use keyward_core::testing::TcpProxy;
use keyward_store::testing::PgTestSchema;
use reqwest::{Method, StatusCode};

use sqlx::Connection;

use crate::support::{Cluster, DATABASE_TIMEOUT, TestNode, host_port, redis_url, via, within};

enum Policy {
    FailClosed,
    ServeStale,
}

async fn unavailable(
    node: &TestNode,
    method: Method,
    path: &str,
    key: &str,
    body: Option<serde_json::Value>,
) {
    let r = node.call(method, path, key, body).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
        "{path}: {}",
        r.body
    );
}

async fn database_outage(policy: Policy) {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let redis = redis_url();
    let proxy = TcpProxy::start(&host_port(schema.url())).await.expect("proxy");
    let proxied = via(schema.url(), proxy.addr());
    // FailClosed keeps keys cached for a minute; ServeStale caches for 300 ms, then serves what
    // it last read for up to a minute while the database is down.
    let c = Cluster::start(
        schema,
        redis.as_deref(),
        |a| a,
        |mut b| {
            b.database = proxied;
            if let Policy::ServeStale = policy {
                b.cache_ttl = Duration::from_millis(300);
                b.serve_stale = Some(Duration::from_secs(60));
            }
            b
        },
    )
    .await;
    let (_, cached) = c.key(|k| k).await;
    assert!(c.b.verify(&c.admin, &cached).await.valid(), "cached on B, with the admin key");
    let (uncached_id, uncached) = c.key(|k| k).await;
    let feed = c.b.node.feed.as_ref().expect("feed");
    assert!(feed.is_connected());

    proxy.cut();
    if let Policy::ServeStale = policy {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..3 {
        let r = c.b.verify(&c.admin, &cached).await;
        assert!(r.valid(), "a cached key keeps working: {}", r.body);
    }
    unavailable(&c.b, Method::POST, "/v1/verify", &c.admin, Some(serde_json::json!({ "key": uncached })))
        .await;
    unavailable(&c.b, Method::GET, "/v1/status", &uncached, None).await;
    unavailable(&c.b, Method::GET, "/v1/keys", &c.admin, None).await;
    unavailable(&c.b, Method::POST, &format!("/v1/keys/{uncached_id}/revoke"), &c.admin, None).await;
    within("B's feed notices the outage", Duration::from_secs(5), async || !feed.is_connected()).await;
    // Node A, on its own connection, is not affected.
    assert!(c.a.verify(&c.admin, &uncached).await.valid());

    proxy.restore();
    let (_, fresh) = c.key(|k| k).await;
    within("B reads the database again", Duration::from_secs(5), async || {
        let r =
            c.b.call(Method::POST, "/v1/verify", &c.admin, Some(serde_json::json!({ "key": fresh }))).await;
        r.status == StatusCode::OK && r.valid()
    })
    .await;
    let r = c.b.call(Method::GET, "/v1/keys", &c.admin, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    within("B's feed reconnects", Duration::from_secs(5), async || {
        feed.is_connected() && feed.connections() >= 2
    })
    .await;

    // The feed works again: a key B has cached, revoked through A, is refused by B (with
    // FailClosed's minute-long cache, nothing else could tell B).
    let (id, watched) = c.key(|k| k).await;
    assert!(c.b.verify(&c.admin, &watched).await.valid());
    let r = c.a.call(Method::POST, &format!("/v1/keys/{id}/revoke"), &c.admin, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    within("B hears of the revocation", Duration::from_secs(5), async || {
        c.b.verify(&c.admin, &watched).await.verdict_code() == "KEY_REVOKED"
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_closed_except_for_cached_keys_and_recovers() {
    database_outage(Policy::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_serves_stale_keys_when_configured_and_recovers() {
    database_outage(Policy::ServeStale).await;
}

/// A database that stops answering in the middle of a request (the network to it freezes;
/// nothing is closed, nothing arrives) makes that request a 503 `STORE_UNAVAILABLE` within the
/// database timeout, instead of a request that hangs for the whole outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_mid_request_is_a_503_within_the_timeout() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let proxy = TcpProxy::start(&host_port(schema.url())).await.expect("proxy");
    let proxied = via(schema.url(), proxy.addr());
    let (url, name) = (schema.url().to_owned(), schema.name().to_owned());
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
    // Generous: the point is that the request ends, not how fast.
    let bound = DATABASE_TIMEOUT + Duration::from_secs(3);
    let (id, _) = c.key(|k| k).await;
    let r = c.b.call(Method::GET, "/v1/status", &c.admin, None).await;
    assert_eq!(r.status, StatusCode::OK, "B has the admin key cached: {}", r.body);

    // Another session, not through the proxy, holds the key's row: B's revocation is in flight,
    // waiting in the database, when the network freezes.
    let mut locker = sqlx::PgConnection::connect(&url).await.expect("direct connection");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut locker).await.expect("pid");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET LOCAL search_path = \"{name}\"")))
        .execute(&mut *lock)
        .await
        .expect("search path");
    sqlx::query("SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE")
        .bind(&id)
        .fetch_one(&mut *lock)
        .await
        .expect("row lock");
    let mut watcher = sqlx::PgConnection::connect(&url).await.expect("direct connection");
    let path = format!("/v1/keys/{id}/revoke");
    let revoke = tokio::time::timeout(bound, c.b.call(Method::POST, &path, &c.admin, None));
    let freeze = async {
        within("B's revocation waits for the row", Duration::from_secs(5), async || {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(pid)
            .fetch_one(&mut watcher)
            .await
            .expect("activity");
            waiting > 0
        })
        .await;
        proxy.freeze();
        // The database answers now, but nothing reaches B.
        lock.rollback().await.expect("release the row");
    };
    let (revoked, ()) = tokio::join!(revoke, freeze);
    let r = revoked.expect("the request ends instead of hanging");
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"), "{}", r.body);

    proxy.thaw();
    within("B reads the database again", Duration::from_secs(5), async || {
        c.b.call(Method::GET, "/v1/keys", &c.admin, None).await.status == StatusCode::OK
    })
    .await;
    c.stop().await;
}
