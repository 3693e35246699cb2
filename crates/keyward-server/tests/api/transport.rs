//! `keyward serve`'s connections (`serve_http`), over raw sockets: stalled heads, bodies and idle
//! connections are closed after their timeouts (shortened here), stalled clients do not keep
//! others out, connections past the cap wait, a refusal that leaves a body unread closes its
//! connection, and shutdown still lets requests finish.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keyward_core::testing::{RawHttp, RawResponse};
use keyward_core::{Actor, NewKey, NewWorkspace, Plan, RateLimitPolicy, RateLimitWindow, ScopeSet};
use keyward_server::serve::{ConnectionLimits, ServeConfig, node, serve_http};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// How long past a timeout a connection may take to be closed, on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);
/// A timeout no test reaches.
const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_secs(1);

struct Served {
    addr: SocketAddr,
    root: String,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A first-start node on a fresh SQLite file, served by `serve_http` within `limits`.
async fn serve(limits: ConnectionLimits) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = ServeConfig {
        database: format!("sqlite://{}", dir.path().join("keyward.db").display()),
        connections: limits,
        ..ServeConfig::default()
    };
    let node = node(&config).await.expect("node");
    // A key whose limits the tests never reach (the first-start root key's workspace has the
    // live defaults, which 200 connections would exceed).
    let service = &node.state.service;
    let sys = Actor::system();
    let roomy = RateLimitPolicy::new([RateLimitWindow::per_second(1_000_000)]);
    let plan = Plan {
        id: "roomy".into(),
        name: "Roomy".into(),
        api_access: true,
        max_keys: None,
        key_rate_limit: roomy.clone(),
    };
    service.save_plan(plan, &sys).await.expect("plan");
    let new = NewWorkspace {
        rate_limit: Some(roomy.clone()),
        ..NewWorkspace::live("transport").with_plan("roomy".into())
    };
    let ws = service.create_workspace(new, &sys).await.expect("workspace");
    let key = NewKey { rate_limit: Some(roomy), ..NewKey::new(ws.id, "admin") }
        .with_scopes("*".parse::<ScopeSet>().expect("scope"));
    let root = service.create_key(key, &sys).await.expect("key").secret.expose_secret().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve_http(listener, node.app(), config.connections, async {
        let _ = stopped.await;
    }));
    Served { addr, root, stop: Some(stop), served, _dir: dir }
}

fn limits(header: Duration, body: Duration, keep_alive: Duration) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: header,
        body_read_timeout: body,
        keep_alive_timeout: keep_alive,
        ..ConnectionLimits::default()
    }
}

impl Served {
    fn status(&self) -> String {
        format!("GET /v1/status HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\r\n", self.root)
    }

    /// A `POST /v1/keys` head announcing `length` body bytes.
    fn create_head(&self, content_type: &str, length: usize) -> String {
        format!(
            "POST /v1/keys HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n",
            self.root
        )
    }

    async fn connect(&self) -> RawHttp {
        RawHttp::connect(self.addr).await.expect("connect")
    }
}

