//! The load benchmark's server, started by `cargo xtask bench`: the same axum handler served
//! bare, behind tower-http's `ValidateRequestHeaderLayer::bearer`, and behind `KeywardLayer`, on
//! three ports of 127.0.0.1. Prints one JSON line with the ports, a throwaway key and two key
//! files (created for this run in a temporary database and directory), then serves until stdin
//! closes. The files list [`MANY`] keys, one a line, for the many-keys runs: `keys` holds as many
//! distinct valid keys, `mixed` the same number with every tenth replaced by a well-formed key
//! that was never issued.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use keyward_core::{
    Actor, KeyEnvironment, KeyService, NewKey, NewWorkspace, Plan, PlanId, RateLimitPolicy, RateLimitWindow,
    Verifier,
};
use keyward_tower::KeywardLayer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tower_http::validate_request::ValidateRequestHeaderLayer;

/// Keys in each key file.
const MANY: usize = 10_000;

async fn hello() -> &'static str {
    "ok"
}

async fn serve(router: Router) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(port)
}

// One worker thread: wrk gets the other core, so the three variants compete for the same single
// core and their ratio measures per-request cost rather than scheduler noise.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store =
        keyward_store::SqliteStore::open(&format!("sqlite://{}", dir.path().join("bench.db").display()))
            .await?;
    let service = KeyService::new(Arc::new(store));
    // Limits far above what loopback can reach, so every request takes the full path.
    let unlimited = RateLimitPolicy::new([RateLimitWindow::per_second(1_000_000)]);
    let plan = Plan { key_rate_limit: unlimited.clone(), ..Plan::default_plan() };
    let plan = service.save_plan(Plan { id: PlanId::from("bench"), ..plan }, &Actor::system()).await?;
    let mut ws = NewWorkspace::live("bench").with_plan(plan.id);
    ws.rate_limit = Some(unlimited);
    let ws = service.create_workspace(ws, &Actor::system()).await?;
    let created = service
        .create_key(NewKey::new(ws.id, "bench").with_scopes("bench:read".parse()?), &Actor::system())
        .await?;
    let key = created.secret.expose_secret().to_owned();
    let verifier = Verifier::builder(&service).build();

    // The many-keys runs spread requests over this many keys, so that hits are not one hot entry.
    let (mut keys, mut mixed) = (String::new(), String::new());
    for i in 0..MANY {
        let new = NewKey::new(ws.id, &format!("bench {i}")).with_scopes("bench:read".parse()?);
        let created = service.create_key(new, &Actor::system()).await?;
        let valid = created.secret.expose_secret();
        keys.push_str(valid);
        keys.push('\n');
        let unknown = service.format().generate(KeyEnvironment::Live);
        mixed.push_str(if i % 10 == 9 { unknown.expose_secret() } else { valid });
        mixed.push('\n');
    }
    let keys_file = dir.path().join("keys.txt");
    let mixed_file = dir.path().join("mixed.txt");
    std::fs::write(&keys_file, keys)?;
    std::fs::write(&mixed_file, mixed)?;

    let bare = serve(Router::new().route("/", get(hello))).await?;
    // The baseline the issue names: tower-http's (deprecated, deliberately minimal) bearer check.
    #[allow(deprecated)]
    let check = ValidateRequestHeaderLayer::bearer(&key);
    let bearer = serve(Router::new().route("/", get(hello)).layer(check)).await?;
    let keyward = serve(
        Router::new()
            .route("/", get(hello))
            .layer(KeywardLayer::new(verifier).require_scope("bench:read".parse()?)),
    )
    .await?;
    let info = serde_json::json!({
        "bare": bare, "bearer": bearer, "keyward": keyward, "key": key,
        "keys": keys_file, "mixed": mixed_file,
    });
    println!("{info}");

    // Serve until the parent closes stdin (or exits).
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    Ok(())
}
