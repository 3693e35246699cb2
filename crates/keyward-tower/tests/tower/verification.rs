//! The verdicts of the layer in an axum app: who passes, and the catalog error of who does not.

use chrono::Duration;
use http::HeaderName;
use http::request::Parts;
use keyward_core::{Actor, KeyEnvironment, NewKey};
use keyward_tower::KeywardLayer;

use crate::support::{Auth, Harness, WORKSPACE_LIMIT, now_epoch_secs, per_minute, serve_app};

#[tokio::test]
async fn valid_key_reaches_the_handler_with_headers() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { rate_limit: per_minute(10), ..k }).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    let plaintext = key.secret.expose_secret();

    let reply = client.send("/whoami", Auth::Bearer(plaintext), &[("x-request-id", "req-abc-1")]).await;
    let body = reply.ok();
    assert_eq!(body["keyId"], key.key.id.to_string());
    assert_eq!(body["workspaceId"], h.workspace.id.to_string());
    // The handler sees the key headers marked sensitive, and the request id the response has.
    assert_eq!(body["authorizationSensitive"], true);
    assert_eq!(body["requestId"], "req-abc-1");
    assert_eq!(reply.header("x-request-id"), Some("req-abc-1"));

    // The key's 10/min window is the tightest; every window is in the IETF headers.
    assert_eq!(reply.header_u64("x-ratelimit-limit"), 10);
    assert_eq!(reply.header_u64("x-ratelimit-remaining"), 9);
    let reset = reply.header_u64("x-ratelimit-reset");
    let now = now_epoch_secs();
    assert!(reset >= now && reset <= now + 7, "reset {reset} vs now {now}");
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some(format!("\"key-60s\";q=10;w=60, \"workspace-60s\";q={WORKSPACE_LIMIT};w=60").as_str())
    );
    let state = reply.header("ratelimit").expect("RateLimit header");
    assert!(state.starts_with("\"key-60s\";r=9;t=6, "), "{state}");
    assert!(state.contains(&format!("\"workspace-60s\";r={};", WORKSPACE_LIMIT - 1)), "{state}");

    // X-API-Key works too; without an incoming id the response gets a fresh one.
    let reply = client.send("/whoami", Auth::ApiKey(plaintext), &[]).await;
    let body = reply.ok();
    assert_eq!(body["apiKeySensitive"], true);
    assert_eq!(reply.header_u64("x-ratelimit-remaining"), 8);
    let id = reply.header("x-request-id").expect("request id");
    assert!(!id.is_empty() && id != "req-abc-1", "a fresh id: {id}");
    assert_eq!(body["requestId"], id);
}

#[tokio::test]
async fn missing_key_is_401() {
    let h = Harness::new().await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    let reply = client.send("/whoami", Auth::None, &[("x-request-id", "r-missing")]).await;
    reply.error(401, "MISSING_API_KEY");
    assert_eq!(reply.header("x-request-id"), Some("r-missing"));
    let reply = client.send("/whoami", Auth::None, &[("authorization", "Basic dXNlcjpwdw==")]).await;
    reply.error(401, "MISSING_API_KEY");
}

#[tokio::test]
async fn malformed_and_unknown_keys_are_invalid() {
    let h = Harness::new().await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    for garbage in
        ["kw_live_garbage", "not-a-key", "kw_live_0000000000000000000000000000000000000000000000000"]
    {
        client.get("/whoami", garbage).await.error(401, "INVALID_API_KEY");
    }
    // Well formed, right checksum, never issued.
    let unknown = h.service.format().generate(KeyEnvironment::Live);
    let reply = client.get("/whoami", unknown.expose_secret()).await;
    reply.error(401, "INVALID_API_KEY");
    assert!(!reply.body.to_string().contains(unknown.expose_secret()), "the key is never echoed");
}

#[tokio::test]
async fn inactive_revoked_and_expired_keys_are_refused() {
    let h = Harness::new().await;
    let inactive = h.key(|k| NewKey { active: false, ..k }).await;
    let revoked = h.key(|k| k).await;
    h.service.revoke_key(h.workspace.id, revoked.key.id, &Actor::system()).await.expect("revoke");
    let expires_at = h.clock_now() + Duration::hours(1);
    let expiring = h.key(|k| NewKey { expires_at: Some(expires_at), ..k }).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;

    client.get("/whoami", inactive.secret.expose_secret()).await.error(401, "KEY_INACTIVE");
    client.get("/whoami", revoked.secret.expose_secret()).await.error(401, "KEY_REVOKED");
    client.get("/whoami", expiring.secret.expose_secret()).await.ok();
    h.clock.advance(Duration::hours(1) + Duration::seconds(1));
    client.get("/whoami", expiring.secret.expose_secret()).await.error(401, "KEY_EXPIRED");
}

#[tokio::test]
async fn missing_scope_is_403_and_names_it() {
    let h = Harness::new().await;
    let reader = h.key(|k| k.with_scopes("orders:read".parse().unwrap())).await;
    let writer = h.key(|k| k.with_scopes("orders:*".parse().unwrap())).await;
    let layer = KeywardLayer::new(h.verifier())
        .require_scopes(["orders:read".parse().unwrap(), "orders:write".parse().unwrap()]);
    let (client, _) = serve_app(layer).await;

    let reply = client.get("/whoami", reader.secret.expose_secret()).await;
    let details = reply.error(403, "INSUFFICIENT_SCOPE");
    assert_eq!(details["missing"], serde_json::json!(["orders:write"]));
    client.get("/whoami", writer.secret.expose_secret()).await.ok();
}

#[tokio::test]
async fn resources_outside_the_keys_restrictions_are_403() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { resources: vec!["proj-a".into()], ..k }).await;
    let plaintext = key.secret.expose_secret();

    let by_header = KeywardLayer::new(h.verifier()).resource_header(HeaderName::from_static("x-project"));
    let (client, _) = serve_app(by_header).await;
    client.send("/whoami", Auth::Bearer(plaintext), &[("x-project", "proj-a")]).await.ok();
    let reply = client.send("/whoami", Auth::Bearer(plaintext), &[("x-project", "proj-b")]).await;
    assert_eq!(reply.error(403, "RESOURCE_NOT_ALLOWED")["resource"], "proj-b");

    let by_path = KeywardLayer::new(h.verifier())
        .resource_from(|p: &Parts| p.uri.path().strip_prefix("/projects/").map(str::to_owned));
    let (client, _) = serve_app(by_path).await;
    client.get("/projects/proj-a", plaintext).await.ok();
    client.get("/projects/proj-b", plaintext).await.error(403, "RESOURCE_NOT_ALLOWED");
}

#[tokio::test]
async fn key_in_the_url_is_400() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    let plaintext = key.secret.expose_secret();
    let reply = client.send(&format!("/whoami?api_key={plaintext}"), Auth::None, &[]).await;
    reply.error(400, "API_KEY_IN_URL");
    assert!(!reply.body.to_string().contains(plaintext), "the key is never echoed");
    // Even alongside a valid header, and under another parameter name.
    let reply = client.send(&format!("/whoami?q={plaintext}"), Auth::Bearer(plaintext), &[]).await;
    reply.error(400, "API_KEY_IN_URL");
}

impl Harness {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        keyward_core::Clock::now(&*self.clock)
    }
}
