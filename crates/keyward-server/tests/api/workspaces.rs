//! Workspaces, plans, isolation, audit events and `/v1/verify`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::Server;

async fn second_workspace(s: &Server, body: serde_json::Value) -> (String, String) {
    let r = s.post("/v1/workspaces", &s.root, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ws = r.body["id"].as_str().unwrap().to_owned();
    let r = s
        .client
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", &ws)
        .json(&json!({"name": "their admin", "scopes": ["keys:*", "audit:read", "workspaces:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: serde_json::Value = r.json().await.unwrap();
    (ws, body["secret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn workspaces_are_isolated() {
    let s = Server::start().await;
    let (ws2, other) = second_workspace(&s, json!({"name": "other"})).await;
    let (mine, _) = s.key("mine", &["keys:read"]).await;
    // Another workspace's key id answers 404, for reads and writes alike.
    s.get(&format!("/v1/keys/{mine}"), &other).await.assert_error(404, "NOT_FOUND");
    s.post(&format!("/v1/keys/{mine}/revoke"), &other, json!({})).await.assert_error(404, "NOT_FOUND");
    let list = s.get("/v1/keys", &other).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1, "only its own key");
    // Only internal keys may name another workspace.
    let r = s
        .client
        .get(format!("{}/v1/keys", s.base))
        .bearer_auth(&other)
        .header("x-workspace-id", &s.workspace)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .client
        .get(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .client
        .get(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", &ws2)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "root sees the other workspace through the header");
    s.get(&format!("/v1/workspaces/{}", s.workspace), &other).await.assert_error(404, "NOT_FOUND");
    assert_eq!(s.get(&format!("/v1/workspaces/{ws2}"), &other).await.status, StatusCode::OK);
    s.get("/v1/workspaces", &other).await.assert_error(403, "INSUFFICIENT_SCOPE");
    let all = s.get("/v1/workspaces", &s.root).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn plans_gate_api_access_and_key_counts() {
    let s = Server::start().await;
    let r = s
        .call(
            Method::PUT,
            "/v1/plans/professional",
            Some(&s.root),
            Some(json!({"name": "Professional", "apiAccess": true, "maxKeys": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.call(
        Method::PUT,
        "/v1/plans/starter",
        Some(&s.root),
        Some(json!({"name": "Starter", "apiAccess": false})),
    )
    .await;
    s.call(Method::PUT, "/v1/plans/Bad Id", Some(&s.root), Some(json!({"name": "x", "apiAccess": true})))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    let plans = s.get("/v1/plans", &s.root).await;
    assert_eq!(plans.body["data"].as_array().unwrap().len(), 3);

    let (ws, admin) = second_workspace(&s, json!({"name": "pro", "planId": "professional"})).await;
    // `admin` is one key; one more fits, the third does not.
    assert_eq!(s.post("/v1/keys", &admin, json!({"name": "two"})).await.status, StatusCode::CREATED);
    s.post("/v1/keys", &admin, json!({"name": "three"})).await.assert_error(403, "KEY_LIMIT_REACHED");

    let r = s
        .call(
            Method::PATCH,
            &format!("/v1/workspaces/{ws}"),
            Some(&s.root),
            Some(json!({"planId": "starter"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The plan change reaches the verifier at once.
    s.get("/v1/keys", &admin).await.assert_error(403, "FEATURE_NOT_IN_PLAN");
    s.call(Method::PATCH, &format!("/v1/workspaces/{ws}"), Some(&s.root), Some(json!({"planId": "nope"})))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.post("/v1/workspaces", &s.root, json!({"name": "x", "environment": "staging"}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn sandbox_workspaces_issue_test_keys() {
    let s = Server::start().await;
    let r = s.post("/v1/workspaces", &s.root, json!({"name": "sandbox", "environment": "sandbox"})).await;
    assert_eq!(
        r.body["effectiveRateLimit"],
        json!([{"limit": 100, "periodSecs": 60}, {"limit": 5, "periodSecs": 1}])
    );
    let ws = r.body["id"].as_str().unwrap();
    let r = s
        .client
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", ws)
        .json(&json!({"name": "t"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["secret"].as_str().unwrap().starts_with("kw_test_"));
}

#[tokio::test]
async fn audit_events_record_who_did_what() {
    let s = Server::start().await;
    let (id, _) = s.key("audited", &[]).await;
    let r = s
        .client
        .post(format!("{}/v1/keys/{id}/revoke", s.base))
        .bearer_auth(&s.root)
        .header("x-request-id", "req-revoke-1")
        .header("user-agent", "audit-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get(&format!("/v1/audit-events?keyId={id}"), &s.root).await;
    assert_eq!(r.status, StatusCode::OK);
    let events = r.body["data"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "key.revoked");
    assert_eq!(events[0]["requestId"], "req-revoke-1");
    assert_eq!(events[0]["userAgent"], "audit-test/1");
    assert_eq!(events[0]["ip"], "127.0.0.1");
    assert!(events[0]["actorKeyId"].is_string());
    assert_eq!(events[1]["action"], "key.created");
    let r = s.get("/v1/audit-events?action=key.revoked&limit=1", &s.root).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let (_, reader) = s.key("reader", &["keys:read"]).await;
    s.get("/v1/audit-events", &reader).await.assert_error(403, "INSUFFICIENT_SCOPE");
}

#[tokio::test]
async fn verify_reports_validity_and_the_catalog_code() {
    let s = Server::start().await;
    let (_, verifier) = s.key("gateway", &["keys:verify"]).await;
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "customer", "scopes": ["products:read"], "credits": 1}))
        .await;
    let customer = r.body["secret"].as_str().unwrap().to_owned();
    let customer_id = r.body["key"]["id"].as_str().unwrap().to_owned();

    let r = s
        .post("/v1/verify", &verifier, json!({"key": customer, "scopes": ["products:read"], "cost": 1}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert_eq!(r.body["keyId"], customer_id.as_str());
    assert_eq!(r.body["credits"], 0);
    assert!(r.body["rateLimit"]["windows"].as_array().unwrap().len() >= 2);

    let r = s.post("/v1/verify", &verifier, json!({"key": customer, "cost": 1})).await;
    assert_eq!(r.body["valid"], false);
    assert_eq!(r.body["error"]["code"], "INSUFFICIENT_CREDITS");
    assert_eq!(r.body["error"]["status"], 402);
    let r = s.post("/v1/verify", &verifier, json!({"key": customer, "scopes": ["products:write"]})).await;
    assert_eq!(r.body["error"]["code"], "INSUFFICIENT_SCOPE");
    let r = s.post("/v1/verify", &verifier, json!({"key": "kw_live_nope"})).await;
    assert_eq!(r.body["error"]["code"], "INVALID_API_KEY");
    s.post(&format!("/v1/keys/{customer_id}/revoke"), &s.root, json!({})).await;
    let r = s.post("/v1/verify", &verifier, json!({"key": customer})).await;
    assert_eq!(r.body["error"]["code"], "KEY_REVOKED");

    // Another workspace's key is reported like an unknown key.
    let (_, other) = second_workspace(&s, json!({"name": "other"})).await;
    let r = s.post("/v1/verify", &verifier, json!({"key": other})).await;
    assert_eq!(r.body["error"]["code"], "INVALID_API_KEY");

    let (_, plain) = s.key("plain", &["keys:read"]).await;
    s.post("/v1/verify", &plain, json!({"key": customer})).await.assert_error(403, "INSUFFICIENT_SCOPE");
    s.post("/v1/verify", &verifier, json!({"scopes": []})).await.assert_error(400, "VALIDATION_FAILED");
}
