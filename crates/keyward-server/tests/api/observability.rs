//! What `keyward serve` tells its operators: one log line per request, and Prometheus metrics on
//! `/metrics`, for a key with `metrics:read` on the API's listener or without a key on
//! `--metrics-bind`'s. Each test runs the binary, so the metrics it reads are its own process's.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::binary::{Running, logged_addr, start_with, terminate};

/// The value of the series `series` (name and labels as rendered), or `None` when absent.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn create_key(client: &reqwest::Client, base: &str, root: &str, scopes: &[&str]) -> (String, String) {
    let r = client
        .post(format!("{base}/v1/keys"))
        .bearer_auth(root)
        .json(&json!({ "name": "ops", "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    (body["key"]["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

struct Sent {
    route: &'static str,
    status: u16,
    request_id: String,
    key_id: Option<String>,
}

#[tokio::test]
async fn every_request_is_logged_once_with_its_route_status_request_id_and_key_id_never_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), &["--log-format", "json"]);
    let (base, root) = (format!("http://{}", running.addr), running.stdout[2].clone());
    let client = reqwest::Client::new();
    let (id, key) = create_key(&client, &base, &root, &["keys:read"]).await;
    let mut sent = Vec::new();
    let mut send = async |path: &str, key: Option<&str>, route, key_id: Option<&str>| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let r = req.send().await.unwrap();
        let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        sent.push(Sent { route, status: r.status().as_u16(), request_id, key_id: key_id.map(str::to_owned) });
    };
    send(&format!("/v1/keys/{id}"), Some(&key), "/v1/keys/{id}", Some(&id)).await;
    send("/v1/status", None, "/v1/status", None).await;
    // A key pasted into the path is not repeated: the route is the template.
    send(&format!("/v1/keys/{key}"), Some(&key), "/v1/keys/{id}", Some(&id)).await;
    send("/no/such/path", Some(&key), "unmatched", Some(&id)).await;
    send("/healthz", None, "/healthz", None).await;
    send("/readyz", Some(&key), "/readyz", None).await;
    let logs = terminate(running);

    let lines: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request answered")
        .collect();
    // The key creation first, then one line per request sent.
    assert_eq!(lines.len(), 1 + sent.len(), "{logs:#?}");
    for (line, sent) in lines[1..].iter().zip(&sent) {
        assert_eq!(line["fields"]["status"], sent.status, "{line}");
        assert_eq!(line["fields"]["request_id"], sent.request_id.as_str(), "{line}");
        assert!(line["fields"]["latency_ms"].as_f64().is_some(), "{line}");
        assert_eq!(line["span"]["route"], sent.route, "{line}");
        assert_eq!(line["span"]["method"], "GET", "{line}");
        assert_eq!(line["span"]["key_id"].as_str(), sent.key_id.as_deref(), "{line}");
    }
    assert_eq!(sent[0].status, 200);
    assert_eq!(sent[1].status, 401);
    for secret in [&root, &key] {
        assert!(!logs.iter().any(|l| l.contains(secret.as_str())), "a log line holds a key");
        assert!(!logs.iter().any(|l| l.contains(&secret[..20])), "a log line holds part of a key");
    }
}

#[tokio::test]
async fn text_logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), &["--log-format", "text"]);
    let r = reqwest::get(format!("http://{}/healthz", running.addr)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let started = running.started.clone();
    let logs = terminate(running);
    let line = logs.iter().find(|l| l.contains("request answered")).unwrap_or_else(|| panic!("{logs:#?}"));
    assert!(line.contains(r#"route="/healthz""#) && line.contains("status=200"), "{line}");
    assert!(!started.iter().chain(&logs).any(|l| l.contains('\x1b')), "ANSI codes in a pipe: {logs:#?}");
}

/// Starts the binary with a metrics listener of its own; returns it and that listener's address.
fn start_with_metrics_listener(dir: &std::path::Path) -> (Running, String) {
    let running = start_with(dir, &["--log-format", "json", "--metrics-bind", "127.0.0.1:0"]);
    let line =
        running.started.iter().find(|l| l.contains("keyward metrics listening")).expect("metrics listener");
    let metrics = logged_addr(line);
    (running, metrics)
}

#[tokio::test]
async fn metrics_count_verifications_by_outcome_for_scoped_keys_and_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (running, metrics_addr) = start_with_metrics_listener(dir.path());
    let (base, root) = (format!("http://{}", running.addr), running.stdout[2].clone());
    let client = reqwest::Client::new();
    let (reader_id, reader) = create_key(&client, &base, &root, &["metrics:read"]).await;
    let (other_id, other) = create_key(&client, &base, &root, &["keys:read"]).await;
    let scrape = async |key: Option<&str>| {
        let mut req = client.get(format!("{base}/metrics"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.headers().get("content-type").cloned(), r.text().await.unwrap())
    };

    // On the API's listener: a key with `metrics:read` (or `*`), nothing less.
    let (status, _, body) = scrape(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains("keyward_"), "{body}");
    let (status, _, body) = scrape(Some(&other)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "INSUFFICIENT_SCOPE");
    let (status, content_type, before) = scrape(Some(&reader)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().to_str().unwrap().starts_with("text/plain; version=0.0.4"));

    let missing = r#"keyward_verifications_total{outcome="MISSING_API_KEY"}"#;
    let invalid = r#"keyward_verifications_total{outcome="INVALID_API_KEY"}"#;
    let count = |text: &str, name: &str| series(text, name).unwrap_or(0.0);
    assert_eq!(count(&before, missing), 1.0, "the unauthenticated scrape: {before}");
    let r = client.get(format!("{base}/v1/status")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client.get(format!("{base}/v1/status")).bearer_auth("kw_live_not-a-key").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, _, after) = scrape(Some(&reader)).await;
    assert_eq!(count(&after, missing), 2.0, "{after}");
    assert_eq!(count(&after, invalid), count(&before, invalid) + 1.0, "{after}");
    assert!(count(&after, r#"keyward_verifications_total{outcome="VALID"}"#) >= 4.0, "{after}");

    // On its own listener, without a key: the same metrics, and nothing else.
    let own = reqwest::get(format!("http://{metrics_addr}/metrics")).await.unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    let text = own.text().await.unwrap();
    for name in [
        "keyward_verifications_total",
        "keyward_verify_duration_seconds_bucket",
        "keyward_cache_hits_total",
        "keyward_cache_misses_total",
        "keyward_cache_entries",
        "keyward_rate_limit_decisions_total",
        "keyward_store_operation_duration_seconds_bucket",
        "keyward_http_requests_total",
        "keyward_http_request_duration_seconds_bucket",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "no {name} in\n{text}");
    }
    assert_eq!(
        series(&text, r#"keyward_http_requests_total{method="GET",route="/v1/status",status="401"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        series(&text, r#"keyward_http_requests_total{method="GET",route="/metrics",status="403"}"#),
        Some(1.0)
    );
    let r = reqwest::get(format!("http://{metrics_addr}/v1/status")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the metrics listener serves /metrics only");

    for text in [&before, &after, &text] {
        for secret in [&root, &reader, &other] {
            assert!(!text.contains(secret.as_str()) && !text.contains(&secret[..12]), "a key in the metrics");
        }
        assert!(!text.contains(&reader_id) && !text.contains(&other_id), "a key id in the metrics");
    }
    terminate(running);
}
