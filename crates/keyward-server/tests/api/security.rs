//! Authorization policy and input hardening found by attacking the API from outside: a lower key
//! never acts on a higher one, no request locks a workspace out, hostile inputs get catalog
//! errors.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::Server;

const KEY_ACTIONS: &[(&str, &str)] = &[
    ("POST", "revoke"),
    ("POST", "deactivate"),
    ("POST", "activate"),
    ("POST", "rotate"),
    ("PATCH", ""),
    ("DELETE", ""),
];

fn action_path(id: &str, action: &str) -> String {
    if action.is_empty() { format!("/v1/keys/{id}") } else { format!("/v1/keys/{id}/{action}") }
}

async fn act(s: &Server, caller: &str, id: &str, (method, action): (&str, &str)) -> crate::support::Reply {
    let body = match (method, action) {
        ("PATCH", _) => Some(json!({"name": "renamed"})),
        ("POST", _) => Some(json!({})),
        _ => None,
    };
    s.call(method.parse().unwrap(), &action_path(id, action), Some(caller), body).await
}

async fn root_id(s: &Server) -> String {
    s.get("/v1/status", &s.root).await.body["keyId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_key_never_acts_on_a_wider_key() {
    let s = Server::start().await;
    let root = root_id(&s).await;
    let (_, writer) = s.key("writer", &["keys:write", "keys:read"]).await;
    for &action in KEY_ACTIONS {
        let r = act(&s, &writer, &root, action).await;
        r.assert_error(403, "INSUFFICIENT_SCOPE");
        assert_eq!(r.body["error"]["details"]["missing"], json!(["*"]), "{action:?}: {}", r.body);
    }
    // The root key is untouched.
    let r = s.get(&format!("/v1/keys/{root}"), &s.root).await;
    assert_eq!(r.body["key"]["status"], "active");
    assert_eq!(r.body["key"]["name"], "root");

    // A key scoped to one resource cannot act on an unrestricted key, even a narrower one.
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "site", "scopes": ["keys:*"], "resources": ["site-1"]}))
        .await;
    let site = r.body["secret"].as_str().unwrap().to_owned();
    let (plain_id, _) = s.key("plain", &["keys:read"]).await;
    act(&s, &site, &plain_id, ("POST", "deactivate")).await.assert_error(403, "RESOURCE_NOT_ALLOWED");

    // Within its powers the action works: the writer revokes a narrower key.
    let (reader_id, _) = s.key("reader", &["keys:read"]).await;
    assert_eq!(act(&s, &writer, &reader_id, ("POST", "revoke")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_last_key_able_to_manage_keys_cannot_be_switched_off() {
    let s = Server::start().await;
    let root = root_id(&s).await;
    for (method, action, body) in [
        (Method::POST, "revoke", json!({})),
        (Method::POST, "deactivate", json!({})),
        (Method::PATCH, "", json!({"active": false})),
        (Method::PATCH, "", json!({"scopes": ["keys:read"]})),
    ] {
        let r = s.call(method, &action_path(&root, action), Some(&s.root), Some(body)).await;
        r.assert_error(409, "LAST_ADMIN_KEY");
    }
    assert_eq!(s.get("/v1/status", &s.root).await.status, StatusCode::OK, "still works");

    // With a second key that can manage keys, the root key may go; the second one then may not.
    let (_, admin) = s.key("admin", &["keys:write"]).await;
    let r = s.post(&format!("/v1/keys/{root}/revoke"), &s.root, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let admin_id = s.get("/v1/status", &admin).await.body["keyId"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/keys/{admin_id}/revoke"), &admin, json!({}))
        .await
        .assert_error(409, "LAST_ADMIN_KEY");
    // Rotating it is fine: the successor keeps the powers.
    let r = s.post(&format!("/v1/keys/{admin_id}/rotate"), &admin, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn internal_keys_of_another_workspace_do_not_count_as_its_admins() {
    let s = Server::start().await;
    let ws = s.post("/v1/workspaces", &s.root, json!({"name": "tenant"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .client
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", &ws)
        .json(&json!({"name": "tenant admin", "scopes": ["keys:write"]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let id = body["key"]["id"].as_str().unwrap().to_owned();
    // The root key (internal, another workspace) may not remove the tenant's only admin.
    let r = s
        .client
        .post(format!("{}/v1/keys/{id}/revoke", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", &ws)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "LAST_ADMIN_KEY");
}

#[tokio::test]
async fn a_plan_change_never_removes_the_callers_own_access() {
    let s = Server::start().await;
    let r = s
        .call(
            Method::PUT,
            "/v1/plans/default",
            Some(&s.root),
            Some(json!({"name": "Default", "apiAccess": false})),
        )
        .await;
    r.assert_error(409, "SELF_LOCKOUT");
    assert_eq!(s.get("/v1/status", &s.root).await.status, StatusCode::OK, "still has access");

    // Moving its own workspace onto a plan without API access is the same lockout.
    let r = s
        .call(
            Method::PUT,
            "/v1/plans/closed",
            Some(&s.root),
            Some(json!({"name": "Closed", "apiAccess": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "another plan may lack API access: {}", r.body);
    let own = format!("/v1/workspaces/{}", s.workspace);
    s.call(Method::PATCH, &own, Some(&s.root), Some(json!({"planId": "closed"})))
        .await
        .assert_error(409, "SELF_LOCKOUT");

    // Another workspace may be moved there: it is not the caller's own access.
    let ws = s.post("/v1/workspaces", &s.root, json!({"name": "tenant"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .call(
            Method::PATCH,
            &format!("/v1/workspaces/{ws}"),
            Some(&s.root),
            Some(json!({"planId": "closed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(s.get("/v1/status", &s.root).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rate_limit_windows_are_bounded_and_never_break_the_limiter() {
    let s = Server::start().await;
    let (id, key) = s.key("fast", &["keys:read"]).await;
    for window in
        [json!({"limit": 4_000_000_000u32, "periodSecs": 1}), json!({"limit": 1_000_001, "periodSecs": 1})]
    {
        let r = s
            .call(
                Method::PATCH,
                &format!("/v1/keys/{id}"),
                Some(&s.root),
                Some(json!({"rateLimit": [window]})),
            )
            .await;
        r.assert_error(400, "VALIDATION_FAILED");
        let own = format!("/v1/workspaces/{}", s.workspace);
        let r = s.call(Method::PATCH, &own, Some(&s.root), Some(json!({"rateLimit": [window]}))).await;
        r.assert_error(400, "VALIDATION_FAILED");
    }
    let r = s
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(&s.root),
            Some(json!({"rateLimit": [{"limit": 1_000_000, "periodSecs": 1}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "the bound itself is accepted: {}", r.body);
    let r = s.get("/v1/status", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let policy = r.headers["ratelimit-policy"].to_str().unwrap();
    assert!(policy.contains("\"key-1s\";q=1000000;w=1"), "{policy}");
}

#[tokio::test]
async fn a_rotated_key_reads_revoked_once_its_grace_ends() {
    let s = Server::start().await;
    let (id, old) = s.key("rotating", &["keys:read"]).await;
    let r = s.post(&format!("/v1/keys/{id}/rotate"), &s.root, json!({"graceSeconds": 60})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let active = s.get("/v1/keys?status=active", &s.root).await;
    assert!(
        active.body["data"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str()),
        "in grace: active"
    );

    s.clock.advance(chrono::Duration::seconds(61));
    s.get("/v1/status", &old).await.assert_error(401, "KEY_REVOKED");
    let one = s.get(&format!("/v1/keys/{id}"), &s.root).await;
    assert_eq!(one.body["key"]["status"], "revoked", "{}", one.body);
    assert!(one.body["key"]["revokedAt"].is_string());
    let ids = |r: &crate::support::Reply| -> Vec<String> {
        r.body["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
    };
    assert!(!ids(&s.get("/v1/keys?status=active", &s.root).await).contains(&id));
    assert!(ids(&s.get("/v1/keys?status=revoked", &s.root).await).contains(&id));
    let all = s.get("/v1/keys", &s.root).await;
    let listed =
        all.body["data"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert_eq!(listed["status"], "revoked");
    // It acts like a revoked key: it cannot be switched on again, and it can be deleted.
    s.post(&format!("/v1/keys/{id}/activate"), &s.root, json!({})).await.assert_error(409, "CONFLICT");
    let r = s.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&s.root), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
}

#[tokio::test]
async fn status_reports_live_credits_and_survives_a_store_outage() {
    let s = Server::start().await;
    let (_, verifier) = s.key("gateway", &["keys:verify"]).await;
    let r =
        s.post("/v1/keys", &s.root, json!({"name": "customer", "scopes": ["keys:read"], "credits": 2})).await;
    let customer = r.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1/status", &customer).await.body["credits"], 2);
    for _ in 0..2 {
        let r = s.post("/v1/verify", &verifier, json!({"key": customer, "cost": 1})).await;
        assert_eq!(r.body["valid"], true, "{}", r.body);
    }
    assert_eq!(s.get("/v1/status", &customer).await.body["credits"], 0, "the balance as stored now");

    // Cached keys keep their status during an outage, as they keep working.
    s.store.set_down(true);
    let r = s.get("/v1/status", &customer).await;
    s.store.set_down(false);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["valid"], true);
}

#[tokio::test]
async fn json_arrays_are_not_read_as_objects() {
    let s = Server::start().await;
    let before = s.get("/v1/keys", &s.root).await.body["data"].as_array().unwrap().len();
    let r = s.post("/v1/keys", &s.root, json!(["x"])).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "body");
    let r = s.post("/v1/keys", &s.root, json!({"name": "x", "rateLimit": [[5, 60]]})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "rateLimit[0]");
    let (id, _) = s.key("target", &[]).await;
    s.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&s.root), Some(json!(["y"])))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.post(&format!("/v1/keys/{id}/rotate"), &s.root, json!([60]))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    let after = s.get("/v1/keys", &s.root).await.body["data"].as_array().unwrap().len();
    assert_eq!(after, before + 1, "only the valid create made a key");
}

/// JSON Schema counts `60.0` an integer, so generated clients may send it; a fraction is still
/// refused.
#[tokio::test]
async fn whole_floats_are_integers() {
    let s = Server::start().await;
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "f", "rateLimit": [{"limit": 5.0, "periodSecs": 60.0}]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["key"]["rateLimit"], json!([{"limit": 5, "periodSecs": 60}]));
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "f", "rateLimit": [{"limit": 5.5, "periodSecs": 60}]}))
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "rateLimit[0].limit");
    let r = s.post("/v1/keys", &s.root, json!({"name": "f", "concurrencyLimit": 1e10})).await;
    r.assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn timestamps_stay_rfc_3339() {
    let s = Server::start().await;
    let r = s.post("/v1/keys", &s.root, json!({"name": "far", "expiresAt": "+10000-01-01T00:00:00Z"})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "expiresAt");
    let r = s.post("/v1/keys", &s.root, json!({"name": "far", "expiresAt": "9999-12-31T23:59:59Z"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["key"]["id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(&s.root),
            Some(json!({"expiresAt": "+10000-01-01T00:00:00Z"})),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    let listed = s.get("/v1/keys", &s.root).await;
    for k in listed.body["data"].as_array().unwrap() {
        if let Some(t) = k["expiresAt"].as_str() {
            assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
        }
    }
}

#[tokio::test]
async fn every_rejection_is_a_catalog_error() {
    let s = Server::start().await;
    // A path segment that is not UTF-8 once decoded.
    s.get("/v1/keys/%ff", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/workspaces/%ff", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    // An oversized body on every route that takes one, rotate included.
    let (id, _) = s.key("target", &[]).await;
    let big = "x".repeat(keyward_server::MAX_BODY_BYTES + 1);
    for (method, path) in [
        (Method::POST, format!("/v1/keys/{id}/rotate")),
        (Method::POST, "/v1/keys".to_owned()),
        (Method::PATCH, format!("/v1/keys/{id}")),
        (Method::POST, "/v1/verify".to_owned()),
        (Method::PUT, "/v1/plans/p".to_owned()),
    ] {
        let r = s
            .client
            .request(method.clone(), format!("{}{path}", s.base))
            .bearer_auth(&s.root)
            .header("content-type", "application/json")
            .body(format!("{{\"name\": \"{big}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{method} {path}");
        assert!(r.headers().contains_key("x-request-id"));
        let body: Value = r.json().await.unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
        assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE", "{method} {path}");
    }
}

#[tokio::test]
async fn request_ids_that_look_like_keys_are_replaced() {
    let s = Server::start().await;
    let r = s
        .client
        .get(format!("{}/v1/status", s.base))
        .bearer_auth(&s.root)
        .header("x-request-id", &s.root)
        .send()
        .await
        .unwrap();
    let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(echoed, s.root);
    assert!(!echoed.contains("_live_"));
    let r = s
        .client
        .get(format!("{}/v1/status", s.base))
        .bearer_auth(&s.root)
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42", "ordinary ids are kept");
    // The documentation, which needs no key, follows the same rule.
    for (sent, kept) in [(s.root.as_str(), false), ("trace-43", true)] {
        let r = s
            .client
            .get(format!("{}/openapi.json", s.base))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-request-id"] == sent, kept, "{sent}");
    }
}

#[tokio::test]
async fn two_different_keys_in_one_request_are_refused() {
    let s = Server::start().await;
    let (_, other) = s.key("other", &["keys:read"]).await;
    let send = |api_key: &str, bearer: &str| {
        s.client.get(format!("{}/v1/status", s.base)).header("x-api-key", api_key).bearer_auth(bearer).send()
    };
    let r = send("kw_live_garbage", &s.root).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "CONFLICTING_API_KEYS");
    let r = send(&other, &s.root).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The same key twice is one key.
    assert_eq!(send(&s.root, &s.root).await.unwrap().status(), StatusCode::OK);
}
