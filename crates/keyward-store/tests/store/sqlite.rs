//! What only the SQLite store has to show: its settings, its migrations, its file.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{NaiveDate, TimeZone, Utc};
use keyward_core::{
    Actor, ErrorCode, KeyFilter, KeyService, KeyStore, NewKey, NewWorkspace, Plan, StoreError, UsageDay,
    UsageRecorder,
};
use keyward_store::SqliteStore;

use crate::common::sqlite_file;

async fn pragma(store: &SqliteStore, name: &str) -> String {
    let sql = match name {
        "journal_mode" => "PRAGMA journal_mode",
        "foreign_keys" => "SELECT CAST(foreign_keys AS TEXT) FROM pragma_foreign_keys",
        "busy_timeout" => "SELECT CAST(timeout AS TEXT) FROM pragma_busy_timeout",
        other => panic!("no such pragma in this test: {other}"),
    };
    sqlx::query_scalar::<_, String>(sql).fetch_one(store.pool()).await.expect(name)
}

async fn migrations_applied(store: &SqliteStore) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(store.pool())
        .await
        .expect("migrations table")
}

#[tokio::test]
async fn wal_foreign_keys_and_busy_timeout_are_on() {
    let store_file = sqlite_file().await;
    assert_eq!(pragma(&store_file.inner, "journal_mode").await, "wal");
    assert_eq!(pragma(&store_file.inner, "foreign_keys").await, "1");
    assert_eq!(pragma(&store_file.inner, "busy_timeout").await, "5000");
    assert!(store_file.db_path().exists(), "the file is created when missing");
}

#[tokio::test]
async fn migrations_apply_on_open_and_reopening_is_idempotent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested.db");
    let path = path.to_str().expect("utf-8");
    let store = SqliteStore::open(path).await.expect("open");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name")
            .fetch_all(store.pool())
            .await
            .expect("tables");
    assert_eq!(
        tables,
        [
            "api_keys",
            "audit_events",
            "audit_heads",
            "changes",
            "plans",
            "sqlite_sequence",
            "usage_daily",
            "webhook_attempts",
            "webhook_deliveries",
            "webhook_endpoints",
            "webhook_events",
            "webhook_notices",
            "workspaces"
        ]
    );
    let applied = migrations_applied(&store).await;
    assert!(applied >= 1);

    let service = KeyService::new(Arc::new(store.clone()));
    let ws = service.create_workspace(NewWorkspace::live("Kept"), &Actor::system()).await.expect("workspace");
    let key = service.create_key(NewKey::new(ws.id, "kept"), &Actor::system()).await.expect("key").key;
    store.close().await;

    for _ in 0..2 {
        let again = SqliteStore::open(&format!("sqlite://{path}")).await.expect("reopen");
        assert_eq!(migrations_applied(&again).await, applied, "nothing applied twice");
        assert_eq!(again.get_key(key.id).await.expect("get"), Some(key.clone()), "data survives reopening");
        again.close().await;
    }
}

#[tokio::test]
async fn lookups_use_the_indexes() {
    let store_file = sqlite_file().await;
    let plan = |sql: &'static str| {
        let pool = store_file.inner.pool().clone();
        async move {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sql).bind("x").fetch_all(&pool).await.expect("explain");
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
        }
    };
    let by_digest = plan("EXPLAIN QUERY PLAN SELECT id FROM api_keys WHERE digest_hex = ?").await;
    assert!(by_digest.contains("api_keys_digest"), "{by_digest}");
    let by_workspace = plan(
        "EXPLAIN QUERY PLAN SELECT id FROM api_keys WHERE deleted_at IS NULL AND workspace_id = ? ORDER BY id DESC",
    )
    .await;
    assert!(by_workspace.contains("api_keys_workspace_id"), "{by_workspace}");
    assert!(!by_workspace.contains("TEMP B-TREE"), "listing must not sort: {by_workspace}");
    let unique: i64 = sqlx::query_scalar(
        "SELECT \"unique\" FROM pragma_index_list('api_keys') WHERE name = 'api_keys_digest'",
    )
    .fetch_one(store_file.inner.pool())
    .await
    .expect("index");
    assert_eq!(unique, 1);
}

