//! The PostgreSQL store against the database `KEYWARD_TEST_POSTGRES_URL` names (each case on a
//! schema of its own): the whole contract suite, then what only PostgreSQL has to show: schema
//! isolation, migrations, indexes, error mapping, the change notifications and the change feed.
//! Unset, every case prints that it was skipped; set but unreachable, every case fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use keyward_core::testing::TcpProxy;
use keyward_core::{
    Actor, ErrorCode, KeyPatch, KeyService, KeyStore, NewKey, NewWorkspace, Plan, Requirements, StoreError,
    UsageBatch, Verifier, WorkspacePatch,
};
use keyward_store::testing::{PgTestSchema, PgTestStore};

use crate::common::{global_metrics, metric};
use keyward_store::{ChangeFeed, ChangeFeedConfig, PgStore, PgStoreOptions};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};

mod contract {
    keyward_store::keyward_store_contract!(optional keyward_store::testing::PgTestStore::from_env());
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    url.replacen(&host_port(url), &addr.to_string(), 1)
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ok().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn tables_live_in_their_own_schema_and_migrations_apply_once() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let store = schema.open().await;
    assert_eq!(store.schema(), schema.name());
    assert_eq!(store.channel(), format!("keyward_{}", schema.name()));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
         AND table_name NOT LIKE '\\_%' ORDER BY table_name",
    )
    .bind(schema.name())
    .fetch_all(store.pool())
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "api_keys",
            "audit_events",
            "audit_heads",
            "plans",
            "usage_daily",
            "webhook_attempts",
            "webhook_deliveries",
            "webhook_endpoints",
            "webhook_events",
            "webhook_notices",
            "workspaces"
        ]
    );
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _keyward_migrations WHERE success")
        .fetch_one(store.pool())
        .await
        .expect("migrations");
    assert!(applied >= 1);

    let service = KeyService::new(Arc::new(store.clone()));
    let ws = service.create_workspace(NewWorkspace::live("Kept"), &Actor::system()).await.expect("ws");
    let key = service.create_key(NewKey::new(ws.id, "kept"), &Actor::system()).await.expect("key").key;
    // Nodes opening the same schema together: migrations run once, data is shared.
    let (a, b) = tokio::join!(schema.open(), schema.open());
    for again in [&a, &b] {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _keyward_migrations WHERE success")
            .fetch_one(again.pool())
            .await
            .expect("migrations");
        assert_eq!(n, applied, "nothing applied twice");
        assert_eq!(again.get_key(key.id).await.expect("get"), Some(key.clone()));
    }

    // Another schema in the same database sees none of it.
    let Some(other) = PgTestSchema::from_env() else { unreachable!() };
    let other = other.open().await;
    assert_eq!(other.get_key(key.id).await.expect("get"), None);
    assert!(other.list_workspaces().await.expect("list").is_empty());
    assert_ne!(other.channel(), store.channel());

    // What readiness checks read: nothing unapplied, until a migration's record goes missing.
    let limit = Duration::from_secs(1);
    assert_eq!(store.unapplied_migrations(limit).await.expect("read"), Vec::<i64>::new());
    let last: i64 = sqlx::query_scalar(
        "DELETE FROM _keyward_migrations WHERE version = \
         (SELECT MAX(version) FROM _keyward_migrations) RETURNING version",
    )
    .fetch_one(store.pool())
    .await
    .expect("forget the last migration");
    assert_eq!(store.unapplied_migrations(limit).await.expect("read"), vec![last]);
}

