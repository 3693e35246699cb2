//! ```text
//! cargo run -p example-axum
//! ```
//!
//! An axum app whose `/v1/orders` route needs an API key with the `orders:read` scope, next to
//! an open `/health` route. On start it opens (or creates) the SQLite file
//! `keyward-example-axum.db` in the current directory, creates a workspace and a key, and prints
//! the key once together with a `curl` line to try it.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use keyward_core::{Actor, KeyService, NewKey, NewWorkspace, ScopeSet, Verifier};
use keyward_store::SqliteStore;
use keyward_tower::{KeywardLayer, VerifiedApiKey};
use tokio::net::TcpListener;

const ADDR: &str = "127.0.0.1:3000";

async fn orders(key: VerifiedApiKey) -> String {
    let remaining = key.rate_limit().tightest().map_or(0, |w| w.remaining);
    format!(
        "orders of workspace {}, read with key {} ({remaining} requests left in this window)\n",
        key.workspace_id(),
        key.key_id()
    )
}

async fn health() -> &'static str {
    "ok\n"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = SqliteStore::open("keyward-example-axum.db").await?;
    let service = KeyService::new(Arc::new(store));

    let workspace = service.create_workspace(NewWorkspace::live("Example"), &Actor::system()).await?;
    let scopes: ScopeSet = "orders:read".parse()?;
    let created = service
        .create_key(NewKey::new(workspace.id, "example-axum").with_scopes(scopes), &Actor::system())
        .await?;

    let listener = TcpListener::bind(ADDR).await?;
    let addr = listener.local_addr()?;
    println!("Your API key (it is shown once, now: keyward stores only its hash):");
    println!();
    println!("    {}", created.secret.expose_secret());
    println!();
    println!("Try it:");
    println!();
    println!(
        "    curl -i -H 'Authorization: Bearer {}' http://{addr}/v1/orders",
        created.secret.expose_secret()
    );
    println!("    curl -i http://{addr}/v1/orders    # 401 MISSING_API_KEY");
    println!();

    let keyward =
        KeywardLayer::new(Verifier::builder(&service).build()).require_scope("orders:read".parse()?);
    let app = Router::new()
        .route("/v1/orders", get(orders))
        // Routes above `route_layer` need a key; `/health` below stays open.
        .route_layer(keyward)
        .route("/health", get(health));
    println!("listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