#[tokio::test]
async fn the_database_files_never_hold_a_plaintext_key() {
    let store_file = sqlite_file().await;
    let store = store_file.store.clone();
    let service = KeyService::new(store.clone());
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("workspace");
    let created = service.create_key(NewKey::new(ws.id, "secret"), &Actor::system()).await.expect("key");
    let rotated = service.rotate_key(ws.id, created.key.id, None, &Actor::system()).await.expect("rotate");
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let file = format!("{}{suffix}", store_file.db_path().display());
        if let Ok(b) = std::fs::read(&file) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    let prefix = created.key.prefix.as_bytes();
    assert!(bytes.windows(prefix.len()).any(|w| w == prefix), "sanity: the display prefix is stored");
    for secret in [&created.secret, &rotated.secret] {
        let plain = secret.expose_secret().as_bytes();
        // Anything past the 12-character display prefix must not be in the files.
        let hidden = &plain[5..plain.len() - 4];
        assert!(!bytes.windows(hidden.len()).any(|w| w == hidden), "plaintext found in the database files");
    }
}

/// Uses are written behind: nothing per request, one batched write on shutdown.
#[tokio::test]
async fn usage_is_written_behind_in_one_batch() {
    let store_file = sqlite_file().await;
    let store = store_file.store.clone();
    let service = KeyService::new(store.clone());
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("workspace");
    let k1 = service.create_key(NewKey::new(ws.id, "k1"), &Actor::system()).await.expect("key").key;
    let k2 = service.create_key(NewKey::new(ws.id, "k2"), &Actor::system()).await.expect("key").key;

    let recorder = UsageRecorder::spawn(store.clone(), StdDuration::from_secs(3600));
    let (t1, t2) = (
        Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 3, 2, 11, 0, 0).unwrap(),
    );
    for i in 0..1000 {
        match i % 4 {
            0 => recorder.record(k2.id, t1),
            1 => recorder.record(k1.id, t2),
            _ => recorder.record(k1.id, t1),
        }
    }
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    assert_eq!(store.usage_writes(), 0, "no write per use");
    assert!(store.usage(k1.id, t1.date_naive(), t2.date_naive()).await.expect("usage").is_empty());

    recorder.shutdown().await.expect("flush on shutdown");
    assert_eq!(store.usage_writes(), 1, "one batched write");
    let (d1, d2) =
        (NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(), NaiveDate::from_ymd_opt(2025, 3, 2).unwrap());
    assert_eq!(
        store.usage(k1.id, d1, d2).await.expect("usage"),
        vec![
            UsageDay { key_id: k1.id, day: d1, count: 500 },
            UsageDay { key_id: k1.id, day: d2, count: 250 }
        ]
    );
    assert_eq!(
        store.usage(k2.id, d1, d2).await.expect("usage"),
        vec![UsageDay { key_id: k2.id, day: d1, count: 250 }]
    );
    assert_eq!(store.get_key(k1.id).await.expect("get").and_then(|k| k.last_used_at), Some(t2));
    assert_eq!(store.get_key(k2.id).await.expect("get").and_then(|k| k.last_used_at), Some(t1));
}

/// Two stores (two pools, as two processes would have) on one file share the key limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_limit_holds_across_connections_to_one_file() {
    let first_file = sqlite_file().await;
    let first = first_file.store.clone();
    let second =
        Arc::new(SqliteStore::open(first_file.db_path().to_str().expect("utf-8")).await.expect("open"));
    let sys = Actor::system();
    let a = KeyService::new(first.clone());
    let b = KeyService::new(second.clone());
    let plan = Plan { id: "max-4".into(), max_keys: Some(4), ..Plan::default_plan() };
    a.save_plan(plan, &sys).await.expect("plan");
    let ws =
        a.create_workspace(NewWorkspace::live("Shared").with_plan("max-4".into()), &sys).await.expect("ws");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let service = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(
                async move { service.create_key(NewKey::new(ws.id, "racer"), &Actor::system()).await },
            )
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::KeyLimitReached, "{e}"),
        }
    }
    assert_eq!(ok, 4);
    assert_eq!(b.list_keys(ws.id, KeyFilter::default()).await.expect("list").items.len(), 4);
    second.close().await;
}