#[tokio::test]
async fn ids_sort_bytewise_and_lookups_use_the_indexes() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let store = schema.open().await;
    let collations: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT column_name::text, collation_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'api_keys' AND column_name IN ('id', 'workspace_id', 'digest_hex') \
         ORDER BY column_name",
    )
    .bind(schema.name())
    .fetch_all(store.pool())
    .await
    .expect("columns");
    assert_eq!(collations.len(), 3);
    assert!(collations.iter().all(|(_, c)| c.as_deref() == Some("C")), "{collations:?}");

    let mut tx = store.pool().begin().await.expect("begin");
    // The tables are tiny: make the planner show whether an index can serve the query at all.
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.expect("set");
    let mut explain = async |sql: &str| -> String {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
            .fetch_all(&mut *tx)
            .await
            .expect("explain");
        rows.join("\n")
    };
    let by_digest = explain("SELECT id FROM api_keys WHERE digest_hex = 'x'").await;
    assert!(by_digest.contains("api_keys_digest"), "{by_digest}");
    let page = explain(
        "SELECT id FROM api_keys WHERE deleted_at IS NULL AND workspace_id = 'w' AND id < 'z' ORDER BY id DESC LIMIT 10",
    )
    .await;
    assert!(
        page.contains("api_keys_workspace_id") && !page.contains("Sort"),
        "listing must not sort: {page}"
    );
    // Now, not when the pool next uses the connection: its locks would keep the schema alive.
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let Some(url) = keyward_core::testing::service_url("KEYWARD_TEST_POSTGRES_URL") else { return };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let options = PgStoreOptions { acquire_timeout: Duration::from_secs(2), ..PgStoreOptions::default() };
    let err = PgStore::open_with(&via(&url, closed), options).await.expect_err("nothing listens there");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    // A store whose connection is cut while it runs.
    let Some(schema) = PgTestSchema::from_env() else { unreachable!() };
    schema.open().await;
    let proxy = TcpProxy::start(&host_port(&url)).await.expect("proxy");
    let options = PgStoreOptions {
        acquire_timeout: Duration::from_secs(2),
        ..PgStoreOptions::default().schema(schema.name())
    };
    let store = PgStore::open_with(&via(&url, proxy.addr()), options).await.expect("open through the proxy");
    let service = KeyService::new(Arc::new(store.clone()));
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("ws");
    proxy.cut();
    let started = Instant::now();
    for _ in 0..3 {
        let err = store.get_workspace(ws.id).await.expect_err("cut");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "failures are reported promptly");
    proxy.restore();
    wait_for("the store to recover", Duration::from_secs(5), async || {
        store.get_workspace(ws.id).await.is_ok()
    })
    .await;
}

/// A database that stops answering while a call is in flight (the network freezes: nothing is
/// closed, nothing arrives) fails that call with `Unavailable` within the query timeout instead
/// of holding it for the whole outage, and so do the calls after it, more of them than the pool
/// has connections; the store recovers once the database answers again.
#[tokio::test]
async fn a_database_that_stops_answering_mid_query_is_unavailable_within_the_timeout() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    schema.open().await;
    let proxy = TcpProxy::start(&host_port(schema.url())).await.expect("proxy");
    let limit = Duration::from_secs(1);
    // Generous: the point is that calls end, not how fast.
    let bound = limit + Duration::from_secs(3);
    let options = PgStoreOptions {
        max_connections: 2,
        acquire_timeout: limit,
        query_timeout: limit,
        ..PgStoreOptions::default().schema(schema.name())
    };
    let store =
        PgStore::open_with(&via(schema.url(), proxy.addr()), options).await.expect("open through the proxy");
    let service = KeyService::new(Arc::new(store.clone()));
    let sys = Actor::system();
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &sys).await.expect("ws");
    let key = service.create_key(NewKey::new(ws.id, "k"), &sys).await.expect("key").key;

    // Another session, not through the proxy, holds the key's row: the revocation's UPDATE is
    // in flight, waiting in the database, when the network freezes.
    let mut locker = PgConnection::connect(schema.url()).await.expect("direct connection");
    let locker_pid: i32 =
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut locker).await.expect("pid");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET LOCAL search_path = \"{}\"", schema.name())))
        .execute(&mut *lock)
        .await
        .expect("search path");
    sqlx::query("SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE")
        .bind(key.id.to_string())
        .fetch_one(&mut *lock)
        .await
        .expect("row lock");
    let revoking = tokio::spawn({
        let service = service.clone();
        async move { service.revoke_key(ws.id, key.id, &Actor::system()).await }
    });
    let mut watcher = PgConnection::connect(schema.url()).await.expect("direct connection");
    wait_for("the revocation to wait for the row", Duration::from_secs(5), async || {
        let waiting: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))")
                .bind(locker_pid)
                .fetch_one(&mut watcher)
                .await
                .expect("activity");
        waiting > 0
    })
    .await;
    proxy.freeze();
    // The database answers now, but nothing reaches the store.
    lock.rollback().await.expect("release the row");
    let revoked =
        tokio::time::timeout(bound, revoking).await.expect("the call in flight ends").expect("task");
    let err = revoked.expect_err("no answer came back");
    assert_eq!(err.code(), ErrorCode::StoreUnavailable, "{err:?}");

    for _ in 0..3 {
        let call = tokio::time::timeout(bound, store.get_workspace(ws.id)).await.expect("a later call ends");
        assert!(matches!(call, Err(StoreError::Unavailable(_))), "{call:?}");
    }
    proxy.thaw();
    wait_for("the store to recover", Duration::from_secs(5), async || {
        store.get_workspace(ws.id).await.is_ok()
    })
    .await;
}

