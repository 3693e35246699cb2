//! keyward-actix against a real actix `HttpServer` on `127.0.0.1:0`, a real SQLite file store
//! (behind `InstrumentedStore`), `KeyService` and `Verifier`, driven over HTTP by reqwest.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::ServerHandle;
use actix_web::web::Bytes;
use actix_web::{App, HttpResponse, HttpServer, web};
use keyward_actix::{KeywardMiddleware, VerifiedApiKey};
use keyward_core::testing::InstrumentedStore;
use keyward_core::{
    Actor, ApiKey, KeyEnvironment, KeyService, ManualClock, NewKey, NewWorkspace, RateLimitPolicy,
    RateLimitWindow, ScopeSet, Verifier, Workspace,
};
use keyward_store::SqliteStore;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::sync::Notify;

mod pinned;

/// Lets a test hold the `/slow` handler in flight.
#[derive(Debug, Default)]
struct Gate {
    entered: Notify,
    release: Notify,
}

struct Harness {
    base: String,
    client: reqwest::Client,
    service: KeyService,
    store: Arc<InstrumentedStore>,
    clock: Arc<ManualClock>,
    workspace: Workspace,
    gate: Arc<Gate>,
    server: ServerHandle,
    _dir: tempfile::TempDir,
}

async fn whoami(key: VerifiedApiKey) -> HttpResponse {
    HttpResponse::Ok().body(key.key_id().to_string())
}

async fn slow(key: VerifiedApiKey, gate: web::Data<Gate>) -> HttpResponse {
    gate.entered.notify_one();
    gate.release.notified().await;
    HttpResponse::Ok().body(key.key_id().to_string())
}

async fn upload(_key: VerifiedApiKey, body: Bytes) -> HttpResponse {
    HttpResponse::Ok().body(body.len().to_string())
}

/// A streamed body: one chunk at once, the end only when the gate is released.
struct GatedBody {
    sent_first: bool,
    release: Pin<Box<dyn Future<Output = ()>>>,
}

impl MessageBody for GatedBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        if !self.sent_first {
            self.sent_first = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(b"first;"))));
        }
        ready!(self.release.as_mut().poll(cx));
        Poll::Ready(None)
    }
}

async fn stream(_key: VerifiedApiKey, gate: web::Data<Gate>) -> HttpResponse {
    let gate = gate.into_inner();
    HttpResponse::Ok().body(GatedBody {
        sent_first: false,
        release: Box::pin(async move { gate.release.notified().await }),
    })
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyward.db");
        let sqlite = SqliteStore::open(path.to_str().unwrap()).await.expect("open sqlite store");
        let store = InstrumentedStore::new(Arc::new(sqlite));
        let clock = Arc::new(ManualClock::starting_now());
        let service = KeyService::new(store.clone()).with_clock(clock.clone());
        // A roomy workspace limit, so that only the key limits under test ever bind.
        let workspace = service
            .create_workspace(
                NewWorkspace {
                    rate_limit: Some(RateLimitPolicy::new([RateLimitWindow::per_minute(1_000_000)])),
                    ..NewWorkspace::live("Acme")
                },
                &Actor::system(),
            )
            .await
            .unwrap();
        let verifier = Verifier::builder(&service).build();
        let gate = Arc::new(Gate::default());

        let keyward = KeywardMiddleware::new(verifier);
        let ietf_only = KeywardMiddleware::new(
            Verifier::builder(&service).rate_limit_headers(keyward_core::RateLimitHeaders::Ietf).build(),
        );
        let gate_data = web::Data::from(gate.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(gate_data.clone())
                .service(web::resource("/whoami").wrap(keyward.clone()).route(web::get().to(whoami)))
                .service(
                    web::resource("/reports")
                        .wrap(keyward.clone().require_scope("reports:read".parse().unwrap()))
                        .route(web::get().to(whoami)),
                )
                .service(
                    web::resource("/sites/{site}")
                        .wrap(keyward.clone().resource(|req| req.match_info().get("site").map(str::to_owned)))
                        .route(web::get().to(whoami)),
                )
                .service(web::resource("/ietf").wrap(ietf_only.clone()).route(web::get().to(whoami)))
                .service(web::resource("/stream").wrap(keyward.clone()).route(web::get().to(stream)))
                .service(web::resource("/slow").wrap(keyward.clone()).route(web::get().to(slow)))
                .service(web::resource("/paid").wrap(keyward.clone().cost(1)).route(web::get().to(whoami)))
                .service(
                    web::resource("/proxied")
                        .wrap(keyward.clone().trusted_proxies(["127.0.0.1/32".parse().unwrap()]))
                        .route(web::get().to(whoami)),
                )
                .service(web::resource("/upload").wrap(keyward.clone()).route(web::post().to(upload)))
                // No middleware: the extractor alone must refuse.
                .service(web::resource("/unguarded").route(web::get().to(whoami)))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);

        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            service,
            store,
            clock,
            workspace,
            gate,
            server: handle,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.server.stop(true).await;
    }

    /// Creates a key in the harness's workspace, with `edit` applied to its settings.
    async fn key(&self, edit: impl FnOnce(&mut NewKey)) -> (String, ApiKey) {
        let mut new = NewKey::new(self.workspace.id, "test key");
        new.rate_limit = Some(RateLimitPolicy::new([RateLimitWindow::per_minute(100_000)]));
        edit(&mut new);
        let created = self.service.create_key(new, &Actor::system()).await.unwrap();
        (created.secret.expose_secret().to_owned(), created.key)
    }

    /// GETs `path` with `Authorization: Bearer <key>` when a key is given. No response may be a
    /// 500.
    async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = req.send().await.expect("request");
        assert_ne!(resp.status().as_u16(), 500, "{path} answered 500");
        resp
    }
}

