//! What the layer tells a service's own logs and metrics: the verified key's id and workspace in
//! the request's span, and the verifier's metrics in the service's recorder. Both the
//! subscriber and the recorder are this test's thread's only (`#[tokio::test]` runs the server,
//! the client and the layer on one thread).

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use keyward_tower::{KeywardLayer, trace};
use metrics_exporter_prometheus::PrometheusBuilder;
use tower_http::trace::TraceLayer;

use crate::support::{Auth, Client, Harness, serve};

/// Log output, shared with the subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().expect("logs").clone())
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn series(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_layer_fills_the_request_span_and_the_services_recorder() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _recorder = metrics::set_default_local_recorder(&recorder);

    let h = Harness::new().await;
    let key = h.key(|k| k).await;
    let plain = key.secret.expose_secret().to_owned();
    let app = Router::new()
        .route("/orders", get(|| async { "orders" }))
        .layer(KeywardLayer::new(h.verifier()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|_: &axum::extract::Request| {
                    tracing::info_span!(
                        "request",
                        request_id = tracing::field::Empty,
                        key_id = tracing::field::Empty,
                        workspace_id = tracing::field::Empty,
                    )
                })
                .on_response(|res: &axum::response::Response, _, _: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), "answered");
                }),
        );
    let client = Client::new(serve(app).await);

    let ok = client.send("/orders", Auth::Bearer(&plain), &[("x-request-id", "req-ok")]).await;
    assert_eq!(ok.status, 200);
    client.send("/orders", Auth::None, &[]).await.error(401, "MISSING_API_KEY");
    client.send("/orders", Auth::ApiKey("kw_live_garbage"), &[]).await.error(401, "INVALID_API_KEY");

    let lines = logs.lines();
    let answered: Vec<&String> = lines.iter().filter(|l| l.contains("answered")).collect();
    assert_eq!(answered.len(), 3, "{lines:#?}");
    let verified = answered.iter().find(|l| l.contains("status=200")).expect("the verified request");
    assert!(verified.contains(&format!("{}=\"req-ok\"", trace::REQUEST_ID)), "{verified}");
    assert!(verified.contains(&format!("{}={}", trace::KEY_ID, key.key.id)), "{verified}");
    assert!(verified.contains(&format!("{}={}", trace::WORKSPACE_ID, h.workspace.id)), "{verified}");
    for refused in answered.iter().filter(|l| l.contains("status=401")) {
        assert!(refused.contains("request_id=") && !refused.contains("key_id="), "{refused}");
    }
    assert!(!lines.iter().any(|l| l.contains(&plain) || l.contains("Bearer")), "{lines:#?}");

    let text = prometheus.render();
    for (outcome, n) in [("VALID", 1.0), ("MISSING_API_KEY", 1.0), ("INVALID_API_KEY", 1.0)] {
        let name = format!(r#"keyward_verifications_total{{outcome="{outcome}"}}"#);
        assert_eq!(series(&text, &name), Some(n), "{name} in\n{text}");
    }
    assert!(!text.contains(&plain) && !text.contains(&key.key.id.to_string()), "{text}");
}
