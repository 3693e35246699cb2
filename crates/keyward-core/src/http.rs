//! Framework-neutral HTTP rendering shared by the tower and actix integrations: the headers
//! of a verified response, the status, headers and JSON body of an error, request ids, and the
//! gRPC form of an error. Keeping it here makes every integration answer byte-for-byte alike.
//!
//! ```
//! use keyward_core::http::{ErrorResponse, request_id};
//! use keyward_core::{Error, ErrorCode};
//!
//! let id = request_id(None);
//! let resp = ErrorResponse::new(&Error::new(ErrorCode::MissingApiKey, "no key"), &id, None);
//! assert_eq!(resp.status, 401);
//! assert!(resp.headers.iter().any(|(n, _)| *n == "www-authenticate"));
//! assert!(std::str::from_utf8(&resp.body).unwrap().contains("\"MISSING_API_KEY\""));
//! ```

use crate::error::Error;
use crate::ratelimit::RateLimitStatus;

/// `x-request-id`.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id to use: the caller's `X-Request-Id` when it is 1 to 128 visible ASCII
/// characters and does not look like an API key, otherwise a new id: 64 random bits drawn once
/// per process followed by a counter, so ids are unique across nodes without asking the OS for
/// randomness on every request.
///
/// Request ids are echoed in responses and written to logs, so an id holding something shaped
/// like a key (`<prefix>_live_` or `<prefix>_test_` for any valid prefix) is replaced: a client
/// that pastes its key into the wrong header must not have it logged.
pub fn request_id(incoming: Option<&[u8]>) -> String {
    match incoming {
        Some(v) if is_kept_request_id(v) => String::from_utf8_lossy(v).into_owned(),
        _ => {
            let id = new_request_id();
            // Only ASCII hex digits and a dash were written.
            String::from_utf8_lossy(&id).into_owned()
        }
    }
}

/// Whether a caller's `X-Request-Id` is kept as the request's id (see [`request_id`]): 1 to 128
/// visible ASCII characters that do not look like a key.
pub fn is_kept_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|c| c.is_ascii_graphic()) && !looks_like_key(v)
}

/// Length of a fresh request id.
pub const NEW_REQUEST_ID_LEN: usize = 29;

/// Whether `v` holds `<prefix>_live_` or `<prefix>_test_`, where a prefix is what
/// [`KeyFormat`](crate::KeyFormat) accepts: a lowercase letter, then lowercase letters or digits.
/// Matched case-insensitively, since a key's prefix is easily retyped in capitals.
fn looks_like_key(v: &[u8]) -> bool {
    ["_live_", "_test_"].iter().any(|env| {
        v.windows(env.len()).enumerate().any(|(i, w)| {
            // The prefix before the environment: letters and digits, at least one letter.
            w.eq_ignore_ascii_case(env.as_bytes())
                && v[..i].last().is_some_and(u8::is_ascii_alphanumeric)
                && v[..i].iter().rev().take_while(|c| c.is_ascii_alphanumeric()).any(u8::is_ascii_alphabetic)
        })
    })
}

/// A fresh request id, `{prefix:016x}-{n:012x}` (a random prefix per process, then a counter), as
/// bytes: integrations that build a header value from it need no `String`.
pub fn new_request_id() -> [u8; NEW_REQUEST_ID_LEN] {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random number generator failed");
        u64::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Without the formatting machinery (this runs per request). The counter wraps at 48 bits,
    // which keeps the length fixed; ids repeat only after 2^48 requests.
    let mut id = [b'-'; NEW_REQUEST_ID_LEN];
    put_hex(&mut id[..16], prefix);
    put_hex(&mut id[17..], n & 0xffff_ffff_ffff);
    id
}

/// Lowercase hex of the low `4 * out.len()` bits of `v`, zero-padded to fill `out`.
fn put_hex(out: &mut [u8], v: u64) {
    let n = out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = b"0123456789abcdef"[((v >> (4 * (n - 1 - i))) & 0xf) as usize];
    }
}

/// The names of the rate-limit headers, in the order [`render_rate_limit`] writes their values:
/// `X-RateLimit-*` (the tightest window), then the IETF draft `RateLimit-Policy` and `RateLimit`
/// (every window).
pub const RATE_LIMIT_HEADERS: [&str; 5] =
    ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-policy", "ratelimit"];

/// Which of the [`RATE_LIMIT_HEADERS`] the integrations send, set with
/// [`VerifierBuilder::rate_limit_headers`](crate::VerifierBuilder::rate_limit_headers).
/// `Retry-After` on a refusal is sent whatever this says: clients (keyward's SDK among them) back
/// off by it.
///
/// Fewer headers are fewer bytes on every answer: on loopback, where the wire is most of a
/// request's cost, sending these five and `X-Request-Id` as static values took 4% to 13% of a
/// small handler's throughput (`cargo xtask bench --load-only`, row `axum + headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimitHeaders {
    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (the tightest window), and the IETF draft's
    /// `RateLimit-Policy` and `RateLimit` (every window).
    #[default]
    All,
    /// Only `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    Legacy,
    /// Only the IETF draft's `RateLimit-Policy` and `RateLimit`.
    Ietf,
    /// None of them: a client learns of a limit when it is refused (Kong's
    /// `hide_client_headers`).
    None,
}

