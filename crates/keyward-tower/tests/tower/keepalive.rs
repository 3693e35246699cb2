//! A request the layer refuses before its body is read must not break the keep-alive connection
//! it came on: over HTTP/1.1 the refusal says `Connection: close` (and the server closes), or the
//! connection stays usable. Raw bytes over one TCP connection, as a client library would send
//! them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use keyward_core::KeyEnvironment;
use keyward_core::testing::{RawHttp, RawResponse};
use keyward_tower::KeywardLayer;
use tokio::net::TcpListener;
use tokio::time::timeout;

use crate::support::Harness;

/// Long enough for anything on a loaded machine; nothing here is a measurement.
const PATIENCE: Duration = Duration::from_secs(10);

/// A body the server has not read when it refuses: larger than what a socket read takes in.
const BODY: usize = 60 * 1024;

async fn serve(layer: KeywardLayer) -> SocketAddr {
    let app = Router::new()
        .route("/upload", post(|body: Bytes| async move { body.len().to_string() }))
        .route("/ping", get(|| async { "pong" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

fn upload(auth: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/octet-stream\r\n\
         Content-Length: {BODY}\r\n\r\n"
    )
    .into_bytes();
    request.resize(request.len() + BODY, b'x');
    request
}

/// Sends `first` on a fresh connection, reads its response, then, unless that response closed
/// the connection, sends `second` on the same connection and reads its answer. A client that
/// honours `Connection: close` never loses a request; one that reuses the connection must get
/// an answer.
async fn two_requests(addr: SocketAddr, first: &[u8], second: &[u8]) -> (RawResponse, Option<RawResponse>) {
    timeout(PATIENCE, async {
        let mut conn = RawHttp::connect(addr).await.expect("connect");
        // The server may answer, and stop reading, before the whole body is written.
        let _ = conn.send(first).await;
        let refused = conn.response().await.expect("the refusal arrives");
        if refused.closes() {
            assert!(conn.closed().await, "`Connection: close`, and the server closes the connection");
            return (refused, None);
        }
        conn.send(second).await.expect("the connection was left open: the next request can be sent");
        let next = conn.response().await.unwrap_or_else(|e| {
            panic!("the refusal kept the connection alive, but the next request on it failed: {e}")
        });
        (refused, Some(next))
    })
    .await
    .expect("no hang")
}

fn ping(auth: &str) -> Vec<u8> {
    format!("GET /ping HTTP/1.1\r\nHost: test\r\n{auth}\r\n").into_bytes()
}

#[tokio::test]
async fn a_request_refused_before_its_body_was_read_closes_its_connection_or_keeps_it_usable() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let auth = format!("Authorization: Bearer {}\r\n", key.secret.expose_secret());
    let unknown = h.service.format().generate(KeyEnvironment::Live);
    let addr = serve(KeywardLayer::new(h.verifier())).await;

    // Refused before any I/O (no key), and after a store read (a well-formed key never issued).
    for (what, first, code) in [
        ("no key", upload(""), "MISSING_API_KEY"),
        (
            "unknown key",
            upload(&format!("Authorization: Bearer {}\r\n", unknown.expose_secret())),
            "INVALID_API_KEY",
        ),
    ] {
        for _ in 0..5 {
            let (refused, next) = two_requests(addr, &first, &ping(&auth)).await;
            assert_eq!(refused.status, 401, "{what}");
            assert_eq!(refused.json()["error"]["code"], code, "{what}");
            assert!(refused.closes(), "{what}: the refusal says `Connection: close`");
            if let Some(next) = next {
                assert_eq!((next.status, &next.body[..]), (200, &b"pong"[..]), "{what}");
            }
        }
    }

    // A verified upload is read by its handler: the connection stays open for the next request.
    let (uploaded, next) = two_requests(addr, &upload(&auth), &ping(&auth)).await;
    assert_eq!((uploaded.status, &uploaded.body[..]), (200, BODY.to_string().as_bytes()));
    assert!(!uploaded.closes());
    assert_eq!(next.expect("kept alive").status, 200);
}

#[tokio::test]
async fn a_refused_request_without_a_body_keeps_its_connection() {
    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let auth = format!("Authorization: Bearer {}\r\n", key.secret.expose_secret());
    let addr = serve(KeywardLayer::new(h.verifier())).await;

    let (refused, next) = two_requests(addr, &ping(""), &ping(&auth)).await;
    assert_eq!(refused.status, 401);
    assert!(!refused.closes(), "nothing was left unread: no reason to close");
    let next = next.expect("kept alive");
    assert_eq!((next.status, &next.body[..]), (200, &b"pong"[..]));
}

/// HTTP/2 forbids connection-specific headers, and a refused stream leaves nothing behind on
/// the connection: neither plain HTTP/2 requests nor gRPC ones get `Connection: close`.
#[tokio::test]
async fn refusals_over_http2_and_grpc_never_say_connection_close() {
    use axum::http::{Request, Version};
    use tower::ServiceExt;

    let h = Harness::new().await;
    let app = Router::new().route("/upload", post(|| async { "" })).layer(KeywardLayer::new(h.verifier()));
    for (version, content_type) in [
        (Version::HTTP_2, "application/json"),
        (Version::HTTP_2, "application/grpc"),
        (Version::HTTP_11, "application/grpc"),
    ] {
        let request = Request::post("/upload")
            .version(version)
            .header("content-type", content_type)
            .header("content-length", "5")
            .body(axum::body::Body::from("hello"))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        assert!(response.headers().get("connection").is_none(), "{version:?} {content_type}");
        let refused = if content_type == "application/grpc" {
            response.headers().get("grpc-status").is_some()
        } else {
            response.status() == 401
        };
        assert!(refused, "{version:?} {content_type}: {response:?}");
    }
}
