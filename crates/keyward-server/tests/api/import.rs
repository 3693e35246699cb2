//! `POST /v1/keys/import`: keys issued elsewhere, imported by their SHA-256 digest.

use keyward_core::LegacyFormat;
use keyward_server::serve::{ConnectionLimits, ServeConfig, node, serve_http};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Reply, Server};

fn sha256_hex(plain: &str) -> String {
    hex::encode(Sha256::digest(plain.as_bytes()))
}

/// A key as another system issued it: not keyward's format, no checksum.
fn legacy_key(n: usize) -> String {
    format!("sk_live_{n:04}abcdefghijklmnopqrstuvwxyzABCDEF")
}

fn row(plain: &str, name: &str) -> Value {
    json!({"digest": sha256_hex(plain), "name": name, "scopes": ["orders:read"]})
}

async fn import(s: &Server, key: &str, rows: Vec<Value>) -> Reply {
    s.post("/v1/keys/import", key, json!({ "keys": rows })).await
}

async fn key_count(s: &Server) -> usize {
    let r = s.get("/v1/keys?limit=100", &s.root).await;
    r.body["data"].as_array().expect("keys").len()
}

async fn imported_events(s: &Server) -> usize {
    let r = s.get("/v1/audit-events?action=key.imported&limit=100", &s.root).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().expect("events").len()
}

/// Through `keyward serve`'s own wiring (a pepper, `--legacy-key-prefix sk_`): an imported key
/// verifies with its original value, shows what the import gave, and is audited; a value of the
/// same shape that was not imported, or one of neither format, is refused.
#[tokio::test]
async fn imported_keys_verify_through_a_peppered_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServeConfig {
        database: format!("sqlite://{}", dir.path().join("keyward.db").display()),
        pepper: Some("a server pepper of thirty-two bytes or more".into()),
        legacy_keys: Some(LegacyFormat::new("sk_", 20, 128).expect("format")),
        ..ServeConfig::default()
    };
    let node = node(&config).await.expect("node");
    let root = node.root.as_ref().expect("first start").secret.expose_secret().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve_http(listener, node.app(), ConnectionLimits::default(), std::future::pending()));
    let client = reqwest::Client::new();
    let call = async |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}")).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        (resp.status(), resp.json::<Value>().await.unwrap_or(Value::Null))
    };

    let plain = legacy_key(1);
    let other = legacy_key(2);
    let body = json!({"keys": [
        {"digest": sha256_hex(&plain), "name": "billing", "scopes": ["orders:read"], "prefix": &plain[..12], "last4": &plain[plain.len() - 4..]},
        {"digest": sha256_hex(&other).to_uppercase(), "name": "no display"},
    ]});
    let (status, imported) = call(reqwest::Method::POST, "/v1/keys/import", &root, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    let first = &imported["data"][0];
    assert_eq!(first["name"], "billing");
    assert_eq!(first["maskedKey"], format!("{}…{}", &plain[..12], &plain[plain.len() - 4..]));
    assert!(first["importedAt"].is_string());
    assert!(first["leakedAt"].is_null());
    assert_eq!(imported["data"][1]["maskedKey"], "imported…");
    assert!(!imported.to_string().contains(&plain), "a plaintext never comes back");

    let (status, me) = call(reqwest::Method::GET, "/v1/status", &plain, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["scopes"], json!(["orders:read"]));
    assert_eq!(call(reqwest::Method::GET, "/v1/status", &other, None).await.0, StatusCode::OK);
    // The shape alone opens nothing: not imported, refused after the lookup.
    let (status, refused) = call(reqwest::Method::GET, "/v1/status", &legacy_key(3), None).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_API_KEY"))
    );
    // Neither keyward's format nor the legacy one: refused before any lookup.
    let (status, refused) =
        call(reqwest::Method::GET, "/v1/status", "pk_live_abcdefghijklmnopqrstuvwxyz", None).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_API_KEY"))
    );
    // keyward's own keys still verify under the pepper.
    assert_eq!(call(reqwest::Method::GET, "/v1/status", &root, None).await.0, StatusCode::OK);

    let id = first["id"].as_str().expect("id");
    let (_, events) = call(reqwest::Method::GET, &format!("/v1/audit-events?keyId={id}"), &root, None).await;
    assert_eq!(events["data"][0]["action"], "key.imported", "{events}");
}

/// Without `--legacy-key-prefix`, a value outside keyward's format is refused on its shape, even
/// when its digest was imported.
#[tokio::test]
async fn legacy_values_need_the_legacy_format() {
    let s = Server::start().await;
    let plain = legacy_key(1);
    assert_eq!(import(&s, &s.root, vec![row(&plain, "a")]).await.status, StatusCode::CREATED);
    let r = s.get("/v1/status", &plain).await;
    r.assert_error(401, "INVALID_API_KEY");
}

