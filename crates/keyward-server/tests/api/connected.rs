//! One connected product: `keyward serve` in its own process on an SQLite file, and a service in
//! this one protected by the layer that `keyward::connect` builds, on the same file or through
//! the server (remote mode, with a service key). Whatever the server changes, the service sees
//! within the propagation bound; what the service does, the server reports.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use keyward::tower::VerifiedApiKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::binary::{start, start_on, terminate};

/// The service: `/orders` needs `orders:read`; `/health` is open.
async fn service(url: &str) -> (String, keyward::Keyward) {
    service_with(keyward::Connect::new(url)).await
}

async fn service_with(connect: keyward::Connect) -> (String, keyward::Keyward) {
    let keyward = connect.usage_flush(Duration::from_millis(50)).build().await.expect("connect");
    let app = Router::new()
        .route(
            "/orders",
            get(|key: VerifiedApiKey| async move { axum::Json(json!({"keyId": key.key_id().to_string()})) }),
        )
        .route_layer(keyward.layer().require_scope("orders:read".parse().unwrap()))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), keyward)
}

struct Admin {
    base: String,
    root: String,
    http: reqwest::Client,
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.root);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn key(&self, body: Value) -> (String, String) {
        let (status, created) = self.call(reqwest::Method::POST, "/v1/keys", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
    }
}