impl RateLimitHeaders {
    /// Whether the header at `index` of [`RATE_LIMIT_HEADERS`] is sent.
    pub fn sends_index(self, index: usize) -> bool {
        match self {
            Self::All => true,
            Self::Legacy => index < 3,
            Self::Ietf => index >= 3,
            Self::None => false,
        }
    }

    /// Whether a header named `name` (lowercase) is sent: `false` only for one of the
    /// [`RATE_LIMIT_HEADERS`] this leaves out.
    pub fn sends(self, name: &str) -> bool {
        RATE_LIMIT_HEADERS.iter().position(|n| *n == name).is_none_or(|i| self.sends_index(i))
    }
}

/// Writes the values of the [`RATE_LIMIT_HEADERS`] for a decision one after the other into
/// `out`, and returns where each ends; `None` (and nothing written) when no window applied. One
/// buffer and an integer formatter: no `String` per header.
pub fn render_rate_limit(status: &RateLimitStatus, out: &mut Vec<u8>) -> Option<[usize; 5]> {
    render_rate_limit_parts(status, out, true)
}

/// [`render_rate_limit`], leaving out the `RateLimit-Policy` value when `policy` is false (its
/// range is then empty): for a caller that keeps that value, which depends only on the windows'
/// subjects, limits and periods, rendered once per policy with [`render_rate_limit_policy`].
pub fn render_rate_limit_parts(
    status: &RateLimitStatus,
    out: &mut Vec<u8>,
    policy: bool,
) -> Option<[usize; 5]> {
    let tight = status.tightest()?;
    let mut numbers = itoa::Buffer::new();
    let mut ends = [0; 5];
    out.extend_from_slice(numbers.format(tight.window.limit).as_bytes());
    ends[0] = out.len();
    out.extend_from_slice(numbers.format(tight.remaining).as_bytes());
    ends[1] = out.len();
    out.extend_from_slice(numbers.format(tight.reset_epoch_secs()).as_bytes());
    ends[2] = out.len();
    if policy {
        render_rate_limit_policy(status, out);
    }
    ends[3] = out.len();
    render_windows(status, out, |w, numbers, out| {
        let t = w.reset_after.as_secs() + u64::from(w.reset_after.subsec_nanos() > 0);
        out.extend_from_slice(b"s\";r=");
        out.extend_from_slice(numbers.format(w.remaining).as_bytes());
        out.extend_from_slice(b";t=");
        out.extend_from_slice(numbers.format(t).as_bytes());
    });
    ends[4] = out.len();
    Some(ends)
}

/// Writes the `RateLimit-Policy` value of a decision (every window's quota and period) into
/// `out`, as [`render_rate_limit`] does.
pub fn render_rate_limit_policy(status: &RateLimitStatus, out: &mut Vec<u8>) {
    render_windows(status, out, |w, numbers, out| {
        out.extend_from_slice(b"s\";q=");
        out.extend_from_slice(numbers.format(w.window.limit).as_bytes());
        out.extend_from_slice(b";w=");
        out.extend_from_slice(numbers.format(w.window.period_secs).as_bytes());
    });
}

/// A list item per window, `"{subject}-{period}` and then what `rest` writes, comma-separated.
fn render_windows(
    status: &RateLimitStatus,
    out: &mut Vec<u8>,
    rest: impl Fn(&crate::ratelimit::WindowState, &mut itoa::Buffer, &mut Vec<u8>),
) {
    let mut numbers = itoa::Buffer::new();
    for (i, w) in status.windows.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'"');
        out.extend_from_slice(w.subject_kind.as_bytes());
        out.push(b'-');
        out.extend_from_slice(numbers.format(w.window.period_secs).as_bytes());
        rest(w, &mut numbers, out);
    }
}

/// The `X-RateLimit-*` (tightest window) and IETF draft `RateLimit-Policy`/`RateLimit` (every
/// window) headers for a decision, as [`render_rate_limit`] writes them. Empty when no window
/// applied.
pub fn rate_limit_headers(status: &RateLimitStatus) -> Vec<(&'static str, String)> {
    let mut text = Vec::with_capacity(64 * (1 + status.windows.len()));
    let Some(ends) = render_rate_limit(status, &mut text) else { return Vec::new() };
    let mut start = 0;
    RATE_LIMIT_HEADERS
        .iter()
        .zip(ends)
        .map(|(name, end)| {
            // Only ASCII was written.
            let value = String::from_utf8_lossy(&text[start..end]).into_owned();
            start = end;
            (*name, value)
        })
        .collect()
}

/// An error rendered for HTTP: status, headers and the catalog JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers (lowercase names), including `content-type` and `x-request-id`.
    pub headers: Vec<(&'static str, String)>,
    /// `{"error": {...}}`.
    pub body: Vec<u8>,
}

