//! The catalog error (`{"error": {"code", "message", "details", "requestId"}}`) of any failed
//! call.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use crate::ResponseValue;
use crate::types::{ErrorBody, ErrorCode, ErrorObject};

/// The error every generated operation returns.
pub type ApiError = Error<ErrorBody>;

/// A failed call. The variants are progenitor's (`cargo xtask codegen` points the generated
/// code here instead of at `progenitor_client::Error`), so that `Display` is one line: `CODE:
/// message (request <id>)` for a catalog error, instead of the status, every header and the
/// body's `Debug` form.
pub enum Error<E = ()> {
    /// The request did not conform to the API's requirements (caught before sending).
    InvalidRequest(String),
    /// The server could not be reached, or the connection failed.
    CommunicationError(reqwest::Error),
    /// An unexpected response when upgrading the connection.
    InvalidUpgrade(reqwest::Error),
    /// A documented error response, with its parsed body.
    ErrorResponse(ResponseValue<E>),
    /// The body of an expected response could not be read.
    ResponseBodyError(reqwest::Error),
    /// An expected response whose body did not parse.
    InvalidResponsePayload(bytes::Bytes, serde_json::Error),
    /// A response the API description does not list; [`CatalogErrorExt::into_catalog`] reads
    /// a catalog error out of it.
    UnexpectedResponse(reqwest::Response),
    /// An error from a hook.
    Custom(String),
}

impl<E> Error<E> {
    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::InvalidRequest(_) | Error::Custom(_) | Error::InvalidResponsePayload(..) => None,
            Error::CommunicationError(e) | Error::InvalidUpgrade(e) | Error::ResponseBodyError(e) => {
                e.status()
            }
            Error::ErrorResponse(rv) => Some(rv.status()),
            Error::UnexpectedResponse(r) => Some(r.status()),
        }
    }
}

impl<E> From<progenitor_client::Error<E>> for Error<E> {
    fn from(e: progenitor_client::Error<E>) -> Self {
        use progenitor_client::Error as P;
        match e {
            P::InvalidRequest(s) => Error::InvalidRequest(s),
            P::CommunicationError(e) => Error::CommunicationError(e),
            P::InvalidUpgrade(e) => Error::InvalidUpgrade(e),
            P::ErrorResponse(rv) => Error::ErrorResponse(rv),
            P::ResponseBodyError(e) => Error::ResponseBodyError(e),
            P::InvalidResponsePayload(b, e) => Error::InvalidResponsePayload(b, e),
            P::UnexpectedResponse(r) => Error::UnexpectedResponse(r),
            P::Custom(s) => Error::Custom(s),
        }
    }
}

impl<E> From<reqwest::Error> for Error<E> {
    fn from(e: reqwest::Error) -> Self {
        Error::CommunicationError(e)
    }
}

impl<E> From<reqwest::header::InvalidHeaderValue> for Error<E> {
    fn from(e: reqwest::header::InvalidHeaderValue) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}

impl<E> From<std::convert::Infallible> for Error<E> {
    fn from(x: std::convert::Infallible) -> Self {
        match x {}
    }
}

impl std::fmt::Display for Error<ErrorBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::ErrorResponse(body) => write!(f, "{}: {}", body.error.code, body.error.message)?,
            Error::UnexpectedResponse(r) => write!(f, "unexpected response: HTTP {}", r.status().as_u16())?,
            Error::CommunicationError(e) | Error::ResponseBodyError(e) | Error::InvalidUpgrade(e) => {
                write!(f, "could not reach the server: {e}")?
            }
            Error::InvalidResponsePayload(_, e) => write!(f, "the response did not parse: {e}")?,
            Error::InvalidRequest(s) => write!(f, "invalid request: {s}")?,
            Error::Custom(s) => f.write_str(s)?,
        }
        if let Some(id) = self.request_id() {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

/// Like `Display`, with the status; never the headers.
impl<E: std::fmt::Debug> std::fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::ErrorResponse(rv) => f
                .debug_struct("ErrorResponse")
                .field("status", &rv.status())
                .field("body", rv.as_ref())
                .finish(),
            Error::UnexpectedResponse(r) => f.debug_tuple("UnexpectedResponse").field(&r.status()).finish(),
            Error::InvalidRequest(s) => f.debug_tuple("InvalidRequest").field(s).finish(),
            Error::CommunicationError(e) => f.debug_tuple("CommunicationError").field(e).finish(),
            Error::InvalidUpgrade(e) => f.debug_tuple("InvalidUpgrade").field(e).finish(),
            Error::ResponseBodyError(e) => f.debug_tuple("ResponseBodyError").field(e).finish(),
            Error::InvalidResponsePayload(_, e) => f.debug_tuple("InvalidResponsePayload").field(e).finish(),
            Error::Custom(s) => f.debug_tuple("Custom").field(s).finish(),
        }
    }
}

impl std::error::Error for Error<ErrorBody> {}

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