/// Polls the service with `key` until it answers `want`; returns how long that took.
async fn until(http: &reqwest::Client, service: &str, key: &str, want: StatusCode) -> Duration {
    let start = Instant::now();
    loop {
        let r = http.get(format!("{service}/orders")).bearer_auth(key).send().await.unwrap();
        if r.status() == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the service never answered {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the service's change propagation runs.
async fn propagating(keyward: &keyward::Keyward) {
    let start = Instant::now();
    while !keyward.propagating() {
        assert!(start.elapsed() < Duration::from_secs(5), "propagation never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_server_changes_the_service_on_the_file_sees_and_what_it_does_the_server_reports() {
    follows(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_server_changes_the_remote_service_sees_and_what_it_does_the_server_reports() {
    follows(true).await;
}

/// The whole life of a key through the server, seen by a service on the same file, or (with
/// `remote`) by one holding only a service key.
async fn follows(remote: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = Admin {
        base: format!("http://{}", server.addr),
        root: server.stdout[2].clone(),
        http: reqwest::Client::new(),
    };
    let (svc, keyward) = if remote {
        let (_, service_key) = admin.key(json!({"name": "orders service", "scopes": ["keys:verify"], "rateLimit": [{"limit": 100000, "periodSecs": 60}]})).await;
        service_with(keyward::Connect::new(&admin.base).service_key(&service_key)).await
    } else {
        service(&format!("sqlite://{}", dir.path().join("keyward.db").display())).await
    };
    propagating(&keyward).await;
    let http = reqwest::Client::new();

    // A key made through the server works in the service, for what its scopes allow.
    let (id, key) = admin.key(json!({"name": "orders client", "scopes": ["orders:read"]})).await;
    let r = http.get(format!("{svc}/orders")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["keyId"], id.as_str());
    let (_, other) = admin.key(json!({"name": "no orders", "scopes": ["keys:read"]})).await;
    until(&http, &svc, &other, StatusCode::FORBIDDEN).await;
    assert_eq!(http.get(format!("{svc}/health")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(http.get(format!("{svc}/nope")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // Deactivated, activated, revoked through the server: the service follows within 1 s.
    let post = reqwest::Method::POST;
    admin.call(post.clone(), &format!("/v1/keys/{id}/deactivate"), None).await;
    let took = until(&http, &svc, &key, StatusCode::UNAUTHORIZED).await;
    assert!(took < Duration::from_secs(1), "deactivation seen in {took:?}");
    admin.call(post.clone(), &format!("/v1/keys/{id}/activate"), None).await;
    until(&http, &svc, &key, StatusCode::OK).await;

    // Rotated: the old value stops, the new one works.
    let (status, rotated) = admin.call(post.clone(), &format!("/v1/keys/{id}/rotate"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let (new_id, new_key) =
        (rotated["id"].as_str().unwrap().to_owned(), rotated["secret"].as_str().unwrap().to_owned());
    until(&http, &svc, &key, StatusCode::UNAUTHORIZED).await;
    until(&http, &svc, &new_key, StatusCode::OK).await;

    // Expired: a key whose expiry passes is refused by the service on its own.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, expiring) =
        admin.key(json!({"name": "short", "scopes": ["orders:read"], "expiresAt": soon})).await;
    until(&http, &svc, &expiring, StatusCode::OK).await;
    until(&http, &svc, &expiring, StatusCode::UNAUTHORIZED).await;

    // The service's traffic shows on the server: last use and daily usage.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, detail) = admin.call(reqwest::Method::GET, &format!("/v1/keys/{new_id}"), None).await;
    assert!(detail["key"]["lastUsedAt"].is_string(), "{detail}");
    let used: u64 =
        detail["recentUsage"].as_array().unwrap().iter().map(|d| d["count"].as_u64().unwrap()).sum();
    assert!(used >= 1, "{detail}");

    // The service keeps following across a server restart (remote: at the same address).
    let addr = server.addr.clone();
    let mut logs = terminate(server);
    let server =
        if remote { start_on(dir.path(), &addr, &["--log-format", "json"]) } else { start(dir.path()) };
    let admin = Admin { base: format!("http://{}", server.addr), ..admin };
    if remote {
        tokio::time::sleep(Duration::from_millis(50)).await;
        propagating(&keyward).await;
    }
    admin.call(post, &format!("/v1/keys/{new_id}/revoke"), None).await;
    let took = until(&http, &svc, &new_key, StatusCode::UNAUTHORIZED).await;
    assert!(took < Duration::from_secs(1), "revocation seen in {took:?}");
    // The keys the service resolved through the server (remote mode) never reach its logs
    // (they are logged at debug level here).
    logs.extend(terminate(server));
    for secret in [&key, &new_key] {
        assert!(!logs.iter().any(|l| l.contains(secret.as_str())), "a key's plaintext was logged");
    }
    keyward.shutdown().await.unwrap();
}

/// The operator CLI works on the file with no server and no key, and what it does reaches a
/// running server and a running service at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_on_the_database_reaches_a_running_server_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let (svc, keyward) = service(&url).await;
    let http = reqwest::Client::new();
    let cli = |args: &[&str]| {
        let out = crate::binary::keyward().args(args).args(["--database", &url]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let printed = cli(&["keys", "create", "--name", "from the cli", "--scope", "orders:read"]);
    let key = printed.lines().last().unwrap().to_owned();
    assert!(key.starts_with("kw_live_"), "{printed}");
    let id = printed.split_whitespace().nth(3).unwrap().to_owned();
    until(&http, &svc, &key, StatusCode::OK).await;
    let status = |key: String| {
        let (http, base) = (http.clone(), format!("http://{}", server.addr));
        async move { http.get(format!("{base}/v1/status")).bearer_auth(key).send().await.unwrap().status() }
    };
    assert_eq!(status(key.clone()).await, StatusCode::OK);

    let listed = cli(&["keys", "list"]);
    assert!(listed.contains(&id) && listed.contains("from the cli") && listed.contains("active"), "{listed}");
    assert!(!listed.contains(&key), "the list never shows a key's value");
    let workspaces = cli(&["workspaces", "list"]);
    assert!(workspaces.contains("default"), "{workspaces}");

    cli(&["keys", "revoke", &id]);
    let took = until(&http, &svc, &key, StatusCode::UNAUTHORIZED).await;
    assert!(took < Duration::from_secs(1), "the service saw the CLI's revoke in {took:?}");
    let start = Instant::now();
    while status(key.clone()).await != StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < Duration::from_secs(1), "the server never saw the CLI's revoke");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(cli(&["keys", "list"]).contains("revoked"));
    terminate(server);
    keyward.shutdown().await.unwrap();
}
