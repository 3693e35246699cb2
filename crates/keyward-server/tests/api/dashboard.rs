//! The dashboard: its pages and their headers, and sessions standing in for a key on `/v1`.

use std::time::Duration;

use keyward_server::dashboard::{SessionConfig, Sessions};
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::Server;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A client that follows no redirects, so the tests see them.
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn assert_security_headers(headers: &HeaderMap) {
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.contains_key("x-request-id"));
}

/// A server whose dashboard sessions follow `config`.
async fn with_sessions(config: SessionConfig) -> Server {
    Server::start_with(|mut state| {
        state.dashboard = Sessions::new(config);
        state
    })
    .await
}

/// A signed-in browser: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
    body: Value,
}

async fn sign_in(s: &Server, key: &str) -> Session {
    let resp = client()
        .post(format!("{}/dashboard/session", s.base))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_security_headers(resp.headers());
    let set_cookie = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    Session { cookie, csrf: body["csrfToken"].as_str().unwrap().to_owned(), set_cookie, body }
}

/// A `/v1` call with the cookie and, when given, an `X-Keyward-Csrf` header.
async fn v1(s: &Server, method: Method, path: &str, cookie: &str, csrf: Option<&str>) -> (StatusCode, Value) {
    let mut req = client().request(method, format!("{}/v1{path}", s.base)).header("cookie", cookie);
    if let Some(csrf) = csrf {
        req = req.header("x-keyward-csrf", csrf);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn root_redirects_to_the_dashboard_whose_pages_carry_the_security_headers() {
    let s = Server::start().await;
    let resp = client().get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/dashboard/");
    assert_security_headers(resp.headers());

    let resp = client().get(format!("{}/dashboard", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(resp.headers()["location"], "/dashboard/");

    let resp = client().get(format!("{}/dashboard/", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_security_headers(resp.headers());
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="assets/app.js"></script>"#), "{html}");
    assert!(html.contains(r#"<link rel="stylesheet" href="assets/app.css">"#), "{html}");
    // Nothing inline for the CSP to refuse.
    assert!(!html.contains("style=") && !html.contains("<style") && !html.contains("<script>"), "{html}");
}

#[tokio::test]
async fn assets_are_embedded_with_their_content_types_and_etags() {
    let s = Server::start().await;
    for (file, content_type, needle) in [
        ("app.js", "text/javascript; charset=utf-8", "Create API Key"),
        ("app.css", "text/css; charset=utf-8", "@media"),
    ] {
        let url = format!("{}/dashboard/assets/{file}", s.base);
        let resp = client().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{file}");
        assert_security_headers(resp.headers());
        assert_eq!(resp.headers()["content-type"], content_type);
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        assert!(resp.text().await.unwrap().contains(needle), "{file}");
        let again = client().get(&url).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{file}");
    }
    let js = client()
        .get(format!("{}/dashboard/assets/app.js", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // No inline style is ever set from the script either (the CSP would refuse it).
    assert!(!js.contains(".style.") && !js.contains("innerHTML"), "the bundle sets styles or parses HTML");

    let missing = s.call(Method::GET, "/dashboard/assets/nope.js", None, None).await;
    missing.assert_error(404, "NOT_FOUND");
    assert_security_headers(&missing.headers);
}

#[tokio::test]
async fn a_bad_key_gets_no_session() {
    let s = Server::start().await;
    let resp = client()
        .post(format!("{}/dashboard/session", s.base))
        .json(&json!({ "key": "kw_live_not-a-key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!resp.headers().contains_key(SET_COOKIE));
    assert_security_headers(resp.headers());
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INVALID_API_KEY");
    assert_eq!(body["error"]["requestId"], rid.as_str());

    // A real key that is switched off cannot sign in either.
    let (id, secret) = s.key("off", &["keys:read"]).await;
    s.post(&format!("/v1/keys/{id}/deactivate"), &s.root, json!({})).await;
    let r = s.call(Method::POST, "/dashboard/session", None, Some(json!({ "key": secret }))).await;
    r.assert_error(401, "KEY_INACTIVE");
    assert!(!r.headers.contains_key(SET_COOKIE));
}

#[tokio::test]
async fn a_session_stands_in_for_its_key_only_with_the_csrf_token() {
    let s = Server::start().await;
    let session = sign_in(&s, &s.root).await;
    let flags: Vec<&str> = session.set_cookie.split(';').map(str::trim).collect();
    assert!(session.cookie.starts_with("kw_session=") && session.cookie.len() > "kw_session=".len() + 40);
    assert!(
        flags.contains(&"HttpOnly") && flags.contains(&"SameSite=Strict") && flags.contains(&"Path=/"),
        "{flags:?}"
    );
    assert!(!flags.contains(&"Secure"), "plain http: a Secure cookie would never come back");
    assert_ne!(
        session.csrf,
        session.cookie["kw_session=".len()..],
        "the CSRF token is not the session token"
    );
    assert_eq!(session.body["keyName"], "root");
    assert_eq!(session.body["scopes"], json!(["*"]));
    assert_eq!(session.body["workspaceId"], s.workspace.as_str());
    assert!(!session.body.to_string().contains(&s.root), "the key never comes back");

    let (status, body) = v1(&s, Method::GET, "/keys", &session.cookie, Some(&session.csrf)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = v1(&s, Method::GET, "/status", &session.cookie, Some(&session.csrf)).await;
    assert_eq!((status, body["keyName"].as_str()), (StatusCode::OK, Some("root")));

    let (status, body) = v1(&s, Method::GET, "/keys", &session.cookie, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MISSING_API_KEY")));
    let (status, body) = v1(&s, Method::POST, "/keys", &session.cookie, Some("not-the-token")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MISSING_API_KEY")));
    // The CSRF token alone, without the cookie, is nothing either.
    let (status, _) = v1(&s, Method::GET, "/keys", "kw_session=forged", Some(&session.csrf)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A request that brings its own key is left alone: the session adds nothing to it.
    let (_, reader) = s.key("reader", &["keys:read"]).await;
    let resp = client()
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&reader)
        .header("cookie", &session.cookie)
        .header("x-keyward-csrf", &session.csrf)
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // The audit trail names the session's key as the actor, with the browser's address.
    let (status, created) = {
        let resp = client()
            .post(format!("{}/v1/keys", s.base))
            .header("cookie", &session.cookie)
            .header("x-keyward-csrf", &session.csrf)
            .header("user-agent", "dashboard-test")
            .json(&json!({ "name": "from the dashboard", "scopes": ["keys:read"] }))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let events = s.get(&format!("/v1/audit-events?keyId={}", created["id"].as_str().unwrap()), &s.root).await;
    let event = &events.body["data"][0];
    assert_eq!(event["action"], "key.created");
    assert_eq!(event["actorKeyId"], session.body["keyId"]);
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["userAgent"], "dashboard-test");
}

#[tokio::test]
async fn get_tells_who_is_signed_in_and_delete_ends_the_session() {
    let s = Server::start().await;
    let session = sign_in(&s, &s.root).await;
    let get = |cookie: String| {
        let url = format!("{}/dashboard/session", s.base);
        async move { client().get(url).header("cookie", cookie).send().await.unwrap() }
    };
    let resp = get(session.cookie.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["csrfToken"], session.csrf.as_str());

    // Sign-out needs the CSRF token too.
    let out = |csrf: Option<&str>| {
        let mut req =
            client().delete(format!("{}/dashboard/session", s.base)).header("cookie", &session.cookie);
        if let Some(csrf) = csrf {
            req = req.header("x-keyward-csrf", csrf);
        }
        req.send()
    };
    assert_eq!(out(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(out(Some("wrong")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let (status, _) = v1(&s, Method::GET, "/status", &session.cookie, Some(&session.csrf)).await;
    assert_eq!(status, StatusCode::OK, "a refused sign-out leaves the session");

    let resp = out(Some(&session.csrf)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let cleared = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("kw_session=;") && cleared.contains("Max-Age=0"), "{cleared}");

    let (status, body) = v1(&s, Method::GET, "/status", &session.cookie, Some(&session.csrf)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MISSING_API_KEY")));
    assert_eq!(get(session.cookie.clone()).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_expire_when_idle() {
    let config = SessionConfig { idle_timeout: Duration::from_millis(400), ..SessionConfig::default() };
    let s = with_sessions(config).await;
    let session = sign_in(&s, &s.root).await;
    let (status, _) = v1(&s, Method::GET, "/status", &session.cookie, Some(&session.csrf)).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body) = v1(&s, Method::GET, "/status", &session.cookie, Some(&session.csrf)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("MISSING_API_KEY")));
}

#[tokio::test]
async fn sessions_end_at_their_absolute_timeout_however_used() {
    let config = SessionConfig { absolute_timeout: Duration::from_millis(700), ..SessionConfig::default() };
    let s = with_sessions(config).await;
    let session = sign_in(&s, &s.root).await;
    for _ in 0..3 {
        let (status, _) = v1(&s, Method::GET, "/status", &session.cookie, Some(&session.csrf)).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _) = v1(&s, Method::GET, "/status", &session.cookie, Some(&session.csrf)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_ends_with_its_key() {
    let s = Server::start().await;
    let (id, secret) = s.key("operator", &["keys:read", "keys:write"]).await;
    let session = sign_in(&s, &secret).await;
    let (status, _) = v1(&s, Method::GET, "/keys", &session.cookie, Some(&session.csrf)).await;
    assert_eq!(status, StatusCode::OK);

    let r = s.post(&format!("/v1/keys/{id}/revoke"), &s.root, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (status, body) = v1(&s, Method::GET, "/keys", &session.cookie, Some(&session.csrf)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("KEY_REVOKED")));
    let resp = client()
        .get(format!("{}/dashboard/session", s.base))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "KEY_REVOKED");
}

#[tokio::test]
async fn behind_https_the_cookie_is_secure() {
    let s = Server::start().await;
    let resp = client()
        .post(format!("{}/dashboard/session", s.base))
        .header("x-forwarded-proto", "https")
        .json(&json!({ "key": s.root }))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.split(';').any(|f| f.trim() == "Secure"), "{cookie}");

    let config = SessionConfig { secure_cookies: true, ..SessionConfig::default() };
    let s = with_sessions(config).await;
    let session = sign_in(&s, &s.root).await;
    assert!(session.set_cookie.split(';').any(|f| f.trim() == "Secure"), "{}", session.set_cookie);
}

#[tokio::test]
async fn a_key_whose_plan_has_no_api_access_cannot_sign_in() {
    let s = Server::start().await;
    let plan = s
        .call(
            Method::PUT,
            "/v1/plans/noapi",
            Some(&s.root),
            Some(json!({"name": "Free", "apiAccess": false})),
        )
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    let ws = s.post("/v1/workspaces", &s.root, json!({"name": "other"})).await;
    assert_eq!(ws.status, StatusCode::CREATED, "{}", ws.body);
    let ws = ws.body["id"].as_str().unwrap().to_owned();
    let created: Value = client()
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", &ws)
        .json(&json!({"name": "theirs", "scopes": ["keys:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    sign_in(&s, &secret).await;

    let moved = s
        .call(Method::PATCH, &format!("/v1/workspaces/{ws}"), Some(&s.root), Some(json!({"planId": "noapi"})))
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    let r = s.call(Method::POST, "/dashboard/session", None, Some(json!({ "key": secret }))).await;
    r.assert_error(403, "FEATURE_NOT_IN_PLAN");
    assert!(!r.headers.contains_key(SET_COOKIE));
}

/// A key's IP allowlist applies to signing in to the dashboard, as to the API.
#[tokio::test]
async fn sign_in_respects_the_keys_ip_allowlist() {
    let s = Server::start().await;
    let create = |list: Value| json!({"name": "browser", "scopes": ["keys:read"], "ipAllowlist": list});
    let here = s.post("/v1/keys", &s.root, create(json!(["127.0.0.1"]))).await;
    let session = sign_in(&s, here.body["secret"].as_str().unwrap()).await;
    let (status, _) = v1(&s, Method::GET, "/keys", &session.cookie, Some(&session.csrf)).await;
    assert_eq!(status, StatusCode::OK);
    let elsewhere = s.post("/v1/keys", &s.root, create(json!(["203.0.113.0/24"]))).await;
    let body = json!({ "key": elsewhere.body["secret"] });
    let r = s.call(Method::POST, "/dashboard/session", None, Some(body)).await;
    r.assert_error(403, "IP_NOT_ALLOWED");
    assert!(!r.headers.contains_key(SET_COOKIE));
}