impl ErrorResponse {
    /// Renders `error` for a request with id `request_id`. Rate-limit headers come from `rate`,
    /// or else from the state a `RATE_LIMITED` error carries.
    pub fn new(error: &Error, request_id: &str, rate: Option<&RateLimitStatus>) -> Self {
        let status = error.code().http_status();
        if status >= 500 {
            tracing::error!(code = %error.code(), cause = error.internal_cause().unwrap_or(""), request_id, "request failed");
        }
        let mut headers =
            vec![("content-type", "application/json".to_owned()), (REQUEST_ID, request_id.to_owned())];
        if status == 401 {
            let desc = error.message().replace('"', "'");
            headers.push((
                "www-authenticate",
                format!("Bearer realm=\"keyward\", error=\"invalid_token\", error_description=\"{desc}\""),
            ));
        }
        if let Some(wait) = error.retry_after() {
            headers.push(("retry-after", wait.as_secs().max(1).to_string()));
        }
        if let Some(rate) = rate.or(error.rate_limit()) {
            headers.extend(rate_limit_headers(rate));
        }
        let body = serde_json::to_vec(&error.to_body(Some(request_id))).unwrap_or_else(|_| b"{}".to_vec());
        Self { status, headers, body }
    }

    /// The same response with only the rate-limit headers that `sent` sends.
    pub fn with_rate_limit_headers(mut self, sent: RateLimitHeaders) -> Self {
        if sent != RateLimitHeaders::All {
            self.headers.retain(|(name, _)| sent.sends(name));
        }
        self
    }
}

/// The `grpc-status` and percent-encoded `grpc-message` of a trailers-only gRPC error.
pub fn grpc_error_headers(error: &Error) -> [(&'static str, String); 2] {
    [
        ("grpc-status", error.code().grpc_code().to_string()),
        ("grpc-message", grpc_percent_encode(error.message())),
    ]
}

/// Percent-encodes a `grpc-message` as the gRPC spec asks: bytes outside 0x20..=0x7E and `%`.
pub fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a request is gRPC, from its `content-type`.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|c| c.starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::model::RateLimitWindow;
    use crate::ratelimit::WindowState;
    use std::time::Duration;

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        assert_ne!(request_id(Some(b"bad id\n")), "bad id\n");
        let (a, b) = (request_id(Some(&[b'a'; 129])), request_id(None));
        assert_eq!(a.len(), 29);
        assert_ne!(a, b, "fresh ids are unique");
        assert_eq!(a[..16], b[..16], "one prefix per process");
    }

    #[test]
    fn hex_is_padded_to_its_width() {
        for (v, width) in [(0, 12), (0xabc, 12), (u64::MAX, 16), (0xffff_ffff_ffff, 12), (7, 16)] {
            let mut out = vec![0; width];
            put_hex(&mut out, v);
            assert_eq!(out, format!("{v:0width$x}").into_bytes());
        }
    }

    #[test]
    fn request_ids_that_look_like_keys_are_replaced() {
        let key = crate::KeyFormat::default().generate(crate::KeyEnvironment::Live);
        let key = key.expose_secret();
        for incoming in
            [key.to_owned(), format!("req-{key}"), key.to_ascii_uppercase(), "vsk_test_abc".into()]
        {
            let id = request_id(Some(incoming.as_bytes()));
            assert_ne!(id, incoming);
            assert_eq!(id.len(), 29, "a fresh id");
        }
        for kept in ["trace_live_", "_live_x", "123_live_x", "a-b_test", "order_lives_7"] {
            let expect_kept = kept != "trace_live_";
            assert_eq!(request_id(Some(kept.as_bytes())) == kept, expect_kept, "{kept}");
        }
    }

    #[test]
    fn rate_headers_describe_the_tightest_window_and_all_windows() {
        let status = RateLimitStatus {
            windows: vec![
                WindowState {
                    subject_kind: "key",
                    window: RateLimitWindow::per_minute(60),
                    remaining: 10,
                    reset_after: Duration::from_millis(50_500),
                },
                WindowState {
                    subject_kind: "workspace",
                    window: RateLimitWindow::per_second(30),
                    remaining: 29,
                    reset_after: Duration::from_millis(33),
                },
            ],
            retry_after: None,
        };
        let h = rate_limit_headers(&status);
        assert_eq!(h[0], ("x-ratelimit-limit", "60".into()));
        assert_eq!(h[1], ("x-ratelimit-remaining", "10".into()));
        assert_eq!(h[3].1, r#""key-60s";q=60;w=60, "workspace-1s";q=30;w=1"#);
        assert_eq!(h[4].1, r#""key-60s";r=10;t=51, "workspace-1s";r=29;t=1"#);
    }

    #[test]
    fn errors_render_headers_by_status() {
        let e = Error::new(ErrorCode::RateLimited, "slow down").with_retry_after(Duration::from_secs(3));
        let r = ErrorResponse::new(&e, "rid", None);
        assert_eq!(r.status, 429);
        assert!(r.headers.contains(&("retry-after", "3".into())));
        assert!(!r.headers.iter().any(|(n, _)| *n == "www-authenticate"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["requestId"], "rid");
        assert_eq!(grpc_percent_encode("50% off\n"), "50%25 off%0A");
    }
}
