//! A refused request as an actix [`ResponseError`].

use std::fmt;

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use keyward_core::Error;
use keyward_core::http::{ErrorResponse, REQUEST_ID, RateLimitHeaders, request_id};

/// A catalog [`Error`] with the request's id, rendered exactly as every keyward integration
/// renders errors: status, `X-Request-Id`, `WWW-Authenticate` on a 401, `Retry-After` when the
/// caller should wait, and the `{"error": {...}}` JSON body.
///
/// It is the error of the [`VerifiedApiKey`](crate::VerifiedApiKey) extractor, and handlers can
/// return it for their own catalog errors:
///
/// ```
/// use actix_web::HttpRequest;
/// use keyward_actix::Rejection;
/// use keyward_core::Error;
///
/// async fn show(req: HttpRequest) -> Result<String, Rejection> {
///     Err(Rejection::for_request(Error::not_found("report"), &req))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    error: Error,
    request_id: String,
    rate_limit_headers: RateLimitHeaders,
}

impl Rejection {
    /// `error` for the request with id `request_id`.
    pub fn new(error: Error, request_id: impl Into<String>) -> Self {
        Self { error, request_id: request_id.into(), rate_limit_headers: RateLimitHeaders::All }
    }

    /// Sends only the rate-limit headers that `sent` sends (all by default); the middleware
    /// passes on its verifier's [`rate_limit_headers`](keyward_core::VerifierConfig).
    pub fn with_rate_limit_headers(mut self, sent: RateLimitHeaders) -> Self {
        self.rate_limit_headers = sent;
        self
    }

    /// `error` for `req`, whose id is taken from its `X-Request-Id` header (or made up).
    pub fn for_request(error: Error, req: &HttpRequest) -> Self {
        let id = request_id(req.headers().get(REQUEST_ID).map(|v| v.as_bytes()));
        Self::new(error, id)
    }

    /// The catalog error.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The request's id, as sent in `X-Request-Id` and `requestId`.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Rejection {}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Self {
        r.error
    }
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.error.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let sent = self.rate_limit_headers;
        let rendered = ErrorResponse::new(&self.error, &self.request_id, None).with_rate_limit_headers(sent);
        let mut res = HttpResponse::build(self.status_code());
        for (name, value) in rendered.headers {
            res.insert_header((name, value));
        }
        for (name, value) in rate_limited_headers(&self.error).into_iter().filter(|(n, _)| sent.sends(n)) {
            res.insert_header((name, value));
        }
        res.body(rendered.body)
    }
}

/// The `X-RateLimit-*` headers of a `RATE_LIMITED` refusal: the window that was reached, none
/// left, and when it is full again. The verifier's error carries these values in its details but
/// not its full rate-limit state, so the IETF `RateLimit-Policy`/`RateLimit` headers are only
/// sent on verified responses.
fn rate_limited_headers(error: &Error) -> Vec<(&'static str, String)> {
    if error.code() != keyward_core::ErrorCode::RateLimited {
        return Vec::new();
    }
    let details = error.details();
    let mut headers = Vec::with_capacity(3);
    if let Some(limit) = details.get("limit").and_then(|v| v.as_u64()) {
        headers.push(("x-ratelimit-limit", limit.to_string()));
        headers.push(("x-ratelimit-remaining", "0".to_owned()));
        if let Some(reset) = details.get("reset").and_then(|v| v.as_u64()) {
            headers.push(("x-ratelimit-reset", reset.to_string()));
        }
    }
    headers
}
