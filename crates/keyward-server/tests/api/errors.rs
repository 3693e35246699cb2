//! Bad input: every case gets a clear 4xx with a stable code, never a 500 or a plain-text body.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::Server;

async fn raw(
    s: &Server,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> crate::support::Reply {
    let mut req = s.client.request(method, format!("{}{path}", s.base)).bearer_auth(&s.root).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = serde_json::from_slice(&resp.bytes().await.unwrap()).expect("a JSON body");
    crate::support::Reply { status, headers, body }
}

#[tokio::test]
async fn malformed_bodies() {
    let s = Server::start().await;
    let r = raw(&s, Method::POST, "/v1/keys", Some("application/json"), b"{\"name\": ".to_vec()).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("malformed JSON"));
    raw(&s, Method::POST, "/v1/keys", Some("text/plain"), b"{}".to_vec())
        .await
        .assert_error(400, "VALIDATION_FAILED");
    raw(&s, Method::POST, "/v1/keys", None, b"{}".to_vec()).await.assert_error(400, "VALIDATION_FAILED");
    let r = raw(&s, Method::POST, "/v1/keys", Some("application/json"), b"{}".to_vec()).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("name"), "{}", r.body);
    let r = s.post("/v1/keys", &s.root, json!({"name": "x", "scopes": "keys:read"})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "scopes");
    let r = s.post("/v1/keys", &s.root, json!({"name": "x", "surprise": true})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "surprise");
    let r = s.post("/v1/keys", &s.root, json!({"name": "x", "scopes": ["ok:read", "bad"]})).await;
    assert_eq!(r.body["error"]["details"]["field"], "scopes[1]");
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "x", "rateLimit": [{"limit": 0, "periodSecs": 60}]}))
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    s.post("/v1/keys", &s.root, json!({"name": ""})).await.assert_error(400, "VALIDATION_FAILED");
    s.post("/v1/keys", &s.root, json!({"name": "x".repeat(101)}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.post("/v1/keys", &s.root, json!({"name": "x", "credits": -1}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.post("/v1/keys", &s.root, json!({"name": "x", "concurrencyLimit": 0}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.post("/v1/keys", &s.root, json!({"name": "x", "expiresAt": "tomorrow"}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = Server::start().await;
    let big = json!({"name": "x", "metadata": {"blob": "a".repeat(keyward_server::MAX_BODY_BYTES)}});
    let r =
        raw(&s, Method::POST, "/v1/keys", Some("application/json"), serde_json::to_vec(&big).unwrap()).await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn bad_ids_unknown_paths_and_methods() {
    let s = Server::start().await;
    let r = s.get("/v1/keys/not-a-uuid", &s.root).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "id");
    s.get(&format!("/v1/keys/{}", uuid::Uuid::now_v7()), &s.root).await.assert_error(404, "NOT_FOUND");
    s.get("/v1/nothing-here", &s.root).await.assert_error(404, "NOT_FOUND");
    s.call(Method::PUT, "/v1/keys", Some(&s.root), None).await.assert_error(405, "METHOD_NOT_ALLOWED");
    s.get("/v1/workspaces/xyz", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/audit-events?since=yesterday", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/audit-events?action=key.exploded", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/audit-events?keyId=12", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/keys?limit=1&limit=2", &s.root).await.assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn bad_query_parameters_are_named() {
    let s = Server::start().await;
    let usage = format!("/v1/keys/{}/usage", uuid::Uuid::now_v7());
    for (path, field) in [
        ("/v1/keys?status=gone".to_owned(), "status"),
        ("/v1/keys?limit=x".to_owned(), "limit"),
        ("/v1/keys?limit=-1".to_owned(), "limit"),
        ("/v1/keys?cursor=%ff".to_owned(), "cursor"),
        ("/v1/keys?status=active&status=revoked".to_owned(), "status"),
        (format!("{usage}?days=x"), "days"),
        ("/v1/audit-events?keyId=12".to_owned(), "keyId"),
        ("/v1/audit-events?action=key.exploded".to_owned(), "action"),
        ("/v1/audit-events?since=yesterday".to_owned(), "since"),
        ("/v1/audit-events?until=2026-02-30T00:00:00Z".to_owned(), "until"),
    ] {
        let r = s.get(&path, &s.root).await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field, "{path}");
    }
}

#[tokio::test]
async fn authentication_errors() {
    let s = Server::start().await;
    let r = s.call(Method::GET, "/v1/keys", None, None).await;
    r.assert_error(401, "MISSING_API_KEY");
    assert!(r.headers.contains_key("www-authenticate"));
    s.get("/v1/keys", "kw_live_short").await.assert_error(401, "INVALID_API_KEY");
    let fake = keyward_core::KeyFormat::default().generate(keyward_core::KeyEnvironment::Live);
    s.get("/v1/keys", fake.expose_secret()).await.assert_error(401, "INVALID_API_KEY");
    let r = s.client.get(format!("{}/v1/keys?api_key={}", s.base, s.root)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "API_KEY_IN_URL");
    assert!(!body.to_string().contains(&s.root), "the key is never echoed");
    // X-API-Key works like the bearer header.
    let r = s.client.get(format!("{}/v1/status", s.base)).header("x-api-key", &s.root).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The caller's request id is kept.
    let r =
        s.client.get(format!("{}/v1/keys", s.base)).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["requestId"], "trace-42");
}

#[tokio::test]
async fn store_outage_is_503_not_500() {
    let s = Server::start().await;
    let (_, fresh) = s.key("fresh", &["keys:read"]).await;
    s.store.set_down(true);
    s.get("/v1/keys", &fresh).await.assert_error(503, "STORE_UNAVAILABLE");
    s.store.set_down(false);
    assert_eq!(s.get("/v1/keys", &fresh).await.status, StatusCode::OK);
}
