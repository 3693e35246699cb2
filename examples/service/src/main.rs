//! ```text
//! # beside `keyward serve` on its embedded SQLite file (run both in one directory):
//! cargo run -p keyward-server --bin keyward -- serve
//! KEYWARD_URL=sqlite://keyward.db cargo run -p example-service
//!
//! # beside nodes sharing PostgreSQL:
//! KEYWARD_URL=postgres://user:password@db/keyward cargo run -p example-service
//!
//! # through a server, with no database credentials (a key with scope keys:verify):
//! KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_SERVICE_KEY=kw_live_... cargo run -p example-service
//! ```
//!
//! An axum service configured only by the environment: `KEYWARD_URL` (the database `keyward
//! serve` uses, `sqlite://path` or `postgres://...`, or the server itself, `http(s)://...`, with
//! `KEYWARD_SERVICE_KEY`), `BIND` (default `127.0.0.1:3000`). It
//! serves `GET /orders`, which needs a key with scope `orders:read` and answers JSON with the
//! caller's key id, and `GET /health`, open. Unknown paths stay 404: the layer is on the routes
//! (`route_layer`), not in front of the whole router.
//!
//! Give it a key through `keyward serve`'s API (or `keyward root-key --reset` for a first one),
//! e.g. `curl -X POST http://127.0.0.1:8080/v1/keys -H "Authorization: Bearer $ROOT"
//! -H 'Content-Type: application/json' -d '{"name": "orders client", "scopes": ["orders:read"]}'`.
//! A key revoked there is refused here within a fraction of a second; its use here shows as
//! `lastUsedAt` and daily usage there.

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use keyward::tower::VerifiedApiKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn orders(key: VerifiedApiKey) -> Json<Value> {
    Json(
        json!({ "orders": [], "keyId": key.key_id().to_string(), "workspaceId": key.workspace_id().to_string() }),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("KEYWARD_URL").context(
        "set KEYWARD_URL to the database keyward serve uses, or to the server (with KEYWARD_SERVICE_KEY)",
    )?;
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let keyward = keyward::connect(&url).await.with_context(|| format!("connecting to {url}"))?;
    let app = Router::new()
        .route("/orders", get(orders))
        .route_layer(keyward.layer().require_scope("orders:read".parse()?))
        .route("/health", get(health));
    let listener = TcpListener::bind(&bind).await.with_context(|| format!("binding {bind}"))?;
    eprintln!("example-service listening on {}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    // Usage not yet written reaches the database before the process ends.
    keyward.shutdown().await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
