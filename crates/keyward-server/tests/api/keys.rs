//! The key lifecycle through the API.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::Server;

#[tokio::test]
async fn status_describes_the_calling_key() {
    let s = Server::start().await;
    let r = s.get("/v1/status", &s.root).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["valid"], true);
    assert_eq!(r.body["workspaceId"], s.workspace.as_str());
    assert_eq!(r.body["scopes"], json!(["*"]));
    assert!(r.headers.contains_key("x-ratelimit-limit"));
    assert!(r.headers.contains_key("ratelimit-policy"));
    s.call(Method::GET, "/v1/status", None, None).await.assert_error(401, "MISSING_API_KEY");
}

#[tokio::test]
async fn create_shows_the_key_once_and_list_masks_it() {
    let s = Server::start().await;
    let r = s
        .post(
            "/v1/keys",
            &s.root,
            json!({"name": "CI", "scopes": ["keys:read"], "metadata": {"team": "infra"}, "credits": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kw_live_"));
    let id = r.body["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["key"]["maskedKey"], format!("{}…{}", &secret[..12], &secret[secret.len() - 4..]));
    assert_eq!(r.body["key"]["createdIp"], "127.0.0.1");

    let list = s.get("/v1/keys", &s.root).await;
    assert_eq!(list.status, StatusCode::OK);
    let text = list.body.to_string();
    assert!(!text.contains(&secret), "the list never shows a key's value");
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2, "root and CI");
    assert_eq!(list.body["data"][0]["id"], id.as_str(), "newest first");

    let one = s.get(&format!("/v1/keys/{id}"), &s.root).await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(!one.body.to_string().contains(&secret));
    assert_eq!(one.body["key"]["metadata"]["team"], "infra");
    assert!(one.body["recentUsage"].is_array());

    // The new key works, and only for what it was given.
    assert_eq!(s.get("/v1/keys", &secret).await.status, StatusCode::OK);
    let r = s.post("/v1/keys", &secret, json!({"name": "x"})).await;
    r.assert_error(403, "INSUFFICIENT_SCOPE");
    assert_eq!(r.body["error"]["details"]["missing"], json!(["keys:write"]));
}

#[tokio::test]
async fn pagination_and_status_filter() {
    let s = Server::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.key(&format!("k{i}"), &[]).await.0);
    }
    s.post(&format!("/v1/keys/{}/revoke", ids[1]), &s.root, json!({})).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?limit=2&cursor={c}"),
            None => "/v1/keys?limit=2".to_owned(),
        };
        let r = s.get(&path, &s.root).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.extend(r.body["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "5 keys + root, each once");
    let revoked = s.get("/v1/keys?status=revoked", &s.root).await;
    assert_eq!(revoked.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(revoked.body["data"][0]["id"], ids[1].as_str());
    s.get("/v1/keys?status=gone", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/keys?cursor=not-a-cursor!", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/keys?limit=0", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get("/v1/keys?limit=101", &s.root).await.assert_error(400, "VALIDATION_FAILED");
    let r = s.get("/v1/keys?colour=red", &s.root).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(r.body["error"]["details"]["field"], "colour");
}

#[tokio::test]
async fn patch_changes_settings_but_not_the_value() {
    let s = Server::start().await;
    let (id, secret) = s.key("old", &["keys:read"]).await;
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let r = s
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(&s.root),
            Some(json!({"name": "new", "scopes": ["keys:read", "audit:read"], "expiresAt": later, "rateLimit": [{"limit": 10, "periodSecs": 60}], "concurrencyLimit": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "new");
    assert_eq!(r.body["scopes"], json!(["audit:read", "keys:read"]));
    assert_eq!(r.body["rateLimit"][0]["limit"], 10);
    // The value still works, with its new scopes.
    assert_eq!(s.get("/v1/audit-events", &secret).await.status, StatusCode::OK);
    // null clears optional settings.
    let r = s
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(&s.root),
            Some(json!({"expiresAt": null, "rateLimit": null})),
        )
        .await;
    assert_eq!(r.body["expiresAt"], serde_json::Value::Null);
    assert_eq!(r.body["rateLimit"], serde_json::Value::Null);
    assert_eq!(r.body["concurrencyLimit"], 2, "absent fields stay");
    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    s.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&s.root), Some(json!({"expiresAt": past})))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&s.root), Some(json!({"scopes": ["bad scope"]})))
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn deactivate_activate_revoke_delete() {
    let s = Server::start().await;
    let (id, secret) = s.key("k", &["keys:read"]).await;
    let r = s.post(&format!("/v1/keys/{id}/deactivate"), &s.root, json!({})).await;
    assert_eq!(r.body["status"], "inactive");
    s.get("/v1/keys", &secret).await.assert_error(401, "KEY_INACTIVE");
    let r = s.post(&format!("/v1/keys/{id}/activate"), &s.root, json!({})).await;
    assert_eq!(r.body["status"], "active");
    assert_eq!(s.get("/v1/keys", &secret).await.status, StatusCode::OK);

    s.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&s.root), None)
        .await
        .assert_error(409, "KEY_NOT_REVOKED");
    assert_eq!(s.get("/v1/keys", &secret).await.status, StatusCode::OK, "a refused delete changes nothing");

    let r = s.post(&format!("/v1/keys/{id}/revoke"), &s.root, json!({})).await;
    assert_eq!(r.body["status"], "revoked");
    s.get("/v1/keys", &secret).await.assert_error(401, "KEY_REVOKED");
    s.post(&format!("/v1/keys/{id}/activate"), &s.root, json!({})).await.assert_error(409, "CONFLICT");

    let r = s.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&s.root), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    s.get(&format!("/v1/keys/{id}"), &s.root).await.assert_error(404, "NOT_FOUND");
    s.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&s.root), None)
        .await
        .assert_error(404, "NOT_FOUND");
    s.get("/v1/keys", &secret).await.assert_error(401, "INVALID_API_KEY");
    let list = s.get("/v1/keys?status=revoked", &s.root).await;
    assert!(list.body["data"].as_array().unwrap().is_empty(), "deleted keys are not listed");
}

