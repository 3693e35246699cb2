//! A webhook receiver on `127.0.0.1:0` for the tests: it verifies every delivery's signature
//! with the endpoint's secret, records it, and answers 200, or 503 while told to fail.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keyward_core::webhook_signature::{self, WebhookSecret};
use serde_json::Value;

/// One delivery as received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// `webhook-id`.
    pub(crate) id: String,
    /// The body.
    pub(crate) body: Value,
    /// Whether the receiver answered 2xx.
    pub(crate) accepted: bool,
}

impl Received {
    pub(crate) fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
    pub(crate) fn key_id(&self) -> &str {
        self.body["data"]["key"]["id"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    secret: Mutex<Option<String>>,
    received: Mutex<Vec<Received>>,
    /// Requests still to refuse with 503.
    failing: AtomicU32,
    /// Deliveries with a bad signature (must stay 0).
    forged: AtomicU32,
    /// How long to hold each request before answering.
    delay_ms: AtomicU32,
    /// Ids being handled right now, to catch concurrent deliveries of one event.
    in_flight: Mutex<Vec<String>>,
    overlaps: AtomicU32,
}

/// The receiver; clones share it.
#[derive(Clone)]
pub(crate) struct Receiver {
    inner: Arc<Inner>,
    pub(crate) url: String,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { inner, url }
    }

    /// The endpoint's signing secret, to verify deliveries with.
    pub(crate) fn set_secret(&self, secret: &str) {
        *self.inner.secret.lock().unwrap() = Some(secret.to_owned());
    }

    /// Refuses the next `n` requests with 503.
    pub(crate) fn fail_next(&self, n: u32) {
        self.inner.failing.store(n, Ordering::SeqCst);
    }

    /// Holds every request this long before answering.
    pub(crate) fn delay(&self, ms: u32) {
        self.inner.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Every request so far, accepted or not.
    pub(crate) fn all(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// The accepted deliveries so far.
    pub(crate) fn accepted(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.accepted).collect()
    }

    pub(crate) fn forged(&self) -> u32 {
        self.inner.forged.load(Ordering::SeqCst)
    }

    pub(crate) fn overlaps(&self) -> u32 {
        self.inner.overlaps.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds of the accepted deliveries, for at most `limit`.
    pub(crate) async fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&[Received]) -> bool) {
        let start = Instant::now();
        loop {
            if done(&self.accepted()) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; received: {:#?}",
                self.all().iter().map(|r| (r.event_type().to_owned(), r.accepted)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let id = header(webhook_signature::HEADER_ID);
    let secret = inner.secret.lock().unwrap().clone();
    let valid = secret.is_some_and(|s| {
        let secret = WebhookSecret::parse(&s).expect("a secret");
        webhook_signature::verify(
            &secret,
            &id,
            &header(webhook_signature::HEADER_TIMESTAMP),
            &header(webhook_signature::HEADER_SIGNATURE),
            &body,
            chrono::Utc::now(),
            webhook_signature::DEFAULT_TOLERANCE,
        )
        .is_ok()
    });
    if !valid {
        inner.forged.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    {
        let mut in_flight = inner.in_flight.lock().unwrap();
        if in_flight.contains(&id) {
            inner.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        in_flight.push(id.clone());
    }
    let delay = inner.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
    }
    let accepted =
        inner.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner.received.lock().unwrap().push(Received { id: id.clone(), body: parsed, accepted });
    {
        let mut in_flight = inner.in_flight.lock().unwrap();
        if let Some(i) = in_flight.iter().position(|x| *x == id) {
            in_flight.remove(i);
        }
    }
    if accepted { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}
