//! The load benchmark's server, started by `cargo xtask bench`: the same axum handler served
//! bare, answering with the headers a `KeywardLayer` response carries (static values), behind
//! tower-http's `ValidateRequestHeaderLayer::bearer`, and behind `KeywardLayer` sending all its
//! rate-limit headers, only the IETF draft's two, or none, on six ports of 127.0.0.1. Prints one
//! JSON line with the ports, a throwaway key and two key files (created for this run in a
//! temporary database and directory), then serves until stdin closes. The files list [`MANY`]
//! keys, one a line, for the many-keys runs: `keys` holds as many distinct valid keys, `mixed`
//! the same number with every tenth replaced by a well-formed key that was never issued.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::routing::get;
use keyward_core::{
    Actor, KeyEnvironment, KeyService, NewKey, NewWorkspace, Plan, PlanId, RateLimitHeaders, RateLimitPolicy,
    RateLimitWindow, Verifier,
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

/// `hello` with the headers a `KeywardLayer` response carries (the same names and lengths,
/// static values): what the larger response alone costs the server and the client.
async fn hello_with_headers() -> (HeaderMap, &'static str) {
    const HEADERS: [(&str, &str); 6] = [
        ("x-ratelimit-limit", "1000000"),
        ("x-ratelimit-remaining", "999999"),
        ("x-ratelimit-reset", "1796411330"),
        ("ratelimit-policy", "\"key-1s\";q=1000000;w=1, \"workspace-1s\";q=1000000;w=1"),
        ("ratelimit", "\"key-1s\";r=999999;t=1, \"workspace-1s\";r=999999;t=1"),
        ("x-request-id", "7a00ce53e847b5f8-00000021dd71"),
    ];
    let mut headers = HeaderMap::with_capacity(HEADERS.len() + 2);
    for (name, value) in HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    (headers, "ok")
}

async fn serve(router: Router) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(port)
}

// One worker thread: wrk gets the other core, so the variants compete for the same single
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
    let headers = serve(Router::new().route("/", get(hello_with_headers))).await?;
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
    // The same layer sending fewer rate-limit headers: only the IETF draft's two, and none.
    let layer = |sent| {
        let verifier = Verifier::builder(&service).rate_limit_headers(sent).build();
        KeywardLayer::new(verifier).require_scope("bench:read".parse().expect("scope"))
    };
    let ietf = serve(Router::new().route("/", get(hello)).layer(layer(RateLimitHeaders::Ietf))).await?;
    let hidden = serve(Router::new().route("/", get(hello)).layer(layer(RateLimitHeaders::None))).await?;
    let info = serde_json::json!({
        "bare": bare, "headers": headers, "bearer": bearer, "keyward": keyward, "ietf": ietf, "hidden": hidden, "key": key,
        "keys": keys_file, "mixed": mixed_file,
    });
    println!("{info}");

    // Serve until the parent closes stdin (or exits).
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    Ok(())
}