#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let store_file = sqlite_file().await;
    let store = store_file.store.clone();
    let service = KeyService::new(store.clone());
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("workspace");
    store_file.inner.close().await;
    assert!(matches!(store.get_workspace(ws.id).await, Err(StoreError::Unavailable(_))));
    let err = service.get_workspace(ws.id).await.expect_err("closed");
    assert_eq!(err.code(), ErrorCode::StoreUnavailable);
}

#[tokio::test]
async fn in_memory_databases_work() {
    let store = SqliteStore::open("sqlite::memory:").await.expect("open");
    let service = KeyService::new(Arc::new(store.clone()));
    let ws =
        service.create_workspace(NewWorkspace::live("Ephemeral"), &Actor::system()).await.expect("workspace");
    let key = service.create_key(NewKey::new(ws.id, "k"), &Actor::system()).await.expect("key").key;
    assert_eq!(store.get_key(key.id).await.expect("get"), Some(key));
    store.close().await;
}

#[tokio::test]
async fn an_unopenable_path_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing-dir").join("keyward.db");
    let err =
        SqliteStore::open(path.to_str().expect("utf-8")).await.expect_err("parent directory is missing");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// Two processes on one file: a change made through one store handle reaches a verifier on
/// another through the change log, long before its cache TTL; changes of credits and last use
/// log nothing; a poller that fell behind the pruned log clears its whole cache.
#[tokio::test]
async fn the_change_log_carries_changes_to_other_handles_on_the_file() {
    use keyward_core::{Requirements, Verifier};
    use keyward_store::{ChangeLogConfig, ChangeLogPoller};

    let writer_file = sqlite_file().await;
    let writer = KeyService::new(writer_file.store.clone());
    let ws = writer.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("workspace");
    let created = writer.create_key(NewKey::new(ws.id, "k"), &Actor::system()).await.expect("key");
    let plain = created.secret.expose_secret().to_owned();

    // The "other process": its own handle on the file, its own service and verifier.
    let reader = SqliteStore::open(writer_file.db_path().to_str().expect("utf-8")).await.expect("open");
    let reader_service = KeyService::new(Arc::new(reader.clone()));
    let verifier = Verifier::builder(&reader_service).cache_ttl(StdDuration::from_secs(3600)).build();
    let config = ChangeLogConfig { interval: StdDuration::from_millis(10), ..ChangeLogConfig::default() };
    let poller = ChangeLogPoller::start_with(&reader, verifier.clone(), config).await.expect("poller");
    verifier.verify(&plain, &Requirements::default()).await.expect("valid, now cached");

    // Spending credits or recording use changes nothing a verifier caches: nothing is logged.
    let before = poller.last_seq();
    writer_file.store.consume_credits(created.key.id, 0).await.expect("credits");
    let mut batch = keyward_core::UsageBatch::default();
    batch.add(created.key.id, Utc::now());
    writer_file.store.record_usage(&batch).await.expect("usage");

    writer.revoke_key(ws.id, created.key.id, &Actor::system()).await.expect("revoke");
    let start = std::time::Instant::now();
    loop {
        match verifier.verify(&plain, &Requirements::default()).await {
            Err(e) if e.code() == ErrorCode::KeyRevoked => break,
            _ => assert!(start.elapsed() < StdDuration::from_secs(5), "the revocation never arrived"),
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert_eq!(poller.last_seq(), before + 1, "one change: the revocation");
    assert!(poller.is_healthy());

    poller.stop();

    // A poller that fell behind the pruned log: 10,100 changes between two of its polls.
    let slow = ChangeLogConfig { interval: StdDuration::from_secs(3600), ..ChangeLogConfig::default() };
    let behind = ChangeLogPoller::start_with(&reader, verifier.clone(), slow).await.expect("poller");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10100) \
         INSERT INTO changes (kind, ref) SELECT 'plan', 'p' FROM n",
    )
    .execute(writer_file.inner.pool())
    .await
    .expect("fill");
    behind.sync().await.expect("poll");
    assert_eq!(behind.full_clears(), 1, "the whole cache was cleared");
    let end: i64 =
        sqlx::query_scalar("SELECT MAX(seq) FROM changes").fetch_one(reader.pool()).await.expect("max");
    while behind.last_seq() < end {
        behind.sync().await.expect("poll");
    }
    assert_eq!(behind.full_clears(), 1, "and it caught up without clearing again");
}

