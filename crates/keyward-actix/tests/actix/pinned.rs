//! The middleware's responses byte for byte: status, every header (sorted: actix's order is not
//! stable) and the body, for a success with its rate-limit headers and for each kind of refusal.
//! Written against the code before the hot path was reworked, so that the rework provably
//! answers exactly as before.

use keyward_core::testing::{RawHttp, assert_pinned};
use keyward_core::{Actor, KeyEnvironment, RateLimitPolicy, RateLimitWindow};

use super::Harness;

#[actix_web::test]
async fn responses_are_pinned_byte_for_byte() {
    let h = Harness::start().await;
    let addr: std::net::SocketAddr = h.base.trim_start_matches("http://").parse().unwrap();
    // Windows that refill slowly, so that the budgets left do not depend on the test's pace;
    // the workspace's (a million a minute) refills between any two requests.
    let slow = RateLimitPolicy::new([RateLimitWindow::per_minute(60), RateLimitWindow::per_hour(1000)]);
    let (key, record) = h
        .key(|k| {
            k.scopes = "reports:read".parse().unwrap();
            k.rate_limit = Some(slow.clone());
        })
        .await;
    let (limited, limited_record) = h
        .key(|k| {
            k.rate_limit =
                Some(RateLimitPolicy::new([RateLimitWindow::per_minute(3), RateLimitWindow::per_hour(50)]))
        })
        .await;
    let (revoked, revoked_record) = h.key(|_| {}).await;
    h.service.revoke_key(h.workspace.id, revoked_record.id, &Actor::system()).await.unwrap();
    let (plain, _) = h.key(|k| k.rate_limit = Some(slow.clone())).await;
    let unknown = h.service.format().generate(KeyEnvironment::Live).expose_secret().to_owned();
    let mut malformed = key.clone();
    malformed.pop();
    malformed.push(if key.ends_with('A') { 'B' } else { 'A' });

    let bearer = |k: &str| format!("Authorization: Bearer {k}\r\nX-Request-Id: pin-1\r\n");
    let mut got = Vec::new();
    for (method, path, headers) in [
        ("GET", "/whoami", bearer(&key)),
        ("GET", "/whoami", format!("X-API-Key: {key}\r\nX-Request-Id: pin-2\r\n")),
        ("GET", "/whoami", "X-Request-Id: pin-3\r\n".to_owned()),
        ("GET", "/whoami", bearer(&malformed)),
        ("GET", "/whoami", bearer(&unknown)),
        ("GET", "/whoami", bearer(&revoked)),
        ("GET", "/whoami?api_key=x", bearer(&key)),
        (
            "GET",
            "/whoami",
            format!("Authorization: Bearer {key}\r\nX-API-Key: {unknown}\r\nX-Request-Id: pin-4\r\n"),
        ),
        ("GET", "/reports", bearer(&plain)),
        ("POST", "/upload", bearer(&unknown)),
        ("GET", "/whoami", bearer(&limited)),
        ("GET", "/whoami", bearer(&limited)),
        ("GET", "/whoami", bearer(&limited)),
        ("GET", "/whoami", bearer(&limited)),
    ] {
        let body = if method == "POST" { "Content-Length: 4\r\n\r\nbody" } else { "\r\n" };
        let request = format!("{method} {path} HTTP/1.1\r\nHost: pin\r\n{headers}{body}");
        let mut response = RawHttp::exchange(addr, request).await.expect("exchange");
        // actix keeps headers in a hash map, whose order changes from one process to the next.
        response.headers.sort();
        let response = response.pinned();
        got.push(format!("{method} {path}\n{response}"));
    }
    let got = got
        .join("\n----\n")
        .replace(&record.id.to_string(), "<key>")
        .replace(&limited_record.id.to_string(), "<limited>");
    assert_pinned(&got, concat!(env!("CARGO_MANIFEST_DIR"), "/tests/actix/pinned.txt"));
    h.stop().await;
}