/// The query timeout is each session's `statement_timeout` and
/// `idle_in_transaction_session_timeout` too: the database stops what the store gave up on.
#[tokio::test]
async fn sessions_stop_statements_past_the_query_timeout() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    schema.open().await;
    let options = PgStoreOptions {
        query_timeout: Duration::from_millis(500),
        ..PgStoreOptions::default().schema(schema.name())
    };
    let store = PgStore::open_with(schema.url(), options).await.expect("open");
    let settings: (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')",
    )
    .fetch_one(store.pool())
    .await
    .expect("settings");
    assert_eq!(settings, ("500ms".to_owned(), "500ms".to_owned()));
    let err = sqlx::query("SELECT pg_sleep(10)").execute(store.pool()).await.expect_err("cancelled");
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    // query_canceled: class 57, which the store reports as `Unavailable`.
    assert_eq!(code.as_deref(), Some("57014"), "{err}");
}

/// Every change a verifier may have cached is announced on the schema's channel when it
/// commits, and only then; credits and usage are not announced.
#[tokio::test]
async fn changes_are_announced_on_commit() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let store = schema.open().await;
    let mut listener = PgListener::connect(schema.url()).await.expect("listener");
    listener.listen(store.channel()).await.expect("listen");
    let service = KeyService::new(Arc::new(store.clone()));
    let sys = Actor::system();
    let mut next = async || -> Option<String> {
        match tokio::time::timeout(Duration::from_millis(300), listener.recv()).await {
            Ok(n) => Some(n.expect("notification").payload().to_owned()),
            Err(_) => None,
        }
    };

    let ws = service.create_workspace(NewWorkspace::live("Acme"), &sys).await.expect("ws");
    let created =
        service.create_key(NewKey { credits: Some(10), ..NewKey::new(ws.id, "k") }, &sys).await.expect("key");
    let key = created.key;
    assert_eq!(next().await, None, "creations are not announced: nothing can have cached them");

    let hex = key.hash.digest.to_hex();
    service
        .update_key(ws.id, key.id, KeyPatch { name: Some("renamed".into()), ..KeyPatch::default() }, &sys)
        .await
        .expect("update");
    assert_eq!(next().await.as_deref(), Some(hex.as_str()));
    service.revoke_key(ws.id, key.id, &sys).await.expect("revoke");
    assert_eq!(next().await.as_deref(), Some(hex.as_str()));

    let live = service
        .create_key(NewKey { credits: Some(10), ..NewKey::new(ws.id, "live") }, &sys)
        .await
        .expect("key")
        .key;
    store.consume_credits(live.id, 1).await.expect("credits");
    let mut batch = UsageBatch::default();
    batch.add(live.id, chrono::Utc::now());
    store.record_usage(&batch).await.expect("usage");
    assert_eq!(next().await, None, "credits and usage are not announced");

    let patch = WorkspacePatch { name: Some("Renamed".into()), ..WorkspacePatch::default() };
    service.update_workspace(ws.id, patch, &sys).await.expect("update ws");
    assert_eq!(next().await, Some(format!("workspace:{}", ws.id)));
    service.save_plan(Plan { name: "Changed".into(), ..Plan::default_plan() }, &sys).await.expect("plan");
    assert_eq!(next().await.as_deref(), Some("plan:default"));

    // A rolled-back change announces nothing.
    let mut tx = store.pool().begin().await.expect("begin");
    sqlx::query("UPDATE api_keys SET status = 'inactive', version = version + 1 WHERE id = $1")
        .bind(live.id.to_string())
        .execute(&mut *tx)
        .await
        .expect("update");
    tx.rollback().await.expect("rollback");
    assert_eq!(next().await, None);
    // An operator's own SQL is announced like keyward's.
    sqlx::query("UPDATE api_keys SET status = 'inactive' WHERE id = $1")
        .bind(live.id.to_string())
        .execute(store.pool())
        .await
        .expect("update");
    assert_eq!(next().await, Some(live.hash.digest.to_hex()));
    // The refill settings decide verifications and are announced; a refill itself is not.
    sqlx::query("UPDATE api_keys SET refilled_at = 1, credits = 5 WHERE id = $1")
        .bind(live.id.to_string())
        .execute(store.pool())
        .await
        .expect("update");
    assert_eq!(next().await, None, "a refill is not announced");
    sqlx::query(r#"UPDATE api_keys SET refill = '{"interval":"daily","amount":5}' WHERE id = $1"#)
        .bind(live.id.to_string())
        .execute(store.pool())
        .await
        .expect("update");
    assert_eq!(next().await, Some(live.hash.digest.to_hex()), "a refill setting is announced");
    // A leak mark is announced (migration 0004 added its columns to the trigger).
    for sql in [
        "UPDATE api_keys SET leaked_at = 1 WHERE id = $1",
        "UPDATE api_keys SET leak_source = 'https://example.com/leak' WHERE id = $1",
    ] {
        sqlx::query(sql).bind(live.id.to_string()).execute(store.pool()).await.expect("update");
        assert_eq!(next().await, Some(live.hash.digest.to_hex()), "{sql}");
    }
}

