//! Leak reports: GitHub secret scanning's signed `POST /v1/leaks/github`, and an operator's own
//! scanner on `POST /v1/keys/leaked`.

use base64::Engine as _;
use keyward_core::LeakPolicy;
use keyward_server::leaks::{GitHubScanningKey, LeakSettings};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Reply, Server};

const KEY_ID: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";

/// GitHub's side of the contract: a P-256 key pair made for the test.
fn github_signer(seed: u8) -> SigningKey {
    SigningKey::from_slice(&Sha256::digest([seed; 32])).expect("a valid scalar")
}

fn settings(policy: LeakPolicy) -> LeakSettings {
    let pem = github_signer(1).verifying_key().to_public_key_pem(LineEnding::LF).expect("pem");
    LeakSettings { policy, github_keys: vec![GitHubScanningKey::from_pem(KEY_ID, &pem).expect("key")] }
}

async fn server(policy: LeakPolicy) -> Server {
    Server::start_with(move |state| state.with_leaks(settings(policy))).await
}

fn sign(signer: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = signer.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der())
}

fn report(tokens: &[&str]) -> Vec<u8> {
    let items: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"token": t, "type": "keyward_api_key", "url": "https://github.com/acme/app/blob/main/.env", "source": "content"}))
        .collect();
    serde_json::to_vec(&items).expect("json")
}

