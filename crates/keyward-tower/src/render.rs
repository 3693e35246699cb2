//! Turns a catalog error into HTTP parts, through keyward-core's shared rendering.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use keyward_core::http::{
    ErrorResponse, RATE_LIMIT_HEADERS, REQUEST_ID, RateLimitHeaders, grpc_error_headers, is_kept_request_id,
    new_request_id, render_rate_limit_parts, render_rate_limit_policy,
};
use keyward_core::{Error, RateLimitStatus, RateLimitWindow};

/// `x-request-id`.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID);

/// An error as status, headers and body (`None` for the empty body of a gRPC error).
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
}

/// Renders `error` for a request with id `request_id`: the catalog JSON for HTTP, a
/// trailers-only response (HTTP 200, `grpc-status`, `grpc-message`) for gRPC.
pub(crate) fn render(
    error: &Error,
    request_id: &HeaderValue,
    grpc: bool,
    sent: RateLimitHeaders,
) -> Rendered {
    let mut headers = HeaderMap::new();
    if grpc {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        for (name, value) in grpc_error_headers(error) {
            append(&mut headers, name, value);
        }
        headers.insert(X_REQUEST_ID, request_id.clone());
        if let Some(wait) = error.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        }
        if let Some(rate) = error.rate_limit() {
            insert_rate_limit_headers(rate, &mut headers, sent);
        }
        return Rendered { status: StatusCode::OK, headers, body: None };
    }
    // `request_id` values are made by `request_id_value`, so they are visible ASCII.
    let id = request_id.to_str().unwrap_or_default();
    let response = ErrorResponse::new(error, id, None).with_rate_limit_headers(sent);
    for (name, value) in response.headers {
        append(&mut headers, name, value);
    }
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Rendered { status, headers, body: Some(Bytes::from(response.body)) }
}

/// [`RATE_LIMIT_HEADERS`] as header names.
const RATE_LIMIT_NAMES: [HeaderName; 5] = [
    HeaderName::from_static(RATE_LIMIT_HEADERS[0]),
    HeaderName::from_static(RATE_LIMIT_HEADERS[1]),
    HeaderName::from_static(RATE_LIMIT_HEADERS[2]),
    HeaderName::from_static(RATE_LIMIT_HEADERS[3]),
    HeaderName::from_static(RATE_LIMIT_HEADERS[4]),
];

/// Adds the `X-RateLimit-*` and `RateLimit-Policy`/`RateLimit` headers of a decision: the
/// names static, the policy value reused while a thread's requests share a policy, every other
/// value a slice of one buffer.
pub(crate) fn insert_rate_limit_headers(
    status: &RateLimitStatus,
    headers: &mut HeaderMap,
    sent: RateLimitHeaders,
) {
    if sent == RateLimitHeaders::None {
        return;
    }
    let mut text = Vec::with_capacity(48 + 32 * status.windows.len());
    let Some(ends) = render_rate_limit_parts(status, &mut text, false) else { return };
    let text = Bytes::from(text);
    let mut start = 0;
    for (i, (name, end)) in RATE_LIMIT_NAMES.into_iter().zip(ends).enumerate() {
        let value = match i {
            _ if !sent.sends_index(i) => None,
            3 => Some(policy_value(status)),
            _ => Some(HeaderValue::from_maybe_shared(text.slice(start..end))),
        };
        if let Some(Ok(value)) = value {
            headers.insert(name, value);
        }
        start = end;
    }
}

/// A `RateLimit-Policy` value and the windows it was rendered from.
struct PolicyMemo {
    windows: Vec<(&'static str, RateLimitWindow)>,
    value: HeaderValue,
}

thread_local! {
    /// The last policy value this thread rendered: requests in a row mostly share a plan, and so
    /// a policy. One per thread, so that no lock is shared.
    static POLICY: std::cell::RefCell<Option<PolicyMemo>> = const { std::cell::RefCell::new(None) };
}

/// The `RateLimit-Policy` value of a decision: the memo's when its windows have the same
/// subjects, limits and periods (all the value depends on), else rendered and memoised.
fn policy_value(status: &RateLimitStatus) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let same = |memo: &PolicyMemo| {
        memo.windows.len() == status.windows.len()
            && memo.windows.iter().zip(&status.windows).all(|(m, w)| m.0 == w.subject_kind && m.1 == w.window)
    };
    let render = || {
        let mut text = Vec::with_capacity(32 * status.windows.len());
        render_rate_limit_policy(status, &mut text);
        HeaderValue::from_maybe_shared(Bytes::from(text))
    };
    POLICY
        .try_with(|memo| {
            let mut memo = memo.borrow_mut();
            if let Some(memo) = memo.as_ref().filter(|m| same(m)) {
                return Ok(memo.value.clone());
            }
            let value = render()?;
            let windows = status.windows.iter().map(|w| (w.subject_kind, w.window)).collect();
            *memo = Some(PolicyMemo { windows, value: value.clone() });
            Ok(value)
        })
        // The thread is being torn down: render without the memo.
        .unwrap_or_else(|_| render())
}