/// A catalog error: status, code, and the body's request id is the header's.
fn assert_error(r: &RawResponse, status: u16, code: &str) {
    let body = r.json();
    assert_eq!((r.status, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    assert_eq!(body["error"]["requestId"].as_str(), r.header("x-request-id"), "{body}");
}

#[tokio::test]
async fn a_request_head_that_stalls_is_closed_after_the_header_timeout() {
    let s = serve(limits(SHORT, LONG, LONG)).await;
    let mut silent = s.connect().await;
    let mut half = s.connect().await;
    half.send("GET /v1/status HTTP/1.1\r\nHost: test\r\nAuthoriz").await.expect("send");
    // Well before the keep-alive timeout: it is the header timeout that closes them.
    for (what, conn) in [("no byte sent", &mut silent), ("half a head", &mut half)] {
        let closed = timeout(SHORT + SLACK, conn.closed()).await;
        assert_eq!(closed, Ok(true), "{what}: closed, without an answer, after the header timeout");
    }
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_after_the_body_timeout_with_408() {
    let s = serve(limits(LONG, SHORT, LONG)).await;
    let mut conn = s.connect().await;
    conn.send(s.create_head("application/json", 100) + "{\"name\":").await.expect("send");
    let r = timeout(SHORT + SLACK, conn.response()).await.expect("answered after the body timeout");
    let r = r.expect("a response");
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    assert!(r.closes(), "and the connection closes");
    assert_eq!(timeout(SLACK, conn.closed()).await, Ok(true));

    // 10 GB announced, 10 bytes sent: the same, instead of waiting for the rest forever.
    let mut conn = s.connect().await;
    conn.send(s.create_head("application/json", 10_000_000_000) + "{\"name\":1").await.expect("send");
    let r = timeout(SHORT + SLACK, conn.response()).await.expect("answered").expect("a response");
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    assert!(r.closes());
    assert_eq!(timeout(SLACK, conn.closed()).await, Ok(true));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let s = serve(limits(LONG, LONG, SHORT)).await;
    let mut conn = s.connect().await;
    // In use for longer than the keep-alive timeout: each request restarts it.
    for _ in 0..12 {
        conn.send(s.status()).await.expect("send");
        let r = timeout(SLACK, conn.response()).await.expect("answered").expect("response");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(!r.closes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then left idle: closed after the keep-alive timeout, well before the header timeout.
    assert_eq!(timeout(SHORT + SLACK, conn.closed()).await, Ok(true));
}

#[tokio::test]
async fn two_hundred_stalled_connections_do_not_keep_a_normal_request_out() {
    let s = serve(limits(Duration::from_secs(20), Duration::from_secs(20), Duration::from_secs(20))).await;
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut conn = s.connect().await;
        match i % 4 {
            0 => {}
            1 => conn.send("POST /v1/keys HTTP/1.1\r\nHost: test\r\nContent-").await.expect("send"),
            2 => conn.send(s.create_head("application/json", 100) + "{").await.expect("send"),
            _ => {
                conn.send(s.status()).await.expect("send");
                assert_eq!(conn.response().await.expect("response").status, 200);
            }
        }
        stalled.push(conn);
    }
    let started = Instant::now();
    let reply = timeout(
        Duration::from_secs(10),
        reqwest::Client::new().get(format!("http://{}/v1/status", s.addr)).bearer_auth(&s.root).send(),
    )
    .await
    .expect("answered while 200 connections stall")
    .expect("response");
    assert_eq!(reply.status(), 200);
    eprintln!("a request among 200 stalled connections took {:?}", started.elapsed());
    drop(stalled);
}

/// Past the cap, the stalled connections' own timeouts make room: the normal request, queued
/// behind 50 of them, still gets in.
#[tokio::test]
async fn stalled_connections_holding_every_slot_are_timed_out_to_make_room() {
    let s = serve(ConnectionLimits { max_connections: 150, ..limits(SHORT, SHORT, SHORT) }).await;
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut conn = s.connect().await;
        match i % 3 {
            0 => {}
            1 => conn.send("GET /v1/status HTTP/1.1\r\nHost: te").await.expect("send"),
            _ => conn.send(s.create_head("application/json", 100) + "{").await.expect("send"),
        }
        stalled.push(conn);
    }
    let reply = timeout(
        Duration::from_secs(15),
        reqwest::Client::new().get(format!("http://{}/v1/status", s.addr)).bearer_auth(&s.root).send(),
    )
    .await
    .expect("answered once stalled connections time out")
    .expect("response");
    assert_eq!(reply.status(), 200);
    drop(stalled);
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let s = serve(ConnectionLimits { max_connections: 2, ..limits(LONG, LONG, LONG) }).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = s.connect().await;
        conn.send(s.status()).await.expect("send");
        assert_eq!(conn.response().await.expect("response").status, 200, "served: holds a slot");
        held.push(conn);
    }
    // The kernel completes the handshake, but the server does not accept a third connection.
    let mut third = s.connect().await;
    third.send(s.status()).await.expect("send");
    assert!(
        timeout(Duration::from_millis(500), third.response()).await.is_err(),
        "no answer while both slots are taken"
    );
    drop(held.pop());
    let r = timeout(SLACK, third.response()).await.expect("served once a slot frees").expect("response");
    assert_eq!(r.status, 200);
}

/// Sends `first` (a head and a 60 KiB body) on a fresh connection and reads the answer; unless
/// it announced the close, sends a status request on the same connection, which must succeed.
async fn refused_then_next(s: &Served, head: String) -> RawResponse {
    let mut request = head.into_bytes();
    request.resize(request.len() + 60 * 1024, b' ');
    timeout(Duration::from_secs(10), async {
        let mut conn = s.connect().await;
        // The server may answer, and stop reading, before the whole body is written.
        let _ = conn.send(&request).await;
        let refused = conn.response().await.expect("the refusal arrives");
        if refused.closes() {
            assert!(conn.closed().await, "`Connection: close`, and the server closes");
        } else {
            conn.send(s.status()).await.expect("the connection was left open");
            let next = conn.response().await.expect("the next request on a kept-alive connection");
            assert_eq!(next.status, 200);
        }
        refused
    })
    .await
    .expect("no hang")
}

#[tokio::test]
async fn a_refusal_that_leaves_the_body_unread_closes_its_connection() {
    let s = serve(ConnectionLimits::default()).await;
    let no_key = "POST /v1/keys HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                  Content-Length: 61440\r\n\r\n";
    for _ in 0..5 {
        let r = refused_then_next(&s, no_key.to_owned()).await;
        assert_error(&r, 401, "MISSING_API_KEY");
        assert!(r.closes());
        let r = refused_then_next(&s, s.create_head("text/plain", 60 * 1024)).await;
        assert_error(&r, 400, "VALIDATION_FAILED");
        assert!(r.closes());
    }

    // A body the handler reads keeps the connection: a key is created, then the same connection
    // reads the audit trail, which holds the client's address.
    let mut conn = s.connect().await;
    let body = r#"{"name":"kept-alive"}"#;
    conn.send(s.create_head("application/json", body.len()) + body).await.expect("send");
    let created = conn.response().await.expect("response");
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    assert!(!created.closes());
    let audit = format!(
        "GET /v1/audit-events?limit=1 HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\r\n",
        s.root
    );
    conn.send(audit).await.expect("send");
    let events = conn.response().await.expect("kept alive").json();
    assert_eq!(events["data"][0]["ip"], "127.0.0.1", "{events}");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_a_request_in_flight_end() {
    let mut s = serve(limits(LONG, SHORT, LONG)).await;
    let mut idle = s.connect().await;
    idle.send(s.status()).await.expect("send");
    assert_eq!(idle.response().await.expect("response").status, 200);
    let mut uploading = s.connect().await;
    uploading.send(s.create_head("application/json", 100) + "{").await.expect("send");
    // The upload has reached its handler once the server reads the next request after it.
    let mut probe = s.connect().await;
    probe.send(s.status()).await.expect("send");
    assert_eq!(probe.response().await.expect("response").status, 200);

    s.stop.take().expect("running").send(()).expect("server running");
    assert_eq!(timeout(SLACK, idle.closed()).await, Ok(true), "an idle connection is closed at once");
    let r = timeout(SHORT + SLACK, uploading.response()).await.expect("the upload ends").expect("response");
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    timeout(SLACK, &mut s.served).await.expect("serve_http returns").expect("no panic").expect("no error");
    assert!(RawHttp::connect(s.addr).await.is_err(), "no longer listening");
}
