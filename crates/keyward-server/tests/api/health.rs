//! `/healthz` and `/readyz`: no key asked, not in the API document, and `/readyz` 503 while the
//! database cannot be read or lacks a migration, 200 again once it can.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::Server;

async fn get(url: String) -> (StatusCode, Value) {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    let status = r.status();
    assert!(r.headers().contains_key("x-request-id"), "every response has X-Request-Id");
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn health_checks_ask_for_no_key_and_readiness_follows_the_store() {
    let s = Server::start().await;
    assert_eq!(get(format!("{}/healthz", s.base)).await, (StatusCode::OK, json!({ "status": "ok" })));
    let ready = json!({ "status": "ready", "checks": { "database": "ok" } });
    assert_eq!(get(format!("{}/readyz", s.base)).await, (StatusCode::OK, ready.clone()));

    s.store.set_down(true);
    let down = json!({ "status": "unavailable", "checks": { "database": "unreachable" } });
    assert_eq!(get(format!("{}/readyz", s.base)).await, (StatusCode::SERVICE_UNAVAILABLE, down));
    assert_eq!(get(format!("{}/healthz", s.base)).await.0, StatusCode::OK, "the process is still alive");
    s.store.set_down(false);
    assert_eq!(get(format!("{}/readyz", s.base)).await, (StatusCode::OK, ready));
}

#[tokio::test]
async fn readiness_names_a_migration_the_database_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let config = keyward_server::serve::ServeConfig { database: url.clone(), ..Default::default() };
    let node = keyward_server::serve::node(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = node.app();
    tokio::spawn(async move {
        keyward_server::serve::serve_http(listener, app, Default::default(), std::future::pending()).await
    });
    let ready = json!({ "status": "ready", "checks": { "database": "ok", "migrations": "ok" } });
    assert_eq!(get(format!("{base}/readyz")).await, (StatusCode::OK, ready));

    let keyward_server::serve::Database::Sqlite(sqlite) = &node.database else { unreachable!() };
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
        .execute(sqlite.pool())
        .await
        .unwrap();
    let lacking =
        json!({ "status": "unavailable", "checks": { "database": "ok", "migrations": "1 not applied" } });
    assert_eq!(get(format!("{base}/readyz")).await, (StatusCode::SERVICE_UNAVAILABLE, lacking));
    node.shutdown().await.unwrap();
}

#[test]
fn health_and_metrics_routes_are_not_api_operations() {
    let doc = serde_json::to_value(keyward_server::openapi()).unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(doc["paths"].get(path).is_none(), "{path} is in the API document");
    }
}