/// POSTs `body` to the GitHub endpoint with the given signature headers (no API key).
async fn github(s: &Server, body: Vec<u8>, key_id: Option<&str>, signature: Option<&str>) -> Reply {
    let mut req = s
        .client
        .post(format!("{}/v1/leaks/github", s.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(id) = key_id {
        req = req.header("Github-Public-Key-Identifier", id);
    }
    if let Some(sig) = signature {
        req = req.header("Github-Public-Key-Signature", sig);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    assert!(headers.contains_key("x-request-id"));
    Reply { status, headers, body }
}

async fn signed(s: &Server, tokens: &[&str]) -> Reply {
    let body = report(tokens);
    let signature = sign(&github_signer(1), &body);
    github(s, body, Some(KEY_ID), Some(&signature)).await
}

fn sha256_hex(t: &str) -> String {
    hex::encode(Sha256::digest(t.as_bytes()))
}

async fn leak_events(s: &Server) -> Vec<Value> {
    let r = s.get("/v1/audit-events?action=key.leaked", &s.root).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().expect("events").clone()
}

/// A signed report revokes the keys it names and answers in GitHub's feedback format; tokens
/// that are no key (unknown, bad checksum, garbage) are false positives and cost nothing.
#[tokio::test]
async fn a_signed_github_report_revokes_the_key_it_names() {
    let s = server(LeakPolicy::Revoke).await;
    let (id, leaked) = s.key("leaked", &["keys:read"]).await;
    let unknown = keyward_core::KeyFormat::default().generate(keyward_core::KeyEnvironment::Live);
    let unknown = unknown.expose_secret();
    let mut bad_checksum = leaked.clone();
    bad_checksum.replace_range(20..21, if &leaked[20..21] == "A" { "B" } else { "A" });
    let tokens = [leaked.as_str(), unknown, bad_checksum.as_str(), "kw_live_nope"];
    let r = signed(&s, &tokens).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let feedback = r.body.as_array().expect("an array");
    assert_eq!(feedback.len(), 4);
    for (entry, token) in feedback.iter().zip(tokens) {
        assert_eq!(entry["token_hash"], sha256_hex(token));
        assert_eq!(entry["token_type"], "keyward_api_key");
    }
    let labels: Vec<&str> = feedback.iter().map(|e| e["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["true_positive", "false_positive", "false_positive", "false_positive"]);
    assert!(!r.body.to_string().contains(&leaked), "the answer never holds a token");

    s.get("/v1/status", &leaked).await.assert_error(401, "KEY_REVOKED");
    let key = s.get(&format!("/v1/keys/{id}"), &s.root).await.body["key"].clone();
    assert_eq!(key["status"], "revoked");
    assert!(key["leakedAt"].is_string());
    assert_eq!(key["leakSource"], "https://github.com/acme/app/blob/main/.env");
    let events = leak_events(&s).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["keyId"], id.as_str());
    assert!(events[0]["actorKeyId"].is_null(), "GitHub is no key");
    assert_eq!(events[0]["userAgent"], "GitHub secret scanning");

    let chain = s.get("/v1/audit-events/verify", &s.root).await;
    assert_eq!(chain.body["valid"], true, "{}", chain.body);

    // Reported again: still a true positive, nothing more changes.
    let r = signed(&s, &[&leaked]).await;
    assert_eq!(r.body[0]["label"], "true_positive");
    assert_eq!(leak_events(&s).await.len(), 1);
}

/// Unsigned, forged, tampered and unknown-key reports are 401 INVALID_SIGNATURE and change
/// nothing; an API key opens nothing here.
#[tokio::test]
async fn unsigned_or_forged_reports_change_nothing() {
    let s = server(LeakPolicy::Revoke).await;
    let (_, key) = s.key("victim", &["keys:read"]).await;
    let body = report(&[&key]);
    let forged = sign(&github_signer(2), &body);
    let genuine = sign(&github_signer(1), &body);
    let tampered = report(&[&key, &s.root]);
    for (body, id, signature) in [
        (body.clone(), None, None),
        (body.clone(), Some(KEY_ID), None),
        (body.clone(), None, Some(genuine.as_str())),
        (body.clone(), Some(KEY_ID), Some(forged.as_str())),
        (body.clone(), Some("another-key"), Some(genuine.as_str())),
        (body.clone(), Some(KEY_ID), Some("bm90IGEgc2lnbmF0dXJl")),
        (body.clone(), Some(KEY_ID), Some("%%%")),
        (tampered, Some(KEY_ID), Some(genuine.as_str())),
    ] {
        let r = github(&s, body, id, signature).await;
        r.assert_error(401, "INVALID_SIGNATURE");
    }
    // Bearing the root key instead of a signature is no better.
    let r = s
        .client
        .post(format!("{}/v1/leaks/github", s.base))
        .bearer_auth(&s.root)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.get("/v1/status", &key).await.status, StatusCode::OK, "the key still works");
    assert!(leak_events(&s).await.is_empty());

    // A server with no GitHub keys configured refuses every report.
    let bare = Server::start().await;
    let body = report(&[&bare.root]);
    let signature = sign(&github_signer(1), &body);
    github(&bare, body, Some(KEY_ID), Some(&signature)).await.assert_error(401, "INVALID_SIGNATURE");
    assert_eq!(bare.get("/v1/status", &bare.root).await.status, StatusCode::OK);
}

/// With `--leaked-keys flag`, a reported key is marked and keeps working.
#[tokio::test]
async fn flagged_keys_are_marked_and_keep_working() {
    let s = server(LeakPolicy::Flag).await;
    let (id, key) = s.key("flagged", &["keys:read"]).await;
    let r = signed(&s, &[&key]).await;
    assert_eq!(r.body[0]["label"], "true_positive", "{}", r.body);
    assert_eq!(s.get("/v1/status", &key).await.status, StatusCode::OK);
    let view = s.get(&format!("/v1/keys/{id}"), &s.root).await.body["key"].clone();
    assert_eq!(view["status"], "active");
    assert!(view["leakedAt"].is_string());
    assert_eq!(view["leakSource"], "https://github.com/acme/app/blob/main/.env");
    assert_eq!(leak_events(&s).await.len(), 1);
}

/// A leaked key is revoked even when it is the workspace's last key able to manage keys
/// (security before lock-out: `keyward root-key --reset` gets the operator back in).
#[tokio::test]
async fn a_leaked_last_admin_key_is_revoked() {
    let s = server(LeakPolicy::Revoke).await;
    let r = signed(&s, &[&s.root]).await;
    assert_eq!(r.body[0]["label"], "true_positive", "{}", r.body);
    s.get("/v1/status", &s.root).await.assert_error(401, "KEY_REVOKED");
}

async fn operator(s: &Server, key: &str, tokens: &[&str]) -> Reply {
    let tokens: Vec<Value> =
        tokens.iter().map(|t| json!({"token": t, "url": "https://paste.example/abc"})).collect();
    s.post("/v1/keys/leaked", key, json!({ "tokens": tokens })).await
}

/// `POST /v1/keys/leaked` needs `keys:write` and acts only on keys the caller manages: another
/// workspace's key, or one wider than the caller, is a false positive and stays as it was.
#[tokio::test]
async fn the_operator_endpoint_acts_only_on_keys_the_caller_manages() {
    let s = server(LeakPolicy::Revoke).await;
    let (_, reader) = s.key("reader", &["keys:read"]).await;
    let (_, scanner) = s.key("scanner", &["keys:write", "keys:read", "orders:read"]).await;
    let (narrow_id, narrow) = s.key("narrow", &["orders:read"]).await;
    let (_, wide) = s.key("wide", &["orders:*"]).await;
    let r = s.post("/v1/workspaces", &s.root, json!({"name": "other"})).await;
    let other_ws = r.body["id"].as_str().expect("workspace").to_owned();
    let r = s
        .client
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.root)
        .header("x-workspace-id", &other_ws)
        .json(&json!({"name": "theirs", "scopes": ["orders:read"]}))
        .send()
        .await
        .expect("send");
    let theirs = r.json::<Value>().await.expect("json")["secret"].as_str().expect("secret").to_owned();

    operator(&s, &reader, &[&narrow]).await.assert_error(403, "INSUFFICIENT_SCOPE");
    s.post("/v1/keys/leaked", &scanner, json!({"tokens": []})).await.assert_error(400, "VALIDATION_FAILED");
    let many: Vec<&str> = vec!["kw_live_x"; 1001];
    operator(&s, &scanner, &many).await.assert_error(400, "VALIDATION_FAILED");

    let r = operator(&s, &scanner, &[&narrow, &wide, &theirs, "kw_live_unknown"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let labels: Vec<&str> =
        r.body["data"].as_array().unwrap().iter().map(|v| v["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["true_positive", "false_positive", "false_positive", "false_positive"]);
    assert_eq!(r.body["data"][0]["tokenHash"], sha256_hex(&narrow));
    s.get("/v1/status", &narrow).await.assert_error(401, "KEY_REVOKED");
    assert_eq!(s.get("/v1/status", &wide).await.status, StatusCode::OK, "wider than the caller");
    assert_eq!(s.get("/v1/status", &theirs).await.status, StatusCode::OK, "another workspace's");
    let view = s.get(&format!("/v1/keys/{narrow_id}"), &s.root).await.body["key"].clone();
    assert_eq!(view["leakSource"], "https://paste.example/abc");
    let events = leak_events(&s).await;
    assert_eq!(events.len(), 1);
    assert!(events[0]["actorKeyId"].is_string(), "the scanner's key acted");
}
