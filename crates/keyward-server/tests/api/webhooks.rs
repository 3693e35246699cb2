//! Webhooks over the API: endpoints, signed deliveries to a real receiver, retries in order per
//! key, disabling, deliveries and resends; and the `kill -9` campaign against the binary.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use keyward_server::ChangeRelay;
use keyward_server::webhooks::{WebhookConfig, WebhookWorker};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::receiver::Receiver;
use crate::support::Server;

fn fast() -> WebhookConfig {
    WebhookConfig {
        allow_http: true,
        timeout: Duration::from_secs(2),
        retry_base: Duration::from_millis(40),
        retry_cap: Duration::from_millis(200),
        poll: Duration::from_millis(20),
        disable_after: 1000,
        ..WebhookConfig::default()
    }
}

async fn server() -> Server {
    Server::start_with(|mut state| {
        state.service = state.service.clone().with_insecure_webhooks(true);
        state
    })
    .await
}

fn worker(server: &Server, config: WebhookConfig) -> WebhookWorker {
    WebhookWorker::spawn(server.store.clone(), &ChangeRelay::default(), config)
        .unwrap()
        .expect("SQLite keeps webhooks")
}

/// Registers `url` for `events`; returns (id, secret).
async fn register(server: &Server, url: &str, events: Value) -> (String, String) {
    let r = server.post("/v1/webhooks", &server.root, json!({"url": url, "events": events})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (r.body["webhook"]["id"].as_str().unwrap().to_owned(), r.body["secret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn endpoints_are_registered_validated_scoped_and_their_secret_shown_once() {
    let s = server().await;
    let r = s.post("/v1/webhooks", &s.root, json!({"url": "https://hooks.example.com/k", "events": ["key.revoked", "key.created"], "description": "ops"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["webhook"]["id"].as_str().unwrap().to_owned();
    let secret = r.body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(r.body["webhook"]["events"], json!(["key.created", "key.revoked"]));
    assert_eq!(r.body["webhook"]["enabled"], true);

    let got = s.get(&format!("/v1/webhooks/{id}"), &s.root).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(!got.body.to_string().contains(secret), "the secret is shown once");
    let list = s.get("/v1/webhooks", &s.root).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(secret));

    let patched = s
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&s.root),
            Some(json!({"events": [], "enabled": false})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!((patched.body["events"].clone(), patched.body["enabled"].clone()), (json!([]), json!(false)));

    for (body, field) in [
        (json!({"url": "ftp://x.example.com"}), "url"),
        (json!({"url": "https://"}), "url"),
        (json!({"url": "https://user:pw@x.example.com/"}), "url"),
        (json!({"url": "https://[abc/hook"}), "url"),
        (json!({"url": "https://[::1]/hook"}), "url"),
        (json!({"url": "https://host:port/"}), "url"),
        (json!({"url": "https://ex ample.com/"}), "url"),
        (json!({"url": format!("https://x.example.com/{}", "a".repeat(2048))}), "url"),
        (json!({"url": "https://x.example.com", "description": "d".repeat(501)}), "description"),
    ] {
        let r = s.post("/v1/webhooks", &s.root, body).await;
        r.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field, "{}", r.body);
    }
    let r = s
        .post("/v1/webhooks", &s.root, json!({"url": "https://x.example.com", "events": ["key.exploded"]}))
        .await;
    r.assert_error(400, "VALIDATION_FAILED");

    // Scopes: reading needs webhooks:read, changing webhooks:write.
    let (_, reader) = s.key("reader", &["webhooks:read"]).await;
    assert_eq!(s.get("/v1/webhooks", &reader).await.status, StatusCode::OK);
    s.post("/v1/webhooks", &reader, json!({"url": "https://x.example.com"}))
        .await
        .assert_error(403, "INSUFFICIENT_SCOPE");
    // Deliveries show the workspace's keys: pointing them somewhere needs keys:read too.
    let (_, writer) = s.key("writer", &["webhooks:write"]).await;
    let r = s.post("/v1/webhooks", &writer, json!({"url": "https://x.example.com"})).await;
    r.assert_error(403, "INSUFFICIENT_SCOPE");
    let (_, both) = s.key("both", &["webhooks:write", "keys:read"]).await;
    assert_eq!(
        s.post("/v1/webhooks", &both, json!({"url": "https://x.example.com"})).await.status,
        StatusCode::CREATED
    );
    let (_, keys_only) = s.key("keys", &["keys:read"]).await;
    s.get("/v1/webhooks", &keys_only).await.assert_error(403, "INSUFFICIENT_SCOPE");

    // At most 20 per workspace (paced: the root key's workspace allows 30 requests a second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 2..20 {
        register(&s, &format!("https://h{i}.example.com/"), json!([])).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.post("/v1/webhooks", &s.root, json!({"url": "https://h21.example.com"}))
        .await
        .assert_error(403, "WEBHOOK_LIMIT_REACHED");

    let v6 = s
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&s.root),
            Some(json!({"url": "https://hooks-2.example.com:8443/h?x=1"})),
        )
        .await;
    assert_eq!(v6.status, StatusCode::OK, "{}", v6.body);
    let deleted = s.call(Method::DELETE, &format!("/v1/webhooks/{id}"), Some(&s.root), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    s.get(&format!("/v1/webhooks/{id}"), &s.root).await.assert_error(404, "NOT_FOUND");
    s.get("/v1/webhooks/not-a-uuid", &s.root).await.assert_error(400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn http_endpoints_are_refused_unless_the_server_allows_them() {
    let s = Server::start().await;
    let r = s.post("/v1/webhooks", &s.root, json!({"url": "http://127.0.0.1:9/hook"})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("https://"), "{}", r.body);
}

#[tokio::test]
async fn another_workspaces_endpoints_and_deliveries_are_not_found() {
    let s = server().await;
    let receiver = Receiver::start().await;
    let (id, secret) = register(&s, &receiver.url, json!(["key.created"])).await;
    receiver.set_secret(&secret);
    let w = worker(&s, fast());
    s.key("one", &[]).await;
    receiver.wait_for("the delivery", Duration::from_secs(10), |r| r.len() == 1).await;
    let deliveries = s.get(&format!("/v1/webhooks/{id}/deliveries"), &s.root).await;
    let delivery = deliveries.body["data"][0]["id"].as_str().unwrap().to_owned();

    let other = s.post("/v1/workspaces", &s.root, json!({"name": "Other"})).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let other_ws = other.body["id"].as_str().unwrap();
    let r = s
        .client
        .get(format!("{}/v1/webhooks/{id}", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", other_ws)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .client
        .post(format!("{}/v1/webhook-deliveries/{delivery}/resend", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", other_ws)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    w.shutdown().await;
}

/// Each change reaches the receiver signed, as the documented envelope, without the key's
/// plaintext; a receiver that fails then recovers gets every event, in order per key; the
/// deliveries list shows the failed attempts, and a resend delivers again with the same id.
#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_every_event_in_order_per_key() {
    let s = server().await;
    let receiver = Receiver::start().await;
    let (id, secret) = register(&s, &receiver.url, json!([])).await;
    receiver.set_secret(&secret);
    receiver.fail_next(6);
    let w = worker(&s, fast());

    let (a, a_secret) = s.key("a", &["keys:read"]).await;
    let (b, b_secret) = s.key("b", &[]).await;
    for (method, path, body) in [
        (Method::PATCH, format!("/v1/keys/{a}"), Some(json!({"name": "a2"}))),
        (Method::POST, format!("/v1/keys/{a}/deactivate"), None),
        (Method::POST, format!("/v1/keys/{b}/revoke"), None),
        (Method::POST, format!("/v1/keys/{a}/activate"), None),
        (Method::POST, format!("/v1/keys/{a}/revoke"), None),
        (Method::DELETE, format!("/v1/keys/{b}"), None),
    ] {
        let r = s.call(method, &path, Some(&s.root), body).await;
        assert!(r.status.is_success(), "{path}: {}", r.body);
    }
    let expect_a = ["key.created", "key.updated", "key.deactivated", "key.activated", "key.revoked"];
    let expect_b = ["key.created", "key.revoked", "key.deleted"];
    receiver
        .wait_for("every event", Duration::from_secs(20), |r| r.len() >= expect_a.len() + expect_b.len())
        .await;
    let accepted = receiver.accepted();
    let actions = |key: &str| -> Vec<String> {
        accepted
            .iter()
            .filter(|r| r.key_id() == key)
            .map(|r| r.body["data"]["action"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(actions(&a), expect_a, "in order for key a");
    assert_eq!(actions(&b), expect_b, "in order for key b");
    assert!(receiver.all().iter().filter(|r| !r.accepted).count() >= 6, "the failures were retried");
    assert_eq!(receiver.forged(), 0, "every delivery is signed with the endpoint's secret");
    for r in &accepted {
        let text = r.body.to_string();
        assert!(!text.contains(&a_secret) && !text.contains(&b_secret), "a payload holds a key");
        assert!(r.body["timestamp"].is_string());
        assert!(
            matches!(r.event_type(), "key.created" | "key.updated" | "key.revoked" | "key.deleted"),
            "{}",
            r.event_type()
        );
    }
    let created = accepted.iter().find(|r| r.key_id() == a).unwrap();
    assert_eq!(created.body["data"]["key"]["name"], "a");
    assert!(created.body["data"]["key"]["maskedKey"].as_str().unwrap().starts_with("kw_live_"));

    // The receiver may have an event before the worker has recorded its answer.
    let start = std::time::Instant::now();
    let page = loop {
        let page = s.get(&format!("/v1/webhooks/{id}/deliveries?limit=100"), &s.root).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        if page.body["data"].as_array().unwrap().iter().all(|d| d["state"] == "delivered") {
            break page;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not all delivered: {}", page.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let data = page.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 8);
    let retried: Vec<&Value> = data.iter().filter(|d| d["attempts"].as_array().unwrap().len() > 1).collect();
    assert!(!retried.is_empty());
    assert_eq!(retried[0]["attempts"][0]["status"], 503);
    assert_eq!(
        s.get(&format!("/v1/webhooks/{id}/deliveries?state=failed"), &s.root).await.body["data"],
        json!([])
    );

    let first = data.last().unwrap();
    let resent = s
        .post(&format!("/v1/webhook-deliveries/{}/resend", first["id"].as_str().unwrap()), &s.root, json!({}))
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{}", resent.body);
    assert_eq!(resent.body["state"], "pending");
    let event_id = first["eventId"].as_str().unwrap().to_owned();
    receiver
        .wait_for("the resend", Duration::from_secs(10), |r| {
            r.iter().filter(|x| x.id == event_id).count() == 2
        })
        .await;
    w.shutdown().await;
}

/// An endpoint failing every attempt is disabled after `disable_after` attempts, with an audit
/// event, and gets nothing more; enabled again, its deliveries resume, and one whose retry
/// window has passed is marked failed.
#[tokio::test]
async fn an_endpoint_failing_repeatedly_is_disabled_and_old_deliveries_fail() {
    let s = server().await;
    let receiver = Receiver::start().await;
    let (id, secret) = register(&s, &receiver.url, json!(["key.created"])).await;
    receiver.set_secret(&secret);
    receiver.fail_next(u32::MAX);
    let w = worker(&s, WebhookConfig { disable_after: 3, ..fast() });
    for name in ["a", "b", "c"] {
        s.key(name, &[]).await;
    }
    let start = std::time::Instant::now();
    loop {
        let ep = s.get(&format!("/v1/webhooks/{id}"), &s.root).await;
        if ep.body["enabled"] == false {
            assert_eq!(ep.body["consecutiveFailures"], 3);
            assert!(ep.body["disabledReason"].as_str().unwrap().contains("3 consecutive"));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never disabled: {}", ep.body);
        // Paced within the root key's 60 requests a minute.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let audit = s.get("/v1/audit-events?action=webhook.disabled", &s.root).await;
    assert_eq!(audit.body["data"].as_array().unwrap().len(), 1, "{}", audit.body);
    let attempts = receiver.all().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.all().len(), attempts, "a disabled endpoint gets nothing");
    w.shutdown().await;

    // Enabled again under a 150 ms retry window: the waiting deliveries go out, keep failing,
    // and fail for good once the window has passed.
    let w = worker(&s, WebhookConfig { retry_for: Duration::from_millis(150), ..fast() });
    let r = s
        .call(Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&s.root), Some(json!({"enabled": true})))
        .await;
    assert_eq!((r.body["enabled"].clone(), r.body["consecutiveFailures"].clone()), (json!(true), json!(0)));
    let start = std::time::Instant::now();
    loop {
        let failed = s.get(&format!("/v1/webhooks/{id}/deliveries?state=failed"), &s.root).await;
        if failed.body["data"].as_array().unwrap().len() == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never failed: {}", failed.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(receiver.all().len() > attempts, "the deliveries resumed");
    w.shutdown().await;
}

/// `kill -9` of the server between changes and their deliveries loses no event: under write
/// load, 20 kills, then every acknowledged key creation reaches the receiver at least once, and
/// a repeat carries the same `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_a_change_and_its_delivery_loses_no_event() {
    const KILLS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let args = [
        "--log-format",
        "json",
        "--webhook-allow-http",
        "--webhook-poll-ms",
        "20",
        "--webhook-timeout-secs",
        "1",
        "--webhook-retry-base-ms",
        "50",
    ];
    let mut running = crate::binary::start_with(dir.path(), &args);
    let root = running.stdout[2].clone();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{}/v1/webhooks", running.addr))
        .bearer_auth(&root)
        .json(&json!({"url": receiver.url, "events": ["key.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    receiver.set_secret(body["secret"].as_str().unwrap());

    let mut acknowledged: HashSet<String> = HashSet::new();
    for round in 0..KILLS {
        let addr = running.addr.clone();
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (client, addr, root) = (client.clone(), addr.clone(), root.clone());
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0.. {
                        let sent = client
                            .post(format!("http://{addr}/v1/keys"))
                            .bearer_auth(&root)
                            .json(&json!({"name": format!("r{round}w{w}k{i}")}))
                            .timeout(Duration::from_secs(2))
                            .send()
                            .await;
                        let Ok(resp) = sent else { break };
                        if resp.status() != 201 {
                            break;
                        }
                        let Ok(body) = resp.json::<Value>().await else { break };
                        ids.push(body["key"]["id"].as_str().unwrap().to_owned());
                    }
                    ids
                })
            })
            .collect();
        // Kill at a varying point of the load, deliveries under way.
        tokio::time::sleep(Duration::from_millis(150 + (round as u64 * 37) % 200)).await;
        crate::binary::kill(running);
        for w in writers {
            acknowledged.extend(w.await.unwrap());
        }
        running = crate::binary::start_with(dir.path(), &args);
    }
    assert!(acknowledged.len() > KILLS * 5, "too little load: {}", acknowledged.len());
    // A delivery claimed when its node died is sent again once its lease (2 × 1 s + 5 s) runs out.
    receiver
        .wait_for("every acknowledged creation", Duration::from_secs(60), |r| {
            let got: HashSet<&str> = r.iter().map(|x| x.key_id()).collect();
            acknowledged.iter().all(|id| got.contains(id.as_str()))
        })
        .await;
    let accepted = receiver.accepted();
    let mut ids_per_key: HashMap<&str, HashSet<&str>> = HashMap::new();
    for r in &accepted {
        ids_per_key.entry(r.key_id()).or_default().insert(r.id.as_str());
    }
    assert!(ids_per_key.values().all(|ids| ids.len() == 1), "a key's creation arrived under two event ids");
    let duplicates = accepted.len() - ids_per_key.len();
    eprintln!(
        "kill campaign: {KILLS} kills, {} acknowledged creations, {} received ({} events, {duplicates} repeats), {} forged",
        acknowledged.len(),
        accepted.len(),
        ids_per_key.len(),
        receiver.forged()
    );
    assert_eq!(receiver.forged(), 0);
    crate::binary::terminate(running);
}

/// Two nodes on one PostgreSQL database, each with its worker: no event is delivered by both at
/// once (the receiver holds each request, so an overlap would show), and each is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_never_deliver_one_event_concurrently() {
    let Some(schema) = keyward_store::testing::PgTestSchema::from_env() else { return };
    let a: std::sync::Arc<dyn keyward_core::KeyStore> = std::sync::Arc::new(schema.open().await);
    let b: std::sync::Arc<dyn keyward_core::KeyStore> = std::sync::Arc::new(schema.open().await);
    let service = keyward_core::KeyService::new(a.clone()).with_insecure_webhooks(true);
    let actor = keyward_core::Actor::system();
    let ws = service.create_workspace(keyward_core::NewWorkspace::live("Two"), &actor).await.unwrap();
    let receiver = Receiver::start().await;
    receiver.delay(30);
    let new = keyward_core::NewWebhook {
        workspace_id: ws.id,
        url: receiver.url.clone(),
        description: String::new(),
        events: vec![],
        enabled: true,
    };
    let created = service.create_webhook(new, &actor).await.unwrap();
    receiver.set_secret(secrecy::ExposeSecret::expose_secret(&created.secret));
    let config = WebhookConfig { batch: 4, ..fast() };
    let workers = [
        WebhookWorker::spawn(a.clone(), &ChangeRelay::default(), config.clone()).unwrap().unwrap(),
        WebhookWorker::spawn(b.clone(), &ChangeRelay::default(), config).unwrap().unwrap(),
    ];
    const KEYS: usize = 40;
    for i in 0..KEYS {
        service.create_key(keyward_core::NewKey::new(ws.id, &format!("k{i}")), &actor).await.unwrap();
    }
    receiver.wait_for("every event", Duration::from_secs(30), |r| r.len() >= KEYS).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let accepted = receiver.accepted();
    let ids: HashSet<&str> = accepted.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(receiver.overlaps(), 0, "one event was being delivered by both nodes at once");
    assert_eq!((ids.len(), accepted.len()), (KEYS, KEYS), "each event delivered once");
    for w in workers {
        w.shutdown().await;
    }
}

/// The worker sends `key.expiring` once for a key expiring within the notice period (not for one
/// expiring later), and exports audit checkpoints: a JSON line per chain in the file, equal to
/// the chain's head, and an `audit.checkpoint` event.
#[tokio::test]
async fn expiry_notices_and_audit_checkpoints_go_out() {
    let s = server().await;
    let receiver = Receiver::start().await;
    let (_, secret) = register(&s, &receiver.url, json!(["key.expiring", "audit.checkpoint"])).await;
    receiver.set_secret(&secret);
    let soon = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let r = s.post("/v1/keys", &s.root, json!({"name": "soon", "expiresAt": soon})).await;
    let soon_id = r.body["key"]["id"].as_str().unwrap().to_owned();
    s.post("/v1/keys", &s.root, json!({"name": "later", "expiresAt": later})).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoints.jsonl");
    let config = WebhookConfig {
        expiry_scan: Duration::from_millis(20),
        checkpoint_every: Some(Duration::from_millis(50)),
        checkpoint_file: Some(file.clone()),
        ..fast()
    };
    let w = worker(&s, config);
    receiver
        .wait_for("an expiry notice and a checkpoint", Duration::from_secs(10), |r| {
            r.iter().any(|x| x.event_type() == "key.expiring")
                && r.iter().any(|x| x.event_type() == "audit.checkpoint")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.shutdown().await;
    let accepted = receiver.accepted();
    let notices: Vec<_> = accepted.iter().filter(|x| x.event_type() == "key.expiring").collect();
    assert_eq!(notices.len(), 1, "one notice, for the key expiring within 7 days");
    assert_eq!(notices[0].key_id(), soon_id);

    let head = s.get("/v1/audit-events/verify", &s.root).await;
    assert_eq!(head.body["valid"], true);
    let text = std::fs::read_to_string(&file).unwrap();
    let last = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|l| l["workspaceId"] == head.body["workspaceId"])
        .expect("a checkpoint of the workspace");
    assert_eq!(
        (last["seq"].clone(), last["hash"].clone(), last["valid"].clone()),
        (head.body["headSeq"].clone(), head.body["headHash"].clone(), json!(true))
    );
    let event = accepted.iter().rev().find(|x| x.event_type() == "audit.checkpoint").unwrap();
    assert_eq!(event.body["data"]["hash"], head.body["headHash"]);
}
