//! The catalog error (`{"error": {"code", "message", "details", "requestId"}}`) of any failed
//! call.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use crate::types::{ErrorBody, ErrorCode, ErrorObject};
use crate::{Error, ResponseValue};

/// The error every generated operation returns.
pub type ApiError = Error<ErrorBody>;

/// Reads keyward's catalog error out of a failed call.
///
/// Documented error statuses arrive as [`Error::ErrorResponse`] with the parsed [`ErrorBody`];
/// these accessors read it. A status the operation does not document (e.g. a `429` on an
/// operation whose spec lists none) arrives as [`Error::UnexpectedResponse`] with the body
/// unread: [`CatalogErrorExt::into_catalog`] reads it and returns the typed form.
///
/// ```no_run
/// use keyward_client::{CatalogErrorExt, ErrorCode, KeywardClient};
///
/// # async fn demo(client: KeywardClient) {
/// match client.get_key().id(uuid::Uuid::nil()).send().await {
///     Ok(key) => println!("{}", key.into_inner().key.name),
///     Err(e) if e.code() == Some(ErrorCode::NotFound) => println!("no such key"),
///     Err(e) => eprintln!("{}: {} (request {})", e.status().unwrap_or_default(),
///         e.message().unwrap_or("no catalog error"), e.request_id().unwrap_or("-")),
/// }
/// # }
/// ```
pub trait CatalogErrorExt: Sized {
    /// The catalog error object, when the server sent one.
    fn catalog(&self) -> Option<&ErrorObject>;

    /// The HTTP status, when a response arrived.
    fn http_status(&self) -> Option<StatusCode>;

    /// The response headers, when a response arrived.
    fn headers(&self) -> Option<&reqwest::header::HeaderMap>;

    /// The stable code, e.g. [`ErrorCode::RateLimited`]; its `Display` is the wire string
    /// (`RATE_LIMITED`).
    fn code(&self) -> Option<ErrorCode> {
        self.catalog().map(|e| e.code)
    }

    /// The human-readable message.
    fn message(&self) -> Option<&str> {
        self.catalog().map(|e| e.message.as_str())
    }

    /// Structured details (e.g. `missing` for `INSUFFICIENT_SCOPE`); empty when none.
    fn details(&self) -> Option<&Map<String, Value>> {
        self.catalog().map(|e| &e.details)
    }

    /// The request's id: the body's `requestId`, else the `X-Request-Id` header.
    fn request_id(&self) -> Option<&str> {
        self.catalog()
            .and_then(|e| e.request_id.as_deref())
            .or_else(|| self.headers()?.get("x-request-id")?.to_str().ok())
    }

    /// The server's `Retry-After`, for `429`s.
    fn retry_after(&self) -> Option<Duration> {
        crate::retry::retry_after(self.headers()?)
    }

    /// Turns an [`Error::UnexpectedResponse`] whose body is a catalog error into
    /// [`Error::ErrorResponse`] (one whose body is not becomes
    /// [`Error::InvalidResponsePayload`]); other errors are returned as they are.
    fn into_catalog(self) -> impl Future<Output = Self> + Send;
}

impl CatalogErrorExt for ApiError {
    fn catalog(&self) -> Option<&ErrorObject> {
        match self {
            Error::ErrorResponse(body) => Some(&body.error),
            _ => None,
        }
    }

    fn http_status(&self) -> Option<StatusCode> {
        self.status()
    }

    fn headers(&self) -> Option<&reqwest::header::HeaderMap> {
        match self {
            Error::ErrorResponse(body) => Some(body.headers()),
            Error::UnexpectedResponse(response) => Some(response.headers()),
            _ => None,
        }
    }

    async fn into_catalog(self) -> Self {
        let Error::UnexpectedResponse(response) = self else { return self };
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return Error::ResponseBodyError(e),
        };
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Error::ErrorResponse(ResponseValue::new(body, status, headers)),
            Err(e) => Error::InvalidResponsePayload(bytes, e),
        }
    }
}

/// A failed call, owned and printed on one line: `CODE: message (request <id>)`.
///
/// The generated operations return progenitor's [`Error`], whose `Display` dumps the status,
/// every header and the body's `Debug` form; convert it with `?` into this type (or
/// `map_err(CatalogError::from)`) for logs and `anyhow` chains.
///
/// ```no_run
/// use keyward_client::{CatalogError, KeywardClient};
///
/// # async fn demo(client: KeywardClient) -> Result<(), CatalogError> {
/// let key = client.get_key().id(uuid::Uuid::nil()).send().await?.into_inner();
/// # let _ = key; Ok(()) }
/// // Err(e) prints e.g.: NOT_FOUND: no such key (request 7f3c...-00002a)
/// ```
#[derive(Debug, Clone)]
pub struct CatalogError {
    status: Option<StatusCode>,
    code: Option<ErrorCode>,
    message: String,
    details: Map<String, Value>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
}

impl CatalogError {
    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }
    /// The stable code, when the server sent a catalog error.
    pub fn code(&self) -> Option<ErrorCode> {
        self.code
    }
    /// The message: the server's, or what went wrong on the way.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Structured details; empty when none.
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }
    /// The request's id, when a response arrived.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    /// The server's `Retry-After`, for `429`s.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.status) {
            (Some(code), _) => write!(f, "{code}: {}", self.message)?,
            (None, Some(status)) => write!(f, "HTTP {}: {}", status.as_u16(), self.message)?,
            (None, None) => f.write_str(&self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CatalogError {}

impl From<ApiError> for CatalogError {
    fn from(e: ApiError) -> Self {
        let message = match &e {
            Error::ErrorResponse(body) => body.error.message.clone(),
            Error::UnexpectedResponse(r) => format!("unexpected response {}", r.status()),
            Error::CommunicationError(err) | Error::ResponseBodyError(err) | Error::InvalidUpgrade(err) => {
                format!("could not reach the server: {err}")
            }
            Error::InvalidResponsePayload(_, err) => format!("the response did not parse: {err}"),
            Error::InvalidRequest(s) => format!("invalid request: {s}"),
            Error::Custom(s) => s.clone(),
        };
        Self {
            status: e.http_status(),
            code: e.code(),
            details: e.details().cloned().unwrap_or_default(),
            request_id: e.request_id().map(str::to_owned),
            retry_after: e.retry_after(),
            message,
        }
    }
}