#[tokio::test]
async fn store_calls_record_their_latency_and_their_errors() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    // This test's thread only: the calls are awaited here.
    let _local = metrics::set_default_local_recorder(&recorder);
    let file = sqlite_file().await;
    file.inner.list_plans().await.expect("plans");
    file.inner.close().await;
    let e = file.inner.list_plans().await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    let text = prometheus.render();
    let series = |s: &str| crate::common::metric(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        series(r#"keyward_store_operation_duration_seconds_count{backend="sqlite",operation="list_plans"}"#),
        2.0
    );
    assert_eq!(
        series(r#"keyward_store_errors_total{backend="sqlite",operation="list_plans",kind="unavailable"}"#),
        1.0
    );
}

/// Marking a key leaked, even by direct SQL, is logged for the verifiers on the file (migration
/// 0004 recreated the trigger with the leak columns); setting a column it does not list is not.
#[tokio::test]
async fn leak_marks_are_logged_in_the_change_log() {
    let file = sqlite_file().await;
    let service = KeyService::new(file.store.clone());
    let ws = service.create_workspace(NewWorkspace::live("Acme"), &Actor::system()).await.expect("workspace");
    let key = service.create_key(NewKey::new(ws.id, "k"), &Actor::system()).await.expect("key").key;
    let pool = file.inner.pool();
    let logged = async || -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM changes WHERE kind = 'key' AND ref = ?")
            .bind(key.hash.digest.to_hex())
            .fetch_one(pool)
            .await
            .expect("count")
    };
    let before = logged().await;
    for (i, sql) in [
        "UPDATE api_keys SET leaked_at = 1 WHERE id = ?",
        "UPDATE api_keys SET leak_source = 'https://example.com/leak' WHERE id = ?",
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(sql).bind(key.id.to_string()).execute(pool).await.expect("update");
        assert_eq!(logged().await, before + 1 + i as i64, "{sql}");
    }
    sqlx::query("UPDATE api_keys SET last_used_at = 5 WHERE id = ?")
        .bind(key.id.to_string())
        .execute(pool)
        .await
        .expect("update");
    assert_eq!(logged().await, before + 2, "last use is not logged");
}

#[tokio::test]
async fn unapplied_migrations_are_read_from_the_migrations_table() {
    let file = sqlite_file().await;
    let limit = StdDuration::from_secs(1);
    assert_eq!(file.inner.unapplied_migrations(limit).await.expect("read"), Vec::<i64>::new());
    let last: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(file.inner.pool())
        .await
        .expect("a migration");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?")
        .bind(last)
        .execute(file.inner.pool())
        .await
        .expect("forget it");
    assert_eq!(file.inner.unapplied_migrations(limit).await.expect("read"), vec![last]);
    file.inner.close().await;
    let e = file.inner.unapplied_migrations(limit).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn tampering_with_the_audit_log_is_found_at_the_right_event() {
    crate::audit_chain::tampering_is_found(
        async || {
            let file = crate::common::sqlite_file().await;
            (file.store.clone() as Arc<dyn keyward_core::KeyStore>, file)
        },
        async |file: &crate::common::SqliteFile, sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(file.inner.pool()).await.expect("tamper");
        },
    )
    .await;
}
