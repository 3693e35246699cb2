//! A stand-in server that answers `429` a set number of times before it answers `200`, and a
//! sleeper that records the waits it is asked for instead of sleeping.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keyward_client::{KeywardClient, RetryPolicy};
use serde_json::json;

/// What the stand-in puts in `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RetryAfter {
    Seconds(u64),
    /// An HTTP date this many seconds from the response.
    DateIn(u64),
    None,
}

pub(crate) struct Limited {
    /// 429s left before the stand-in answers 200.
    remaining: AtomicU32,
    retry_after: RetryAfter,
    /// Requests received, and the `Authorization` header of the last one.
    pub(crate) hits: AtomicU32,
    pub(crate) last_auth: Mutex<Option<String>>,
    pub(crate) last_workspace: Mutex<Option<String>>,
}

pub(crate) struct StandIn {
    pub(crate) base: String,
    pub(crate) state: Arc<Limited>,
}

impl StandIn {
    /// Answers `429` `times` times, then `200`, on `GET /v1/status` (which documents 429),
    /// `GET /v1/keys` (which does not) and `POST /v1/keys`.
    pub(crate) async fn start(times: u32, retry_after: RetryAfter) -> StandIn {
        let state = Arc::new(Limited {
            remaining: AtomicU32::new(times),
            retry_after,
            hits: AtomicU32::new(0),
            last_auth: Mutex::new(None),
            last_workspace: Mutex::new(None),
        });
        let app = Router::new()
            .route("/v1/status", get(status))
            .route("/v1/keys", get(status).post(status))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { base: format!("http://{addr}"), state }
    }

    pub(crate) fn hits(&self) -> u32 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// A client with `policy` whose sleeper records into the returned list.
    pub(crate) fn client(&self, policy: RetryPolicy) -> (KeywardClient, Arc<Mutex<Vec<Duration>>>) {
        let waits = Arc::new(Mutex::new(Vec::new()));
        let record = waits.clone();
        let client = KeywardClient::builder(&self.base, "kw_test_stand-in-key")
            .retry_policy(policy)
            .sleeper(move |d: Duration| {
                record.lock().unwrap().push(d);
                std::future::ready(())
            })
            .build()
            .unwrap();
        (client, waits)
    }
}

async fn status(State(s): State<Arc<Limited>>, headers: HeaderMap) -> Response {
    let n = s.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    *s.last_auth.lock().unwrap() = text("authorization");
    *s.last_workspace.lock().unwrap() = text("x-workspace-id");
    let request_id = format!("req-{n}");
    let left = s.remaining.load(Ordering::SeqCst);
    if left > 0 {
        s.remaining.store(left - 1, Ordering::SeqCst);
        let body = json!({"error": {
            "code": "RATE_LIMITED",
            "message": "Rate limit reached: 1 per 60 s.",
            "details": {"limit": 1},
            "requestId": request_id,
        }});
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        let value = match s.retry_after {
            RetryAfter::Seconds(n) => Some(n.to_string()),
            RetryAfter::DateIn(n) => {
                Some(httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(n)))
            }
            RetryAfter::None => None,
        };
        if let Some(v) = value {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(&v).unwrap());
        }
        response.headers_mut().insert("x-request-id", HeaderValue::from_str(&request_id).unwrap());
        return response;
    }
    let body = json!({
        "valid": true,
        "keyId": "0191a8f0-0000-7000-8000-000000000001",
        "keyName": "stand-in",
        "workspaceId": "0191a8f0-0000-7000-8000-000000000002",
        "workspaceName": "default",
        "environment": "live",
        "plan": "default",
        "scopes": ["*"],
        "rateLimit": {"windows": []},
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