/// A node's verifier drops what it cached when another node changes it, through the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_invalidates_another_nodes_cache() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let (a, b) = (schema.open().await, schema.open().await);
    let node_a = KeyService::new(Arc::new(a.clone()));
    let node_b = KeyService::new(Arc::new(b.clone()));
    let verifier = Verifier::builder(&node_b).cache_ttl(Duration::from_secs(600)).build();
    let feed = ChangeFeed::start(&b, verifier.clone()).await.expect("feed");
    assert!(feed.is_connected());
    assert_eq!(feed.connections(), 1);

    let sys = Actor::system();
    let ws = node_a.create_workspace(NewWorkspace::live("Acme"), &sys).await.expect("ws");
    let created = node_a.create_key(NewKey::new(ws.id, "k"), &sys).await.expect("key");
    let plain = created.secret.expose_secret().to_owned();
    let req = Requirements::default();
    verifier.verify(&plain, &req).await.expect("valid and now cached on B");

    node_a.deactivate_key(ws.id, created.key.id, &sys).await.expect("deactivate on A");
    wait_for("B to refuse the key", Duration::from_secs(5), async || {
        verifier.verify(&plain, &req).await.is_err()
    })
    .await;
    assert!(feed.notifications() >= 1);

    // A plan change drops everything: the plan below withdraws API access.
    node_a.activate_key(ws.id, created.key.id, &sys).await.expect("activate");
    wait_for("B to accept the key again", Duration::from_secs(5), async || {
        verifier.verify(&plain, &req).await.is_ok()
    })
    .await;
    node_a.save_plan(Plan { api_access: false, ..Plan::default_plan() }, &sys).await.expect("plan");
    wait_for("B to apply the plan", Duration::from_secs(5), async || {
        verifier.verify(&plain, &req).await.is_err()
    })
    .await;
}