/// One bad row refuses the whole call, naming the row, and stores nothing, not even an event.
#[tokio::test]
async fn a_bulk_import_with_one_bad_row_changes_nothing() {
    let s = Server::start().await;
    let before = key_count(&s).await;
    let rows = |bad: Value, at: usize| {
        let mut rows: Vec<Value> = (0..5).map(|i| row(&legacy_key(i), &format!("k{i}"))).collect();
        rows[at] = bad;
        rows
    };
    let mut short = row(&legacy_key(9), "x");
    short["digest"] = json!("abc123");
    let r = import(&s, &s.root, rows(short, 3)).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "keys[3].digest");
    assert_eq!(r.body["error"]["details"]["row"], 3);

    let mut bad_scope = row(&legacy_key(9), "x");
    bad_scope["scopes"] = json!(["not a scope"]);
    let r = import(&s, &s.root, rows(bad_scope, 2)).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "keys[2].scopes[0]");

    let mut unnamed = row(&legacy_key(9), "x");
    unnamed["name"] = json!("");
    let r = import(&s, &s.root, rows(unnamed, 4)).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "keys[4].name", "{}", r.body);

    let mut long = row(&legacy_key(9), "x");
    long["last4"] = json!("12345");
    let r = import(&s, &s.root, rows(long, 1)).await;
    assert_eq!(r.body["error"]["details"]["field"], "keys[1].last4", "{}", r.body);

    // Wider than the caller: a key that may write keys but holds nothing else.
    let (_, writer) = s.key("writer", &["keys:write"]).await;
    let r = import(&s, &writer, rows(row(&legacy_key(9), "x"), 0)).await;
    r.assert_error(403, "INSUFFICIENT_SCOPE");
    assert_eq!(r.body["error"]["details"]["row"], 0);

    assert_eq!(key_count(&s).await, before + 1, "only the writer key was added");
    assert_eq!(imported_events(&s).await, 0);
    for i in 0..5 {
        s.get("/v1/status", &legacy_key(i)).await.assert_error(401, "INVALID_API_KEY");
    }
    assert_eq!(import(&s, &s.root, rows(row(&legacy_key(9), "x"), 0)).await.status, StatusCode::CREATED);
    assert_eq!(key_count(&s).await, before + 6);
    assert_eq!(imported_events(&s).await, 5);
}

/// A digest given twice, or stored already, is a 409 naming the row.
#[tokio::test]
async fn duplicate_digests_conflict_naming_the_row() {
    let s = Server::start().await;
    let r = import(
        &s,
        &s.root,
        vec![row(&legacy_key(1), "a"), row(&legacy_key(2), "b"), row(&legacy_key(1), "c")],
    )
    .await;
    r.assert_error(409, "CONFLICT");
    assert_eq!(r.body["error"]["details"]["row"], 2);
    assert_eq!(r.body["error"]["details"]["duplicateOf"], 0);
    assert_eq!(imported_events(&s).await, 0);

    assert_eq!(import(&s, &s.root, vec![row(&legacy_key(1), "a")]).await.status, StatusCode::CREATED);
    let r = import(&s, &s.root, vec![row(&legacy_key(2), "b"), row(&legacy_key(1), "again")]).await;
    r.assert_error(409, "CONFLICT");
    assert_eq!(r.body["error"]["details"]["field"], "keys[1].digest");
    assert_eq!(imported_events(&s).await, 1);
    // keyward's own key, by its digest: stored already too.
    let r = import(&s, &s.root, vec![row(&s.root, "root again")]).await;
    r.assert_error(409, "CONFLICT");
}

/// 1 to 1000 keys per call (1000 fit the body limit of this route), `keys:write` needed.
#[tokio::test]
async fn import_bounds_and_scope() {
    let s = Server::start().await;
    import(&s, &s.root, vec![]).await.assert_error(400, "VALIDATION_FAILED");
    let many = |n: usize| (0..n).map(|i| row(&legacy_key(i), &format!("legacy {i}"))).collect::<Vec<_>>();
    let r = import(&s, &s.root, many(1001)).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "keys");
    let (_, reader) = s.key("reader", &["keys:read", "orders:read"]).await;
    import(&s, &reader, many(1)).await.assert_error(403, "INSUFFICIENT_SCOPE");

    let body = json!({ "keys": many(1000) }).to_string();
    assert!(body.len() > keyward_server::MAX_BODY_BYTES, "more than the general limit");
    let r = import(&s, &s.root, many(1000)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"].as_array().expect("keys").len(), 1000);
    assert_eq!(r.body["data"][999]["name"], "legacy 999", "in the order given");
    // The 1000 events, written in one transaction, extend the workspace's audit chain intact.
    let chain = s.get("/v1/audit-events/verify", &s.root).await;
    assert_eq!(chain.body["valid"], true, "{}", chain.body);
}