#[tokio::test]
async fn rotate_immediately_and_with_grace() {
    let s = Server::start().await;
    let (id, old) = s.key("k", &["keys:read"]).await;
    let r = s.call(Method::POST, &format!("/v1/keys/{id}/rotate"), Some(&s.root), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let new = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(r.body["key"]["name"], "k");
    assert_eq!(r.body["key"]["scopes"], json!(["keys:read"]));
    assert_eq!(r.body["key"]["rotatedFrom"], id.as_str());
    s.get("/v1/keys", &old).await.assert_error(401, "KEY_REVOKED");
    assert_eq!(s.get("/v1/keys", &new).await.status, StatusCode::OK);
    s.post(&format!("/v1/keys/{id}/rotate"), &s.root, json!({})).await.assert_error(409, "CONFLICT");

    let new_id = r.body["key"]["id"].as_str().unwrap().to_owned();
    // A `null` body means no grace period, like no body at all.
    let (null_id, null_old) = s.key("null-body", &["keys:read"]).await;
    let r = s.post(&format!("/v1/keys/{null_id}/rotate"), &s.root, serde_json::Value::Null).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    s.get("/v1/keys", &null_old).await.assert_error(401, "KEY_REVOKED");
    let r = s.post(&format!("/v1/keys/{new_id}/rotate"), &s.root, json!({"graceSeconds": 60})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let newest = r.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1/keys", &new).await.status, StatusCode::OK, "old key works during grace");
    assert_eq!(s.get("/v1/keys", &newest).await.status, StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(61));
    s.get("/v1/keys", &new).await.assert_error(401, "KEY_REVOKED");
    assert_eq!(s.get("/v1/keys", &newest).await.status, StatusCode::OK);

    let newest_id = r.body["key"]["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/keys/{newest_id}/rotate"), &s.root, json!({"graceSeconds": 99999999}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
    s.post(&format!("/v1/keys/{newest_id}/rotate"), &s.root, json!({"graceSeconds": -1}))
        .await
        .assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let s = Server::start().await;
    let at = (s.clock_now() + chrono::Duration::seconds(30)).to_rfc3339();
    let r =
        s.post("/v1/keys", &s.root, json!({"name": "short", "scopes": ["keys:read"], "expiresAt": at})).await;
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1/keys", &secret).await.status, StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(31));
    s.get("/v1/keys", &secret).await.assert_error(401, "KEY_EXPIRED");
}

impl Server {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use keyward_core::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn no_key_can_mint_or_widen_beyond_itself() {
    let s = Server::start().await;
    let (_, writer) = s.key("writer", &["keys:read", "keys:write"]).await;
    let r = s.post("/v1/keys", &writer, json!({"name": "wider", "scopes": ["keys:*"]})).await;
    r.assert_error(403, "INSUFFICIENT_SCOPE");
    assert_eq!(r.body["error"]["details"]["missing"], json!(["keys:*"]));
    s.post("/v1/keys", &writer, json!({"name": "root2", "scopes": ["*"]}))
        .await
        .assert_error(403, "INSUFFICIENT_SCOPE");
    let (child, _) = s.key_as(&writer, "child", &["keys:read"]).await;
    s.call(
        Method::PATCH,
        &format!("/v1/keys/{child}"),
        Some(&writer),
        Some(json!({"scopes": ["audit:read"]})),
    )
    .await
    .assert_error(403, "INSUFFICIENT_SCOPE");
    // Rotating a wider key would hand out its powers: refused.
    let (wide, _) = s.key("wide", &["audit:read", "keys:read"]).await;
    s.post(&format!("/v1/keys/{wide}/rotate"), &writer, json!({}))
        .await
        .assert_error(403, "INSUFFICIENT_SCOPE");
    // Resource-restricted keys only mint restricted keys.
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "site", "scopes": ["keys:*"], "resources": ["site-1"]}))
        .await;
    let site = r.body["secret"].as_str().unwrap().to_owned();
    s.post("/v1/keys", &site, json!({"name": "all"})).await.assert_error(403, "RESOURCE_NOT_ALLOWED");
    s.post("/v1/keys", &site, json!({"name": "other", "resources": ["site-2"]}))
        .await
        .assert_error(403, "RESOURCE_NOT_ALLOWED");
    let r = s
        .post("/v1/keys", &site, json!({"name": "same", "resources": ["site-1"], "scopes": ["keys:read"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn usage_is_counted_per_day() {
    let s = Server::start().await;
    let (id, secret) = s.key("u", &["keys:read"]).await;
    for _ in 0..3 {
        s.get("/v1/keys", &secret).await;
    }
    assert_eq!(s.store.usage_writes(), 0, "usage is written behind, not per request");
    s.usage.flush().await.unwrap();
    assert_eq!(s.store.usage_writes(), 1, "one batch");
    let r = s.get(&format!("/v1/keys/{id}/usage?days=7"), &s.root).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["keyId"], id.as_str());
    assert_eq!(r.body["total"], 3);
    assert_eq!(r.body["data"][0]["count"], 3);
    let detail = s.get(&format!("/v1/keys/{id}"), &s.root).await;
    assert_eq!(detail.body["recentUsage"][0]["count"], 3);
    assert!(detail.body["key"]["lastUsedAt"].is_string());
    s.get(&format!("/v1/keys/{id}/usage?days=0"), &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get(&format!("/v1/keys/{id}/usage?days=x"), &s.root).await.assert_error(400, "VALIDATION_FAILED");
    s.get(&format!("/v1/keys/{id}/usage"), &secret).await.assert_error(403, "INSUFFICIENT_SCOPE");
}

/// A key whose credits refill daily: `GET /v1/status` and `GET /v1/keys/{id}` show the credits
/// refilled in a new day (set to the amount, not added), audited once per refill; bad refills are
/// refused naming the field.
#[tokio::test]
async fn refilled_credits_show_in_status_and_the_key() {
    let s = Server::start().await;
    let refill = json!({"interval": "daily", "amount": 3});
    let r = s.post("/v1/keys", &s.root, json!({"name": "metered", "refill": refill})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!((&r.body["key"]["credits"], &r.body["key"]["refill"]), (&json!(3), &refill));
    let (id, secret) =
        (r.body["id"].as_str().unwrap().to_owned(), r.body["secret"].as_str().unwrap().to_owned());
    let (_, service) = s.key("service", &["keys:verify"]).await;
    for _ in 0..2 {
        let v = s.post("/v1/verify", &service, json!({"key": secret, "cost": 1})).await;
        assert_eq!(v.body["valid"], true, "{}", v.body);
    }
    assert_eq!(s.get("/v1/status", &secret).await.body["credits"], 1);

    s.clock.advance(chrono::Duration::days(1));
    let status = s.get("/v1/status", &secret).await;
    assert_eq!(
        (&status.body["credits"], &status.body["refill"]),
        (&json!(3), &refill),
        "refilled to 3, not 4"
    );
    let v = s.post("/v1/verify", &service, json!({"key": secret, "cost": 2})).await;
    assert_eq!(v.body["credits"], 1, "{}", v.body);

    s.clock.advance(chrono::Duration::days(1));
    let one = s.get(&format!("/v1/keys/{id}"), &s.root).await;
    assert_eq!(one.body["key"]["credits"], 3, "{}", one.body);
    assert!(one.body["key"]["refilledAt"].is_string());
    let audit = s.get(&format!("/v1/audit-events?keyId={id}&action=key.credits_refilled"), &s.root).await;
    assert_eq!(audit.body["data"].as_array().map(Vec::len), Some(2), "{}", audit.body);

    // PATCH: monthly on the 31st; then removed (the credits stay).
    let patch = json!({"refill": {"interval": "monthly", "amount": 10, "day": 31}});
    let r = s.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&s.root), Some(patch)).await;
    assert_eq!(r.body["refill"]["day"], 31, "{}", r.body);
    let r =
        s.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(&s.root), Some(json!({"refill": null}))).await;
    assert_eq!((&r.body["refill"], &r.body["credits"]), (&json!(null), &json!(3)));

    for (bad, field) in [
        (json!({"interval": "daily", "amount": 0}), "refill.amount"),
        (json!({"interval": "daily", "amount": 5, "day": 3}), "refill.day"),
        (json!({"interval": "monthly", "amount": 5, "day": 32}), "refill.day"),
    ] {
        let r = s.post("/v1/keys", &s.root, json!({"name": "bad", "refill": bad})).await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field);
    }
    let r = s
        .post("/v1/keys", &s.root, json!({"name": "bad", "refill": {"interval": "weekly", "amount": 5}}))
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
}