fn append(headers: &mut HeaderMap, name: &str, value: String) {
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::try_from(value)) {
        headers.append(name, value);
    }
}

/// The request id (the caller's `X-Request-Id` when sane, else a new one) as a header value.
///
/// The caller's value is shared, not copied; a fresh id is one allocation, which the request's
/// and the response's headers share.
pub(crate) fn request_id_value(incoming: Option<&HeaderValue>) -> HeaderValue {
    match incoming {
        Some(v) if is_kept_request_id(v.as_bytes()) => v.clone(),
        // Hex digits and a dash: always a valid header value.
        _ => HeaderValue::from_maybe_shared(Bytes::from_owner(new_request_id()))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
        assert_eq!(request_id_value(Some(&HeaderValue::from_static("abc-1"))), "abc-1");
        let long = HeaderValue::try_from("a".repeat(129)).unwrap();
        let replaced = request_id_value(Some(&long));
        assert!(!replaced.is_empty() && replaced.len() <= 128 && replaced != long);
        assert_ne!(request_id_value(None), request_id_value(None), "fresh ids differ");
    }

    #[test]
    fn grpc_errors_are_trailers_only() {
        use keyward_core::ErrorCode;
        let error =
            Error::new(ErrorCode::RateLimited, "slow down: 100%").with_retry_after(Duration::from_secs(3));
        let r = render(&error, &HeaderValue::from_static("rid"), true, RateLimitHeaders::All);
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_none());
        assert_eq!(r.headers["content-type"], "application/grpc");
        assert_eq!(r.headers["grpc-status"], "8");
        assert_eq!(r.headers["grpc-message"], "slow down: 100%25");
        assert_eq!(r.headers["x-request-id"], "rid");
        assert_eq!(r.headers["retry-after"], "3");
    }

    #[test]
    fn rate_limit_headers_match_the_shared_rendering() {
        use keyward_core::http::rate_limit_headers;
        use keyward_core::{RateLimitWindow, WindowState};
        let window = |limit, kind| WindowState {
            subject_kind: kind,
            window: RateLimitWindow::per_hour(limit),
            remaining: limit - 1,
            reset_after: Duration::from_millis(1_500),
        };
        let one = RateLimitStatus { windows: vec![window(100, "key")], retry_after: None };
        let many = RateLimitStatus {
            windows: (0..12).map(|i| window(1_000_000_000 + i, "workspace")).collect(),
            retry_after: None,
        };
        for status in [one, many] {
            let mut headers = HeaderMap::new();
            insert_rate_limit_headers(&status, &mut headers, RateLimitHeaders::All);
            let expected = rate_limit_headers(&status);
            assert_eq!(headers.len(), expected.len());
            for (name, value) in expected {
                assert_eq!(headers[name], value.as_str(), "{name}");
            }
        }
    }

    #[test]
    fn the_policy_value_follows_each_decisions_windows() {
        use keyward_core::http::rate_limit_headers;
        use keyward_core::{RateLimitWindow, WindowState};
        let status = |kind, window: RateLimitWindow| RateLimitStatus {
            windows: vec![WindowState {
                subject_kind: kind,
                window,
                remaining: 1,
                reset_after: Duration::from_secs(1),
            }],
            retry_after: None,
        };
        // Each differs from the one before in one thing the policy shows; the last repeats the
        // first, after the memo has moved on.
        let statuses = [
            status("key", RateLimitWindow::per_minute(10)),
            status("key", RateLimitWindow::per_minute(11)),
            status("key", RateLimitWindow::per_hour(11)),
            status("workspace", RateLimitWindow::per_hour(11)),
            status("key", RateLimitWindow::per_minute(10)),
        ];
        for status in statuses.iter().chain(&statuses) {
            let mut headers = HeaderMap::new();
            insert_rate_limit_headers(status, &mut headers, RateLimitHeaders::All);
            let expected = rate_limit_headers(status);
            assert_eq!(headers["ratelimit-policy"], expected[3].1.as_str());
        }
    }

    #[test]
    fn rate_limited_errors_carry_the_rate_limit_headers() {
        use keyward_core::{ErrorCode, RateLimitWindow, WindowState};
        let status = RateLimitStatus {
            windows: vec![WindowState {
                subject_kind: "key",
                window: RateLimitWindow::per_minute(5),
                remaining: 0,
                reset_after: Duration::from_secs(60),
            }],
            retry_after: Some(Duration::from_millis(11_990)),
        };
        let error = Error::new(ErrorCode::RateLimited, "rate limit reached; retry later")
            .with_retry_after(Duration::from_secs(12))
            .with_rate_limit(status);
        let r = render(&error, &HeaderValue::from_static("rid"), false, RateLimitHeaders::All);
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers["retry-after"], "12");
        assert_eq!(r.headers["x-ratelimit-limit"], "5");
        assert_eq!(r.headers["x-ratelimit-remaining"], "0");
        assert_eq!(r.headers["ratelimit-policy"], "\"key-60s\";q=5;w=60");
        let body: serde_json::Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["error"]["requestId"], "rid");
    }
}