/// Two nodes (two store handles, two verifiers with cached copies of the key) spending a key's
/// credits in a new period: the key is refilled once, by one of them, audited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_refill_a_key_once_per_period() {
    use chrono::TimeZone;
    use keyward_core::{AuditAction, AuditQuery, CreditRefill, ManualClock, RefillInterval};
    let Some(schema) = PgTestSchema::from_env() else { return };
    let (a, b) = (schema.open().await, schema.open().await);
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2027, 1, 31, 12, 0, 0).unwrap()));
    let node_a = KeyService::new(Arc::new(a.clone())).with_clock(clock.clone());
    let node_b = KeyService::new(Arc::new(b.clone())).with_clock(clock.clone());
    let sys = Actor::system();
    let ws = node_a.create_workspace(NewWorkspace::live("Acme"), &sys).await.expect("ws");
    let refill = CreditRefill { interval: RefillInterval::Monthly, amount: 30, day: Some(31) };
    let new = NewKey { credits: Some(0), refill: Some(refill), ..NewKey::new(ws.id, "metered") };
    let created = node_a.create_key(new, &sys).await.expect("key");
    let plain = created.secret.expose_secret().to_owned();
    let verifiers = [&node_a, &node_b].map(|n| Verifier::builder(n).clock(clock.clone()).build());
    let req = Requirements { cost: 1, ..Requirements::default() };
    for v in &verifiers {
        let e = v.verify(&plain, &req).await.expect_err("no credits in January");
        assert_eq!(e.code(), ErrorCode::InsufficientCredits);
    }

    let feb_28 = chrono::Utc.with_ymd_and_hms(2027, 2, 28, 0, 0, 1).unwrap(); // no Feb 31: Feb 28
    clock.advance(feb_28 - keyward_core::Clock::now(&*clock));
    let spends: Vec<_> = (0..20)
        .map(|i| {
            let (v, plain, req) = (verifiers[i % 2].clone(), plain.clone(), req.clone());
            tokio::spawn(async move { v.verify(&plain, &req).await.is_ok() })
        })
        .collect();
    let mut passed = 0;
    for s in spends {
        passed += usize::from(s.await.expect("task"));
    }
    assert_eq!(passed, 20, "the refill came first on whichever node served first");
    let stored = b.get_key(created.key.id).await.expect("get").expect("key");
    assert_eq!(stored.credits, Some(10), "refilled to 30 once, then 20 spent");
    let q = AuditQuery {
        key_id: Some(created.key.id),
        action: Some(AuditAction::KeyCreditsRefilled),
        limit: 10,
        ..AuditQuery::default()
    };
    assert_eq!(a.list_audit(&q).await.expect("audit").len(), 1, "one node refilled and audited");
}

/// When the feed's connection drops it reconnects by itself, and then forgets everything it
/// cached, since notifications sent meanwhile were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reconnects_and_then_clears_the_cache() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let direct = schema.open().await;
    let proxy = TcpProxy::start(&host_port(schema.url())).await.expect("proxy");
    let proxied =
        PgStore::open_in_schema(&via(schema.url(), proxy.addr()), schema.name()).await.expect("open");
    let writer = KeyService::new(Arc::new(direct.clone()));
    let reader = KeyService::new(Arc::new(proxied.clone()));
    let verifier = Verifier::builder(&reader).cache_ttl(Duration::from_secs(600)).build();
    let config = ChangeFeedConfig {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..ChangeFeedConfig::default()
    };
    let prometheus = global_metrics();
    let feed = ChangeFeed::start_with(&proxied, verifier.clone(), config).await.expect("feed");
    let status = feed.status();
    // This test's series: the channel is the schema's.
    let series = |name: &str| format!("{name}{{channel=\"{}\"}}", feed.channel());
    let read = |name: &str| metric(&prometheus.render(), &series(name));
    assert_eq!(read("keyward_change_feed_connected"), Some(1.0));
    let heard = read("keyward_change_feed_confirmed_timestamp_seconds").expect("confirmed");

    let sys = Actor::system();
    let ws = writer.create_workspace(NewWorkspace::live("Acme"), &sys).await.expect("ws");
    let created = writer.create_key(NewKey::new(ws.id, "k"), &sys).await.expect("key");
    let plain = created.secret.expose_secret().to_owned();
    let req = Requirements::default();
    verifier.verify(&plain, &req).await.expect("cached");

    proxy.cut();
    wait_for("the feed to notice", Duration::from_secs(5), async || !feed.is_connected()).await;
    assert!(!status.is_connected(), "the status handle sees what the feed sees");
    assert_eq!(read("keyward_change_feed_connected"), Some(0.0));
    assert_eq!(read("keyward_change_feed_reconnections_total"), None);
    // Revoked while the feed is away: its notification is lost.
    writer.revoke_key(ws.id, created.key.id, &sys).await.expect("revoke");
    tokio::time::sleep(Duration::from_millis(100)).await;
    verifier.verify(&plain, &req).await.expect("still cached: the change could not be heard");

    proxy.restore();
    wait_for("the feed to reconnect", Duration::from_secs(5), async || feed.connections() == 2).await;
    assert!(feed.is_connected() && status.is_connected());
    assert_eq!(read("keyward_change_feed_connected"), Some(1.0));
    assert_eq!(read("keyward_change_feed_reconnections_total"), Some(1.0));
    let err = verifier.verify(&plain, &req).await.expect_err("the cache was cleared on reconnecting");
    assert_eq!(err.code(), keyward_core::ErrorCode::KeyRevoked);

    // And it hears new changes again.
    let second = writer.create_key(NewKey::new(ws.id, "k2"), &sys).await.expect("key");
    let plain2 = second.secret.expose_secret().to_owned();
    verifier.verify(&plain2, &req).await.expect("cached");
    writer.revoke_key(ws.id, second.key.id, &sys).await.expect("revoke");
    wait_for("the feed to deliver", Duration::from_secs(5), async || {
        verifier.verify(&plain2, &req).await.is_err()
    })
    .await;
    let received = read("keyward_change_feed_notifications_total").expect("notifications counted");
    assert_eq!(received, feed.notifications() as f64);
    assert!(read("keyward_change_feed_confirmed_timestamp_seconds").expect("confirmed") > heard);
}

