//! `POST /v1/verify` byte for byte: status, every header in order and the body, for a valid key
//! and for refused ones. Written against the code before the hot path was reworked, so that the
//! rework provably answers exactly as before.

use std::sync::Arc;

use keyward_core::testing::{RawHttp, assert_pinned};
use keyward_core::{LocalRateLimiter, Verifier};
use serde_json::json;

use crate::support::Server;

#[tokio::test]
async fn verify_responses_are_pinned_byte_for_byte() {
    // The limiter reads the server's manual clock, so remaining budgets are exact.
    let s = Server::start_with(|mut state| {
        let limiter = LocalRateLimiter::default().with_clock(state.service.clock().clone());
        state.verifier = Verifier::builder(&state.service).rate_limiter(Arc::new(limiter)).build();
        state
    })
    .await;
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().unwrap();
    let (id, key) = s.key("pinned", &["orders:read"]).await;
    let mut malformed = key.clone();
    malformed.pop();
    malformed.push(if key.ends_with('A') { 'B' } else { 'A' });
    let unknown = keyward_core::KeyFormat::default().generate(keyward_core::KeyEnvironment::Live);
    let unknown = unknown.expose_secret().to_owned();

    let mut got = Vec::new();
    for (i, body) in [
        json!({"key": key, "scopes": ["orders:read"]}),
        json!({"key": key, "scopes": ["orders:write"]}),
        json!({"key": malformed}),
        json!({"key": unknown}),
        json!({"key": key, "cost": 0, "resource": "r1"}),
    ]
    .into_iter()
    .enumerate()
    {
        let body = body.to_string();
        let request = format!(
            "POST /v1/verify HTTP/1.1\r\nHost: pin\r\nAuthorization: Bearer {}\r\nX-Request-Id: pin-{i}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            s.root,
            body.len()
        );
        got.push(RawHttp::exchange(addr, request).await.expect("exchange").pinned());
    }
    let got = got.join("\n----\n").replace(&id, "<key>").replace(&s.workspace, "<workspace>");
    assert_pinned(&got, concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/pinned.txt"));
}
