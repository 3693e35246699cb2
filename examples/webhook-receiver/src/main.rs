//! Receives keyward webhooks in axum: checks the signature on the raw body, then parses it.
//!
//! ```text
//! KEYWARD_WEBHOOK_SECRET=whsec_... cargo run -p example-webhook-receiver   # 127.0.0.1:8000
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use keyward::webhook_signature::{self, DEFAULT_TOLERANCE, WebhookSecret};
use keyward::webhook_signature::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

async fn receive(State(secret): State<Arc<WebhookSecret>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, timestamp) = (header(HEADER_ID), header(HEADER_TIMESTAMP));
    let now = chrono::Utc::now();
    // `Bytes` is the body exactly as sent: verify it before any JSON parsing.
    if let Err(e) = webhook_signature::verify(
        &secret,
        id,
        timestamp,
        header(HEADER_SIGNATURE),
        &body,
        now,
        DEFAULT_TOLERANCE,
    ) {
        eprintln!("refused a webhook: {e}");
        return StatusCode::BAD_REQUEST;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    // De-duplicate on the id: a retried or resent event keeps it. Answer within 10 seconds;
    // hand slow work to a queue.
    println!("{id} {}", event["type"]);
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secret = WebhookSecret::parse(&std::env::var("KEYWARD_WEBHOOK_SECRET")?)?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".to_owned());
    let app = Router::new().route("/webhooks", post(receive)).with_state(Arc::new(secret));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
