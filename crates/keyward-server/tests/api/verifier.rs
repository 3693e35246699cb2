//! `/v1/verifier`: what remote verifiers resolve, hear, spend and report, and who may.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::Server;

/// A workspace of its own and a key in it, made by the root key; returns (workspace, id, key).
async fn tenant_key(s: &Server, scopes: &[&str]) -> (String, String, String) {
    let ws = s.post("/v1/workspaces", &s.root, json!({"name": "tenant"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .client
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", &ws)
        .json(&json!({"name": "tenant key", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    (ws, body["key"]["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn resolve_returns_the_record_whatever_its_status_to_keys_that_may_see_it() {
    let s = Server::start().await;
    let (service_id, service) = s.key("orders service", &["keys:verify"]).await;
    let (id, key) = s.key("customer", &["orders:read"]).await;

    let r = s.post("/v1/verifier/resolve", &service, json!({"key": key})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["found"], true);
    assert_eq!(r.body["key"]["id"], id.as_str());
    assert_eq!(r.body["key"]["scopes"], json!(["orders:read"]));
    assert_eq!(r.body["workspace"]["id"], s.workspace.as_str());
    assert_eq!(r.body["plan"]["apiAccess"], true);
    let digest = r.body["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert!(!r.body.to_string().contains(&key), "the answer never echoes the key");

    // Revoked keys are found, with their status: the verifier refuses them with KEY_REVOKED.
    s.post(&format!("/v1/keys/{id}/revoke"), &s.root, json!({})).await;
    let r = s.post("/v1/verifier/resolve", &service, json!({"key": key})).await;
    assert_eq!((r.body["found"].clone(), r.body["key"]["status"].clone()), (json!(true), json!("revoked")));

    // Unknown, malformed and deleted keys are not found, and nothing else is said.
    let unknown = kw_unknown(&key);
    for k in [unknown.as_str(), "kw_live_nope", "not a key"] {
        let r = s.post("/v1/verifier/resolve", &service, json!({"key": k})).await;
        assert_eq!(
            r.body,
            json!({"found": false, "digest": null, "key": null, "workspace": null, "plan": null})
        );
    }
    assert_eq!(
        s.call(reqwest::Method::DELETE, &format!("/v1/keys/{id}"), Some(&s.root), None).await.status,
        StatusCode::NO_CONTENT
    );
    let r = s.post("/v1/verifier/resolve", &service, json!({"key": key})).await;
    assert_eq!(r.body["found"], false);

    // Bounded, and only for keys:verify.
    let r = s.post("/v1/verifier/resolve", &service, json!({"key": "k".repeat(513)})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    let (_, reader) = s.key("reader", &["keys:read"]).await;
    let r = s.post("/v1/verifier/resolve", &reader, json!({"key": service})).await;
    r.assert_error(403, "INSUFFICIENT_SCOPE");
    assert_eq!(r.body["error"]["details"]["missing"], json!(["keys:verify"]));
    let _ = service_id;
}

/// A well-formed key (valid checksum) that was never issued.
fn kw_unknown(like: &str) -> String {
    let format = keyward_core::KeyFormat::default();
    let env = if like.starts_with("kw_live_") {
        keyward_core::KeyEnvironment::Live
    } else {
        keyward_core::KeyEnvironment::Test
    };
    format.generate(env).expose_secret().to_owned()
}

#[tokio::test]
async fn a_service_key_sees_only_its_own_workspace_unless_it_is_internal() {
    let s = Server::start().await;
    let (_, tenant_id, tenant) = tenant_key(&s, &["orders:read"]).await;
    let (_, own) = s.key("own service", &["keys:verify"]).await;
    let (_, internal) = s.key("internal service", &["keys:verify", "workspaces:admin"]).await;

    let r = s.post("/v1/verifier/resolve", &own, json!({"key": tenant})).await;
    assert_eq!(r.body["found"], false, "another workspace's key is reported like an unknown one");
    let r = s.post("/v1/verifier/resolve", &internal, json!({"key": tenant})).await;
    assert_eq!(r.body["key"]["id"], tenant_id.as_str());

    let r = s.post("/v1/verifier/credits", &own, json!({"keyId": tenant_id, "amount": 1})).await;
    r.assert_error(404, "NOT_FOUND");
    let today = chrono::Utc::now().date_naive().to_string();
    let report = json!({"counts": [{"keyId": tenant_id, "day": today, "count": 3}]});
    let r = s.post("/v1/verifier/usage", &own, report.clone()).await;
    r.assert_error(403, "RESOURCE_NOT_ALLOWED");
    let r = s.post("/v1/verifier/usage", &internal, report).await;
    assert_eq!(r.body, json!({"recorded": 1, "skipped": 0}));
}

#[tokio::test]
async fn usage_reports_show_on_the_key_and_are_bounded() {
    let s = Server::start().await;
    let (_, service) = s.key("service", &["keys:verify"]).await;
    let (id, _) = s.key("customer", &["orders:read"]).await;
    let today = chrono::Utc::now().date_naive();
    let at = chrono::Utc::now() - chrono::Duration::seconds(5);
    let report = json!({
        "counts": [{"keyId": id, "day": today.to_string(), "count": 7}],
        "lastUsed": [{"keyId": id, "at": at.to_rfc3339()}],
    });
    let r = s.post("/v1/verifier/usage", &service, report.clone()).await;
    assert_eq!(r.body, json!({"recorded": 2, "skipped": 0}), "{}", r.body);
    s.post("/v1/verifier/usage", &service, report).await;
    let detail = s.get(&format!("/v1/keys/{id}"), &s.root).await.body;
    let used: u64 =
        detail["recentUsage"].as_array().unwrap().iter().map(|d| d["count"].as_u64().unwrap()).sum();
    assert_eq!(used, 14, "{detail}");
    let last: chrono::DateTime<chrono::Utc> = detail["key"]["lastUsedAt"].as_str().unwrap().parse().unwrap();
    assert!((last - at).num_milliseconds().abs() < 1000, "{last} vs {at}");

    // A key unknown to the server is skipped, not an error: it may have been deleted since.
    let ghost = uuid::Uuid::now_v7();
    let r = s
        .post(
            "/v1/verifier/usage",
            &service,
            json!({"counts": [{"keyId": ghost, "day": today.to_string(), "count": 1}]}),
        )
        .await;
    assert_eq!(r.body, json!({"recorded": 0, "skipped": 1}));

    let zero = json!({"counts": [{"keyId": id, "day": today.to_string(), "count": 0}]});
    s.post("/v1/verifier/usage", &service, zero).await.assert_error(400, "VALIDATION_FAILED");
    let many: Vec<Value> = (0..501).map(|_| json!({"keyId": id, "at": at.to_rfc3339()})).collect();
    let r = s.post("/v1/verifier/usage", &service, json!({"lastUsed": many})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "lastUsed");
}

#[tokio::test]
async fn credits_are_spent_on_the_server_atomically() {
    let s = Server::start().await;
    let (_, service) = s.key("service", &["keys:verify"]).await;
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "metered", "scopes": ["orders:read"], "credits": 5}))
        .await;
    let id = r.body["key"]["id"].as_str().unwrap().to_owned();
    let (unmetered, _) = s.key("unmetered", &["orders:read"]).await;

    let spend = |id: &str, amount: u32| json!({"keyId": id, "amount": amount});
    let r = s.post("/v1/verifier/credits", &service, spend(&id, 3)).await;
    assert_eq!(r.body, json!({"outcome": "spent", "remaining": 2}));
    let r = s.post("/v1/verifier/credits", &service, spend(&id, 3)).await;
    assert_eq!(r.body, json!({"outcome": "insufficient", "remaining": 2}));
    let r = s.post("/v1/verifier/credits", &service, spend(&unmetered, 3)).await;
    assert_eq!(r.body, json!({"outcome": "unlimited", "remaining": null}));
    s.post("/v1/verifier/credits", &service, spend(&id, 0)).await.assert_error(400, "VALIDATION_FAILED");
    let r = s.post("/v1/verifier/credits", &service, spend(&uuid::Uuid::now_v7().to_string(), 1)).await;
    r.assert_error(404, "NOT_FOUND");
}

/// Reads the event stream until `n` events arrived; returns them as (event, data).
async fn events(response: &mut reqwest::Response, buf: &mut String, n: usize) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            if let (Some(e), Some(d)) = (event, data) {
                got.push((e, d));
            }
        }
    }
    got
}

#[tokio::test]
async fn the_event_stream_names_every_changed_key_by_its_digest() {
    let s = Server::start().await;
    let (_, service) = s.key("service", &["keys:verify"]).await;
    let (id, key) = s.key("customer", &["orders:read"]).await;
    let digest = s.post("/v1/verifier/resolve", &service, json!({"key": key})).await.body["digest"].clone();

    let mut stream =
        s.client.get(format!("{}/v1/verifier/events", s.base)).bearer_auth(&service).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    assert_eq!(events(&mut stream, &mut buf, 1).await, vec![("ready".to_owned(), json!({}))]);

    s.post(&format!("/v1/keys/{id}/deactivate"), &s.root, json!({})).await;
    assert_eq!(events(&mut stream, &mut buf, 1).await, vec![("key".to_owned(), json!({"digest": digest}))]);
    let plan =
        json!({"name": "Default", "apiAccess": true, "keyRateLimit": [{"limit": 60, "periodSecs": 60}]});
    assert_eq!(
        s.call(reqwest::Method::PUT, "/v1/plans/default", Some(&s.root), Some(plan)).await.status,
        StatusCode::OK
    );
    assert_eq!(events(&mut stream, &mut buf, 1).await, vec![("reset".to_owned(), json!({"reason": "plan"}))]);

    let (_, reader) = s.key("reader", &["keys:read"]).await;
    let r = s.client.get(format!("{}/v1/verifier/events", s.base)).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
