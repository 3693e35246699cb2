//! Handler errors: the catalog error rendered with the request's id.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyward_core::http::ErrorResponse;
use keyward_core::{Error, ErrorCode};

tokio::task_local! {
    /// The current request's id, as keyward's layer set it, for the whole request.
    static REQUEST_ID: String;
}

/// The current request's id, or a fresh one outside a request.
pub(crate) fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| keyward_core::http::request_id(None))
}

/// Runs the request with the id keyward's layer gave it (and puts on its response) as the one
/// error bodies and audit events carry.
pub(crate) async fn with_request_id(req: Request, next: Next) -> Response {
    let id =
        req.headers().get(keyward_core::http::REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    REQUEST_ID.scope(id.unwrap_or_else(|| keyward_core::http::request_id(None)), next.run(req)).await
}

/// A catalog error returned by a handler.
#[derive(Debug)]
pub(crate) struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl ApiError {
    /// A `VALIDATION_FAILED` error about one field.
    pub(crate) fn validation(field: &str, reason: impl Into<String>) -> Self {
        Self(Error::validation(field, reason))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render(&self.0)
    }
}

/// Renders a catalog error as a response.
pub(crate) fn render(error: &Error) -> Response {
    let rendered = ErrorResponse::new(error, &current_request_id(), None);
    let mut response =
        (StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), rendered.body)
            .into_response();
    let headers = response.headers_mut();
    for (name, value) in rendered.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// The fallback for unknown paths.
pub(crate) async fn not_found() -> ApiError {
    ApiError(Error::new(ErrorCode::NotFound, "no such endpoint"))
}

/// The fallback for known paths with an unsupported method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError(Error::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint"))
}
