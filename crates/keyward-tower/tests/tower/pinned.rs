//! The layer's responses byte for byte: status, every header in order and the body, for a
//! success with its rate-limit headers and for each kind of refusal. Written against the code
//! before the hot path was reworked, so that the rework provably answers exactly as before.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use keyward_core::testing::{RawHttp, assert_pinned};
use keyward_core::{Actor, KeyEnvironment, LocalRateLimiter, RateLimitPolicy, RateLimitWindow};
use keyward_tower::KeywardLayer;
use tokio::net::TcpListener;

use crate::support::Harness;

/// GET (or POST with a body) `path` with `headers`, on a connection of its own.
async fn exchange(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str) -> String {
    let body = if method == "POST" { "Content-Length: 4\r\n\r\nbody" } else { "\r\n" };
    let request = format!("{method} {path} HTTP/1.1\r\nHost: pin\r\n{headers}{body}");
    RawHttp::exchange(addr, request).await.expect("exchange").pinned()
}

#[tokio::test]
async fn responses_are_pinned_byte_for_byte() {
    let h = Harness::new().await;
    // The limiter reads the harness's manual clock, so remaining budgets and waits are exact.
    let limiter = Arc::new(LocalRateLimiter::default().with_clock(h.clock.clone()));
    let verifier = h.verifier_with(|b| b.rate_limiter(limiter));
    let created = h.key(|k| k.with_scopes("orders:read".parse().unwrap())).await;
    let key = created.secret.expose_secret().to_owned();
    let limited = RateLimitPolicy::new([RateLimitWindow::per_minute(3), RateLimitWindow::per_hour(50)]);
    let limited = h
        .key(|k| keyward_core::NewKey { rate_limit: Some(limited), ..k })
        .await
        .secret
        .expose_secret()
        .to_owned();
    let revoked = h.key(|k| k).await;
    h.service.revoke_key(h.workspace.id, revoked.key.id, &Actor::system()).await.expect("revoke");
    let revoked = revoked.secret.expose_secret().to_owned();
    let unknown = h.service.format().generate(KeyEnvironment::Live).expose_secret().to_owned();
    let mut malformed = key.clone();
    malformed.pop();
    malformed.push(if key.ends_with('A') { 'B' } else { 'A' });

    let layer = KeywardLayer::new(verifier);
    let app = Router::new()
        .route("/pin", get(|| async { "pinned" }).post(|| async { "posted" }))
        .layer(layer.clone())
        .merge(
            Router::new()
                .route("/admin", post(|| async { "admin" }).get(|| async { "admin" }))
                .layer(layer.require_scope("admin:write".parse().unwrap())),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let bearer = |k: &str| format!("Authorization: Bearer {k}\r\nX-Request-Id: pin-1\r\n");
    let mut got = Vec::new();
    for (method, path, headers) in [
        ("GET", "/pin", bearer(&key)),
        ("GET", "/pin", format!("X-API-Key: {key}\r\nX-Request-Id: pin-2\r\n")),
        ("GET", "/pin", "X-Request-Id: pin-3\r\n".to_owned()),
        ("GET", "/pin", bearer(&malformed)),
        ("GET", "/pin", bearer(&unknown)),
        ("GET", "/pin", bearer(&revoked)),
        ("GET", "/pin?api_key=x", bearer(&key)),
        (
            "GET",
            "/pin",
            format!("Authorization: Bearer {key}\r\nX-API-Key: {unknown}\r\nX-Request-Id: pin-4\r\n"),
        ),
        ("GET", "/admin", bearer(&key)),
        ("POST", "/admin", bearer(&key)),
        ("GET", "/pin", bearer(&limited)),
        ("GET", "/pin", bearer(&limited)),
        ("GET", "/pin", bearer(&limited)),
        ("GET", "/pin", bearer(&limited)),
    ] {
        got.push(format!("{method} {path}\n{}", exchange(addr, method, path, &headers).await));
    }
    let got = got.join("\n----\n");
    assert_pinned(&got, concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tower/pinned.txt"));
}