/// Checks a success: 200 and the body the extractor produced (the key id).
async fn assert_ok(resp: reqwest::Response, key: &ApiKey) -> HeaderMap {
    assert_eq!(resp.status().as_u16(), 200);
    let headers = resp.headers().clone();
    assert_eq!(resp.text().await.unwrap(), key.id.to_string());
    headers
}

/// Checks an error's status, code and the one shape every error has:
/// `{"error": {"code", "message", "details", "requestId"}}`, `requestId` = `X-Request-Id`.
async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> (HeaderMap, Value) {
    assert_eq!(resp.status().as_u16(), status, "status for {code}");
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).expect("JSON body");
    let top: BTreeSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(top, BTreeSet::from(["error"]));
    let error = body["error"].as_object().expect("error object");
    let fields: BTreeSet<&str> = error.keys().map(String::as_str).collect();
    assert_eq!(fields, BTreeSet::from(["code", "details", "message", "requestId"]));
    assert_eq!(error["code"], code);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["details"].is_object());
    assert_eq!(error["requestId"], headers["x-request-id"].to_str().unwrap());
    if status == 401 {
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer realm=\"keyward\""));
    }
    (headers, body)
}

#[actix_web::test]
async fn a_valid_key_passes_with_rate_limit_and_request_id_headers() {
    let h = Harness::start().await;
    let (plain, key) =
        h.key(|k| k.rate_limit = Some(RateLimitPolicy::new([RateLimitWindow::per_minute(60)]))).await;

    let resp = h
        .client
        .get(format!("{}/whoami", h.base))
        .header("authorization", format!("Bearer {plain}"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    let headers = assert_ok(resp, &key).await;
    assert_eq!(headers["x-request-id"], "req-abc-123");
    assert_eq!(headers["x-ratelimit-limit"], "60");
    assert_eq!(headers["x-ratelimit-remaining"], "59");
    let reset: u64 = headers["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > 1_700_000_000);
    assert_eq!(headers["ratelimit-policy"], r#""key-60s";q=60;w=60, "workspace-60s";q=1000000;w=60"#);
    assert!(headers["ratelimit"].to_str().unwrap().starts_with(r#""key-60s";r=59;t="#));

    // Without an incoming id the middleware makes one; the bare-key header works too.
    let resp = h.client.get(format!("{}/whoami", h.base)).header("x-api-key", &plain).send().await.unwrap();
    let headers = assert_ok(resp, &key).await;
    let generated = headers["x-request-id"].to_str().unwrap();
    assert!(!generated.is_empty() && generated != "req-abc", "a fresh id is generated: {generated}");
    assert_eq!(headers["x-ratelimit-remaining"], "58");
    h.stop().await;
}

#[actix_web::test]
async fn a_missing_key_is_401_missing_api_key() {
    let h = Harness::start().await;
    let resp = h.get("/whoami", None).await;
    let (headers, _) = assert_error(resp, 401, "MISSING_API_KEY").await;
    assert!(headers.contains_key("www-authenticate"));

    // An incoming request id is echoed on errors too.
    let resp =
        h.client.get(format!("{}/whoami", h.base)).header("x-request-id", "rid-9").send().await.unwrap();
    let (_, body) = assert_error(resp, 401, "MISSING_API_KEY").await;
    assert_eq!(body["error"]["requestId"], "rid-9");

    // A non-bearer Authorization header is no key either.
    let resp = h
        .client
        .get(format!("{}/whoami", h.base))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "MISSING_API_KEY").await;
    h.stop().await;
}

#[actix_web::test]
async fn the_extractor_without_the_middleware_refuses_with_missing_api_key() {
    let h = Harness::start().await;
    let (plain, _) = h.key(|_| {}).await;
    let resp = h.get("/unguarded", Some(&plain)).await;
    assert_error(resp, 401, "MISSING_API_KEY").await;
    h.stop().await;
}

#[actix_web::test]
async fn malformed_and_unknown_keys_are_401_invalid_api_key() {
    let h = Harness::start().await;
    let (plain, _) = h.key(|_| {}).await;

    let resp = h.get("/whoami", Some("not-a-key")).await;
    assert_error(resp, 401, "INVALID_API_KEY").await;

    // A flipped last character breaks the checksum.
    let mut broken = plain.clone();
    let last = broken.pop().unwrap();
    broken.push(if last == 'A' { 'B' } else { 'A' });
    let resp = h.get("/whoami", Some(&broken)).await;
    let (_, body) = assert_error(resp, 401, "INVALID_API_KEY").await;
    assert!(!body.to_string().contains(&broken));

    // Well-formed, valid checksum, never issued.
    let unknown = h.service.format().generate(KeyEnvironment::Live);
    let resp = h.get("/whoami", Some(unknown.expose_secret())).await;
    let (_, body) = assert_error(resp, 401, "INVALID_API_KEY").await;
    assert!(!body.to_string().contains(unknown.expose_secret()));
    h.stop().await;
}

#[actix_web::test]
async fn inactive_revoked_and_expired_keys_are_refused_with_their_codes() {
    let h = Harness::start().await;

    let (inactive, _) = h.key(|k| k.active = false).await;
    assert_error(h.get("/whoami", Some(&inactive)).await, 401, "KEY_INACTIVE").await;

    let (revoked, rkey) = h.key(|_| {}).await;
    h.service.revoke_key(h.workspace.id, rkey.id, &Actor::system()).await.unwrap();
    assert_error(h.get("/whoami", Some(&revoked)).await, 401, "KEY_REVOKED").await;

    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let (expiring, ekey) = h.key(|k| k.expires_at = Some(expires)).await;
    assert_ok(h.get("/whoami", Some(&expiring)).await, &ekey).await;
    h.clock.advance(chrono::Duration::hours(2));
    assert_error(h.get("/whoami", Some(&expiring)).await, 401, "KEY_EXPIRED").await;
    h.stop().await;
}

#[actix_web::test]
async fn revocation_is_seen_on_the_very_next_request() {
    let h = Harness::start().await;
    let (plain, key) = h.key(|_| {}).await;
    assert_ok(h.get("/whoami", Some(&plain)).await, &key).await;
    h.service.revoke_key(h.workspace.id, key.id, &Actor::system()).await.unwrap();
    assert_error(h.get("/whoami", Some(&plain)).await, 401, "KEY_REVOKED").await;
    h.stop().await;
}

#[actix_web::test]
async fn a_missing_scope_is_403_naming_it() {
    let h = Harness::start().await;
    let (writer, _) = h.key(|k| k.scopes = "reports:write".parse::<ScopeSet>().unwrap()).await;
    let (_, body) = assert_error(h.get("/reports", Some(&writer)).await, 403, "INSUFFICIENT_SCOPE").await;
    assert_eq!(body["error"]["details"]["missing"], serde_json::json!(["reports:read"]));

    let (reader, rkey) = h.key(|k| k.scopes = "reports:*".parse::<ScopeSet>().unwrap()).await;
    assert_ok(h.get("/reports", Some(&reader)).await, &rkey).await;
    h.stop().await;
}

#[actix_web::test]
async fn ip_allowlists_see_the_peer_and_forwarded_for_only_through_trusted_proxies() {
    let h = Harness::start().await;
    let list = |l: &[&str]| keyward_core::parse_ip_allowlist(l).unwrap();
    let (inside, ikey) = h.key(|k| k.ip_allowlist = list(&["127.0.0.0/8"])).await;
    assert_ok(h.get("/whoami", Some(&inside)).await, &ikey).await;
    let (outside, okey) = h.key(|k| k.ip_allowlist = list(&["203.0.113.0/24"])).await;
    let (_, body) = assert_error(h.get("/whoami", Some(&outside)).await, 403, "IP_NOT_ALLOWED").await;
    assert_eq!(body["error"]["details"]["address"], "127.0.0.1");
    let via = async |path: &str, xff: &str| {
        h.client
            .get(format!("{}{path}", h.base))
            .header("authorization", format!("Bearer {outside}"))
            .header("x-forwarded-for", xff)
            .send()
            .await
            .expect("request")
    };
    // Ignored where no proxy is trusted; believed through the trusted one, up to the first
    // untrusted hop.
    let (_, body) = assert_error(via("/whoami", "203.0.113.9").await, 403, "IP_NOT_ALLOWED").await;
    assert_eq!(body["error"]["details"]["address"], "127.0.0.1");
    assert_ok(via("/proxied", "203.0.113.9").await, &okey).await;
    let (_, body) =
        assert_error(via("/proxied", "203.0.113.9, 198.51.100.4").await, 403, "IP_NOT_ALLOWED").await;
    assert_eq!(body["error"]["details"]["address"], "198.51.100.4");
    h.stop().await;
}

#[actix_web::test]
async fn a_resource_outside_the_keys_restrictions_is_403() {
    let h = Harness::start().await;
    let (plain, key) = h.key(|k| k.resources = vec!["site-a".into()]).await;
    assert_ok(h.get("/sites/site-a", Some(&plain)).await, &key).await;
    let (_, body) =
        assert_error(h.get("/sites/site-b", Some(&plain)).await, 403, "RESOURCE_NOT_ALLOWED").await;
    assert_eq!(body["error"]["details"]["resource"], "site-b");

    // An unrestricted key may use any resource.
    let (free, fkey) = h.key(|_| {}).await;
    assert_ok(h.get("/sites/site-b", Some(&free)).await, &fkey).await;
    h.stop().await;
}

#[actix_web::test]
async fn a_key_in_the_url_is_400_even_with_a_valid_header() {
    let h = Harness::start().await;
    let (plain, _) = h.key(|_| {}).await;
    let resp = h.get("/whoami?api_key=whatever", Some(&plain)).await;
    assert_error(resp, 400, "API_KEY_IN_URL").await;
    let resp = h.get(&format!("/whoami?q={plain}"), None).await;
    let (_, body) = assert_error(resp, 400, "API_KEY_IN_URL").await;
    assert!(!body.to_string().contains(&plain));
    h.stop().await;
}

#[actix_web::test]
async fn the_rate_limit_refuses_exactly_past_the_policys_count() {
    let h = Harness::start().await;
    let (plain, key) =
        h.key(|k| k.rate_limit = Some(RateLimitPolicy::new([RateLimitWindow::per_minute(5)]))).await;
    for left in (0..5).rev() {
        let headers = assert_ok(h.get("/whoami", Some(&plain)).await, &key).await;
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert_eq!(headers["x-ratelimit-remaining"], left.to_string().as_str());
    }
    let (headers, body) = assert_error(h.get("/whoami", Some(&plain)).await, 429, "RATE_LIMITED").await;
    assert_eq!(headers["retry-after"], "12");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["x-ratelimit-limit"], "5");
    assert!(headers.contains_key("x-ratelimit-reset"));
    assert_eq!(body["error"]["details"]["retryAfterSeconds"], 12);
    h.stop().await;
}

#[actix_web::test]
async fn the_verifier_chooses_which_rate_limit_headers_answers_carry() {
    let h = Harness::start().await;
    let (plain, key) =
        h.key(|k| k.rate_limit = Some(RateLimitPolicy::new([RateLimitWindow::per_minute(1)]))).await;
    let passed = assert_ok(h.get("/ietf", Some(&plain)).await, &key).await;
    let (refused, _) = assert_error(h.get("/ietf", Some(&plain)).await, 429, "RATE_LIMITED").await;
    for headers in [&passed, &refused] {
        for name in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
            assert!(!headers.contains_key(name), "{name} is left out");
        }
    }
    assert_eq!(passed["ratelimit-policy"], r#""key-60s";q=1;w=60, "workspace-60s";q=1000000;w=60"#);
    assert!(passed.contains_key("ratelimit"));
    assert_eq!(refused["retry-after"], "60", "a refused client is still told when to come back");
    h.stop().await;
}

#[actix_web::test]
async fn the_concurrency_limit_holds_until_the_response_is_done() {
    let h = Harness::start().await;
    let (plain, key) = h.key(|k| k.concurrency_limit = Some(1)).await;

    let first = {
        let req = h.client.get(format!("{}/slow", h.base)).header("authorization", format!("Bearer {plain}"));
        actix_web::rt::spawn(async move { req.send().await.unwrap() })
    };
    h.gate.entered.notified().await;

    let (headers, _) = assert_error(h.get("/whoami", Some(&plain)).await, 429, "CONCURRENCY_LIMITED").await;
    assert_eq!(headers["retry-after"], "1");

    h.gate.release.notify_one();
    assert_ok(first.await.unwrap(), &key).await;
    assert_ok(h.get("/whoami", Some(&plain)).await, &key).await;
    h.stop().await;
}

#[actix_web::test]
async fn the_concurrency_slot_is_held_while_the_body_streams() {
    let h = Harness::start().await;
    let (plain, key) = h.key(|k| k.concurrency_limit = Some(1)).await;

    let mut streaming = h.get("/stream", Some(&plain)).await;
    assert_eq!(streaming.status().as_u16(), 200);
    assert_eq!(streaming.chunk().await.unwrap().as_deref(), Some(&b"first;"[..]));
    // The handler has returned, but its response is still being produced.
    assert_error(h.get("/whoami", Some(&plain)).await, 429, "CONCURRENCY_LIMITED").await;

    h.gate.release.notify_one();
    while streaming.chunk().await.unwrap().is_some() {}
    assert_ok(h.get("/whoami", Some(&plain)).await, &key).await;
    h.stop().await;
}

#[actix_web::test]
async fn credits_run_out_with_402() {
    let h = Harness::start().await;
    let (plain, key) = h.key(|k| k.credits = Some(2)).await;
    assert_ok(h.get("/paid", Some(&plain)).await, &key).await;
    assert_ok(h.get("/paid", Some(&plain)).await, &key).await;
    let (_, body) = assert_error(h.get("/paid", Some(&plain)).await, 402, "INSUFFICIENT_CREDITS").await;
    assert_eq!(body["error"]["details"]["required"], 1);
    assert_eq!(body["error"]["details"]["remaining"], 0);
    // Routes that cost nothing still pass.
    assert_ok(h.get("/whoami", Some(&plain)).await, &key).await;
    h.stop().await;
}

#[actix_web::test]
async fn a_thousand_requests_read_the_store_once() {
    let h = Harness::start().await;
    let (plain, key) = h.key(|_| {}).await;
    let before = h.store.digest_lookups();
    for _ in 0..1000 {
        let resp = h.get("/whoami", Some(&plain)).await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    assert_ok(h.get("/whoami", Some(&plain)).await, &key).await;
    assert_eq!(h.store.digest_lookups() - before, 1);
    h.stop().await;
}

#[actix_web::test]
async fn a_store_outage_refuses_uncached_keys_and_serves_cached_ones() {
    let h = Harness::start().await;
    let (cached, ckey) = h.key(|_| {}).await;
    let (uncached, ukey) = h.key(|_| {}).await;
    assert_ok(h.get("/whoami", Some(&cached)).await, &ckey).await;

    h.store.set_down(true);
    assert_error(h.get("/whoami", Some(&uncached)).await, 503, "STORE_UNAVAILABLE").await;
    assert_ok(h.get("/whoami", Some(&cached)).await, &ckey).await;

    h.store.set_down(false);
    assert_ok(h.get("/whoami", Some(&uncached)).await, &ukey).await;
    h.stop().await;
}

/// A request refused before its body was read must not break the keep-alive connection it came
/// on: the refusal says `Connection: close` (and the server closes), or the connection stays
/// usable. Raw bytes over one TCP connection, as a client library would send them.
#[actix_web::test]
async fn a_request_refused_before_its_body_was_read_closes_its_connection_or_keeps_it_usable() {
    use keyward_core::testing::RawHttp;

    const BODY: usize = 60 * 1024;
    let h = Harness::start().await;
    let (plain, _) = h.key(|_| {}).await;
    let addr: std::net::SocketAddr = h.base.trim_start_matches("http://").parse().unwrap();
    let auth = format!("Authorization: Bearer {plain}\r\n");
    let unknown = h.service.format().generate(KeyEnvironment::Live);
    let upload = |auth: &str| {
        let mut request = format!(
            "POST /upload HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/octet-stream\r\n\
             Content-Length: {BODY}\r\n\r\n"
        )
        .into_bytes();
        request.resize(request.len() + BODY, b'x');
        request
    };
    let whoami = format!("GET /whoami HTTP/1.1\r\nHost: test\r\n{auth}\r\n");

    for (what, first, code) in [
        ("no key", upload(""), "MISSING_API_KEY"),
        (
            "unknown key",
            upload(&format!("Authorization: Bearer {}\r\n", unknown.expose_secret())),
            "INVALID_API_KEY",
        ),
    ] {
        for _ in 0..5 {
            let exchange = async {
                let mut conn = RawHttp::connect(addr).await.expect("connect");
                // The server may answer, and stop reading, before the whole body is written.
                let _ = conn.send(&first).await;
                let refused = conn.response().await.expect("the refusal arrives");
                assert_eq!(refused.status, 401, "{what}");
                assert_eq!(refused.json()["error"]["code"], code, "{what}");
                assert!(refused.closes(), "{what}: the refusal says `Connection: close`");
                assert!(conn.closed().await, "{what}: and the server closes the connection");
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await.expect("no hang");
        }
    }

    // A refused request without a body leaves nothing unread: the connection stays open.
    let exchange = async {
        let mut conn = RawHttp::connect(addr).await.expect("connect");
        conn.send("GET /whoami HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("send");
        let refused = conn.response().await.expect("response");
        assert_eq!(refused.status, 401);
        assert!(!refused.closes());
        conn.send(&whoami).await.expect("send");
        assert_eq!(conn.response().await.expect("kept alive").status, 200);
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await.expect("no hang");

    // A verified upload is read by its handler: the connection serves the next request.
    let exchange = async {
        let mut conn = RawHttp::connect(addr).await.expect("connect");
        conn.send(upload(&auth)).await.expect("send");
        let uploaded = conn.response().await.expect("response");
        assert_eq!((uploaded.status, &uploaded.body[..]), (200, BODY.to_string().as_bytes()));
        assert!(!uploaded.closes());
        conn.send(&whoami).await.expect("send");
        assert_eq!(conn.response().await.expect("kept alive").status, 200);
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await.expect("no hang");
    h.stop().await;
}

/// The middleware marks such refusals itself, whatever the actix-http dispatcher underneath does:
/// seen here without a dispatcher at all.
#[actix_web::test]
async fn the_middleware_marks_refusals_that_leave_a_body_unread_as_closing() {
    use actix_web::http::ConnectionType;
    use actix_web::test;

    let h = Harness::start().await;
    let app = test::init_service(
        App::new().service(
            web::resource("/upload")
                .wrap(KeywardMiddleware::new(Verifier::builder(&h.service).build()))
                .route(web::post().to(upload)),
        ),
    )
    .await;
    let with_body = test::TestRequest::post().uri("/upload").set_payload("hello").to_request();
    let refused = test::call_service(&app, with_body).await;
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(refused.response().head().connection_type(), ConnectionType::Close);

    let without_body = test::TestRequest::post().uri("/upload").to_request();
    let refused = test::call_service(&app, without_body).await;
    assert_eq!(refused.status().as_u16(), 401);
    assert_ne!(refused.response().head().connection_type(), ConnectionType::Close);
    h.stop().await;
}
