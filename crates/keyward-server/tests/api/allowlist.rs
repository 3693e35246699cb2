//! IP allowlists over real sockets: a key's own list, its workspace's default, IPv4 and IPv6,
//! the client address through trusted proxies only, and `POST /v1/verify`'s `clientIp`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, Server};

/// Creates a key with `ipAllowlist`; returns (id, secret).
async fn key_with(s: &Server, caller: &str, scopes: &[&str], list: Value) -> (String, String) {
    let r = s.post("/v1/keys", caller, json!({"name": "k", "scopes": scopes, "ipAllowlist": list})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (r.body["id"].as_str().unwrap().to_owned(), r.body["secret"].as_str().unwrap().to_owned())
}

async fn status_via(s: &Server, key: &str, forwarded_for: Option<&str>) -> Reply {
    let mut req = s.client.get(format!("{}/v1/status", s.base)).bearer_auth(key);
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap();
    Reply { status, headers, body }
}

fn refused(r: &Reply, address: &str) {
    r.assert_error(403, "IP_NOT_ALLOWED");
    assert_eq!(r.body["error"]["details"]["address"], address, "{}", r.body);
}

#[tokio::test]
async fn a_keys_list_admits_its_addresses_and_ranges_only() {
    let s = Server::start().await;
    let (_, inside) = key_with(&s, &s.root, &[], json!(["203.0.113.0/24", "127.0.0.0/8"])).await;
    assert_eq!(s.get("/v1/status", &inside).await.status, StatusCode::OK, "127.0.0.1 is in 127.0.0.0/8");
    let (_, single) = key_with(&s, &s.root, &[], json!(["127.0.0.1"])).await;
    assert_eq!(s.get("/v1/status", &single).await.status, StatusCode::OK);
    let (_, outside) = key_with(&s, &s.root, &[], json!(["203.0.113.0/24", "2001:db8::/32"])).await;
    refused(&s.get("/v1/status", &outside).await, "127.0.0.1");
    // The header is ignored by default: no proxy is trusted.
    refused(&status_via(&s, &outside, Some("203.0.113.9")).await, "127.0.0.1");
}

#[tokio::test]
async fn ipv6_clients_are_matched_too() {
    let s = Server::start_on("[::1]:0", |state| state).await;
    let (_, loopback) = key_with(&s, &s.root, &[], json!(["::1/128"])).await;
    assert_eq!(s.get("/v1/status", &loopback).await.status, StatusCode::OK);
    let (_, doc) = key_with(&s, &s.root, &[], json!(["2001:db8::/32", "127.0.0.1"])).await;
    refused(&s.get("/v1/status", &doc).await, "::1");
}

#[tokio::test]
async fn the_workspace_default_applies_to_keys_without_a_list() {
    let s = Server::start().await;
    // An admin key of its own list, kept working by it whatever the workspace's default.
    let (_, admin) = key_with(&s, &s.root, &["*"], json!(["127.0.0.1"])).await;
    let (_, plain) = s.key("plain", &[]).await;
    let path = format!("/v1/workspaces/{}", s.workspace);
    let r =
        s.call(Method::PATCH, &path, Some(&admin), Some(json!({"ipAllowlist": ["198.51.100.0/24"]}))).await;
    assert_eq!(
        (r.status, &r.body["ipAllowlist"]),
        (StatusCode::OK, &json!(["198.51.100.0/24"])),
        "{}",
        r.body
    );
    refused(&s.get("/v1/status", &plain).await, "127.0.0.1");
    refused(&s.get("/v1/status", &s.root).await, "127.0.0.1");
    assert_eq!(
        s.get("/v1/status", &admin).await.status,
        StatusCode::OK,
        "a key's own list replaces the default"
    );
    let r = s.call(Method::PATCH, &path, Some(&admin), Some(json!({"ipAllowlist": []}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.get("/v1/status", &plain).await.status, StatusCode::OK, "an empty default: anywhere");
}

#[tokio::test]
async fn forwarded_for_counts_only_through_trusted_proxies() {
    let s =
        Server::start_with(|state| state.with_trusted_proxies(vec!["127.0.0.1/32".parse().unwrap()])).await;
    let (_, key) = key_with(&s, &s.root, &[], json!(["203.0.113.0/24"])).await;
    assert_eq!(status_via(&s, &key, Some("203.0.113.9")).await.status, StatusCode::OK);
    // A chain through another trusted hop; what the client wrote itself (left) is ignored.
    assert_eq!(
        status_via(&s, &key, Some("198.51.100.1, 203.0.113.9, 127.0.0.1")).await.status,
        StatusCode::OK
    );
    refused(&status_via(&s, &key, Some("203.0.113.9, 198.51.100.1")).await, "198.51.100.1");
    refused(&status_via(&s, &key, None).await, "127.0.0.1");
}

#[tokio::test]
async fn malformed_lists_are_refused_naming_the_entry() {
    let s = Server::start().await;
    for (list, field) in [
        (json!(["203.0.113.0/24", "2001:db8::/32", "nonsense"]), "ipAllowlist[2]"),
        (json!(["203.0.113.5/24"]), "ipAllowlist[0]"),
        (json!(["10.0.0.0/33"]), "ipAllowlist[0]"),
        (json!(vec!["10.0.0.1"; 101]), "ipAllowlist"),
    ] {
        let r = s.post("/v1/keys", &s.root, json!({"name": "bad", "ipAllowlist": list})).await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field, "{}", r.body);
    }
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "ok", "ipAllowlist": ["198.51.100.7", "2001:DB8::/32"]}))
        .await;
    assert_eq!(r.body["key"]["ipAllowlist"], json!(["198.51.100.7/32", "2001:db8::/32"]), "normalised");
    let id = r.body["id"].as_str().unwrap();
    let p = s
        .call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&s.root), Some(json!({"ipAllowlist": ["x"]})))
        .await;
    p.assert_error(400, "VALIDATION_FAILED");
    let p = s
        .call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&s.root), Some(json!({"ipAllowlist": []})))
        .await;
    assert_eq!(p.body["ipAllowlist"], json!([]));
    let path = format!("/v1/workspaces/{}", s.workspace);
    let w = s.call(Method::PATCH, &path, Some(&s.root), Some(json!({"ipAllowlist": ["1.2.3.4/8"]}))).await;
    w.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(w.body["error"]["details"]["field"], "ipAllowlist[0]");
}