/// Nodes flushing usage for the same keys at once wait for each other, never deadlock, and
/// every use is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_usage_flushes_from_two_nodes_add_up() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let (a, b) = (schema.open().await, schema.open().await);
    let service = KeyService::new(Arc::new(a.clone()));
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("ws");
    let mut keys = Vec::new();
    for i in 0..20 {
        keys.push(
            service
                .create_key(NewKey::new(ws.id, &format!("k{i}")), &Actor::system())
                .await
                .expect("key")
                .key
                .id,
        );
    }
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2025, 1, 15, 12, 0, 0).single().expect("time");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let keys = keys.clone();
            tokio::spawn(async move {
                let mut batch = UsageBatch::default();
                // Each batch lists the keys in another order, as HashMaps do.
                for k in keys.iter().cycle().skip(i * 7).take(keys.len()) {
                    batch.add(*k, now - chrono::Duration::milliseconds(i as i64));
                }
                store.record_usage(&batch).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("no deadlock, no error");
    }
    for k in keys {
        let days = a.usage(k, now.date_naive(), now.date_naive()).await.expect("usage");
        assert_eq!(days.iter().map(|d| d.count).sum::<u64>(), 12);
        assert_eq!(
            a.get_key(k).await.expect("get").expect("key").last_used_at.map(|t| t.timestamp_millis()),
            Some(now.timestamp_millis())
        );
    }
}

/// `with_lock` lets one node at a time run a piece of work, across pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_exclude_other_nodes() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let (a, b) = (schema.open().await, schema.open().await);
    let inside = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (inside, most) = (inside.clone(), most.clone());
            tokio::spawn(async move {
                store
                    .with_lock("test", async {
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("lock");
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two holders at once");
    // Locks are scoped to the schema: another schema's holder does not wait.
    let Some(other) = PgTestSchema::from_env() else { unreachable!() };
    let other = other.open().await;
    a.with_lock("test", async {
        tokio::time::timeout(Duration::from_secs(2), other.with_lock("test", async {}))
            .await
            .expect("not blocked by another schema")
            .expect("lock");
    })
    .await
    .expect("lock");
}

/// The contract factory itself: a fresh schema per store, dropped afterwards.
#[tokio::test]
async fn test_schemas_are_dropped() {
    let Some(schema) = PgTestSchema::from_env() else { return };
    let (name, url) = (schema.name().to_owned(), schema.url().to_owned());
    let test = PgTestStore::on(schema).await;
    test.list_plans().await.expect("the schema exists while the store lives");
    drop(test);
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_catalog.pg_namespace WHERE nspname = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn tampering_with_the_audit_log_is_found_at_the_right_event() {
    if PgTestSchema::from_env().is_none() {
        return;
    }
    crate::audit_chain::tampering_is_found(
        async || {
            // The schema lives as long as its handle.
            let schema = PgTestSchema::from_env().expect("set");
            let store = schema.open().await;
            (Arc::new(store.clone()) as Arc<dyn KeyStore>, (schema, store))
        },
        async |(_, store): &(PgTestSchema, PgStore), sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await.expect("tamper");
        },
    )
    .await;
}