#[tokio::test]
async fn verify_checks_the_end_users_address() {
    let s = Server::start().await;
    let (_, service) = s.key("service", &["keys:verify"]).await;
    let (_, key) = key_with(&s, &s.root, &[], json!(["203.0.113.0/24", "2001:db8::/32"])).await;
    for ip in ["203.0.113.5", "2001:db8::42"] {
        let v = s.post("/v1/verify", &service, json!({"key": key, "clientIp": ip})).await;
        assert_eq!(v.body["valid"], true, "{ip}: {}", v.body);
    }
    let v = s.post("/v1/verify", &service, json!({"key": key, "clientIp": "198.51.100.1"})).await;
    assert_eq!(
        (&v.body["valid"], &v.body["error"]["code"], &v.body["error"]["status"]),
        (&json!(false), &json!("IP_NOT_ALLOWED"), &json!(403))
    );
    assert_eq!(v.body["error"]["details"]["address"], "198.51.100.1");
    let v = s.post("/v1/verify", &service, json!({"key": key})).await;
    assert_eq!(v.body["error"]["code"], "IP_NOT_ALLOWED", "an unknown address is refused: {}", v.body);
    let (_, open) = s.key("open", &[]).await;
    let v = s.post("/v1/verify", &service, json!({"key": open})).await;
    assert_eq!(v.body["valid"], true, "keys without a list need no address");
    s.post("/v1/verify", &service, json!({"key": key, "clientIp": "nonsense"}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn a_key_cannot_lock_itself_out_by_address() {
    let s = Server::start().await;
    let status = s.get("/v1/status", &s.root).await;
    let own = status.body["keyId"].as_str().unwrap().to_owned();
    let ws = format!("/v1/workspaces/{}", s.workspace);
    let elsewhere = json!({"ipAllowlist": ["198.51.100.0/24"]});
    let r = s.call(Method::PATCH, &ws, Some(&s.root), Some(elsewhere.clone())).await;
    r.assert_error(409, "SELF_LOCKOUT");
    assert_eq!(r.body["error"]["details"]["address"], "127.0.0.1");
    let r = s.call(Method::PATCH, &format!("/v1/keys/{own}"), Some(&s.root), Some(elsewhere.clone())).await;
    r.assert_error(409, "SELF_LOCKOUT");
    assert_eq!(s.get("/v1/status", &s.root).await.status, StatusCode::OK, "nothing changed");
    // Lists that keep the caller's own address are fine; so is another key's list.
    let keep = json!({"ipAllowlist": ["198.51.100.0/24", "127.0.0.1"]});
    let r = s.call(Method::PATCH, &format!("/v1/keys/{own}"), Some(&s.root), Some(keep)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = s.call(Method::PATCH, &ws, Some(&s.root), Some(elsewhere.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "the caller's own list keeps it working: {}", r.body);
    let (other, _) = s.key("other", &[]).await;
    let r = s.call(Method::PATCH, &format!("/v1/keys/{other}"), Some(&s.root), Some(elsewhere)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
