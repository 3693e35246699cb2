//! The error catalog: one enum of stable codes, one mapping to HTTP and gRPC, one JSON body.
//!
//! ```
//! use keyward_core::{Error, ErrorCode};
//!
//! let err = Error::new(ErrorCode::KeyNotRevoked, "revoke the key before deleting it");
//! assert_eq!(err.code().as_str(), "KEY_NOT_REVOKED");
//! assert_eq!(err.code().http_status(), 409);
//! assert_eq!(err.code().grpc_code(), 9);
//! let body = serde_json::to_value(err.to_body(Some("req-1"))).unwrap();
//! assert_eq!(body["error"]["code"], "KEY_NOT_REVOKED");
//! assert_eq!(body["error"]["requestId"], "req-1");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ratelimit::RateLimitStatus;

macro_rules! catalog {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $http:literal, $grpc:literal) ),+ $(,)?) => {
        /// Every error keyward reports. The code strings are part of the API contract.
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in catalog order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The stable code string, e.g. `KEY_REVOKED`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The HTTP status code.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $http,)+ }
            }

            /// The gRPC status code (`tonic::Code` as an integer).
            pub const fn grpc_code(self) -> i32 {
                match self { $(ErrorCode::$variant => $grpc,)+ }
            }

            /// Parses a code string.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some(ErrorCode::$variant),)+ _ => None }
            }
        }
    };
}

catalog! {
    /// No key in the request.
    MissingApiKey = ("MISSING_API_KEY", 401, 16),
    /// The key is malformed, has a bad checksum, is unknown or was deleted.
    InvalidApiKey = ("INVALID_API_KEY", 401, 16),
    /// The key was sent in the URL, where logs and proxies keep it.
    ApiKeyInUrl = ("API_KEY_IN_URL", 400, 3),
    /// The key is deactivated.
    KeyInactive = ("KEY_INACTIVE", 401, 16),
    /// The key was revoked or replaced by a rotation.
    KeyRevoked = ("KEY_REVOKED", 401, 16),
    /// The key's expiry time has passed.
    KeyExpired = ("KEY_EXPIRED", 401, 16),
    /// A signed request (a GitHub secret-scanning leak report) is unsigned, signed by an
    /// unknown key, or its signature does not match its body.
    InvalidSignature = ("INVALID_SIGNATURE", 401, 16),
    /// The key lacks a scope the operation needs; `details.missing` names it.
    InsufficientScope = ("INSUFFICIENT_SCOPE", 403, 7),
    /// The key is restricted to other resources.
    ResourceNotAllowed = ("RESOURCE_NOT_ALLOWED", 403, 7),
    /// The request comes from an address outside the key's (or its workspace's) IP allowlist;
    /// `details.address` names it (absent when the address is unknown).
    IpNotAllowed = ("IP_NOT_ALLOWED", 403, 7),
    /// The workspace's plan does not include API access.
    FeatureNotInPlan = ("FEATURE_NOT_IN_PLAN", 403, 7),
    /// The workspace's plan allows no more keys.
    KeyLimitReached = ("KEY_LIMIT_REACHED", 403, 7),
    /// The workspace has as many webhook endpoints as allowed (20).
    WebhookLimitReached = ("WEBHOOK_LIMIT_REACHED", 403, 7),
    /// The key has no credits left for this request.
    InsufficientCredits = ("INSUFFICIENT_CREDITS", 402, 8),
    /// A rate limit was reached; see `Retry-After`.
    RateLimited = ("RATE_LIMITED", 429, 8),
    /// The key has too many requests in flight.
    ConcurrencyLimited = ("CONCURRENCY_LIMITED", 429, 8),
    /// No such resource (or not visible to this key).
    NotFound = ("NOT_FOUND", 404, 5),
    /// Only a revoked key may be deleted.
    KeyNotRevoked = ("KEY_NOT_REVOKED", 409, 9),
    /// The operation conflicts with the resource's current state.
    Conflict = ("CONFLICT", 409, 9),
    /// The action would leave the workspace without an active key able to manage keys
    /// (`keys:write` or `*`).
    LastAdminKey = ("LAST_ADMIN_KEY", 409, 9),
    /// The change would remove the calling key's own API access (e.g. its plan's API access).
    SelfLockout = ("SELF_LOCKOUT", 409, 9),
    /// The request sent two different keys (`X-API-Key` and `Authorization: Bearer`).
    ConflictingApiKeys = ("CONFLICTING_API_KEYS", 400, 3),
    /// The request is malformed; `details` name the field.
    ValidationFailed = ("VALIDATION_FAILED", 400, 3),
    /// The request body is larger than allowed.
    PayloadTooLarge = ("PAYLOAD_TOO_LARGE", 413, 3),
    /// The request was not received in time (its body stalled); the connection is closed.
    RequestTimeout = ("REQUEST_TIMEOUT", 408, 4),
    /// The HTTP method is not supported on this path.
    MethodNotAllowed = ("METHOD_NOT_ALLOWED", 405, 12),
    /// The key store cannot be reached.
    StoreUnavailable = ("STORE_UNAVAILABLE", 503, 14),
    /// An unexpected failure; the details are in the server's log, not in the response.
    Internal = ("INTERNAL", 500, 13),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from the catalog: a code, a message safe to show the caller and optional details.
///
/// The message and details never hold a key's plaintext. Internal causes of a 5xx are kept in a
/// separate field that is logged, not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    code: ErrorCode,
    message: Cow<'static, str>,
    details: Map<String, Value>,
    retry_after: Option<Duration>,
    internal: Option<String>,
    rate_limit: Option<Box<RateLimitStatus>>,
}

impl Error {
    /// An error with a code and a message for the caller.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
            internal: None,
            rate_limit: None,
        }
    }

    /// A `VALIDATION_FAILED` error about one field.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(ErrorCode::ValidationFailed, format!("invalid `{field}`: {reason}"))
            .with_detail("field", field)
            .with_detail("reason", reason)
    }

    /// A `NOT_FOUND` error for a kind of resource.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// An `INTERNAL` error; `cause` is logged, never sent.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut e = Self::new(ErrorCode::Internal, "internal error");
        e.internal = Some(cause.to_string());
        e
    }

    /// Adds a detail.
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Sets how long the caller should wait before retrying (429, 503).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Attaches the rate-limit state of a rejected request, rendered as headers on the 429.
    pub fn with_rate_limit(mut self, status: RateLimitStatus) -> Self {
        self.rate_limit = Some(Box::new(status));
        self
    }

    /// The rate-limit state, for `RATE_LIMITED` errors.
    pub fn rate_limit(&self) -> Option<&RateLimitStatus> {
        self.rate_limit.as_deref()
    }

    /// Records an internal cause (for logs only).
    pub fn with_internal(mut self, cause: impl fmt::Display) -> Self {
        self.internal = Some(cause.to_string());
        self
    }

    /// The catalog code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured details.
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }

    /// How long to wait before retrying, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The internal cause, for logs.
    pub fn internal_cause(&self) -> Option<&str> {
        self.internal.as_deref()
    }

    /// The JSON body sent to the caller.
    pub fn to_body(&self, request_id: Option<&str>) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code,
                message: self.message.to_string(),
                details: self.details.clone(),
                request_id: request_id.map(str::to_owned),
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// `{"error": {...}}`, the one error shape of every keyward response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorObject {
    /// Stable code, e.g. `RATE_LIMITED`.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Structured details (empty object when none).
    #[serde(default)]
    pub details: Map<String, Value>,
    /// The request's id, also sent as `X-Request-Id`.
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_maps_consistently() {
        for (index, &code) in ErrorCode::ALL.iter().enumerate() {
            // `metrics::record_verification` finds a code's metric key by its discriminant.
            assert_eq!(code as usize, index, "{code}");
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            let expected_grpc = match code.http_status() {
                401 => 16,
                403 => 7,
                402 | 429 => 8,
                400 | 413 => 3,
                404 => 5,
                405 => 12,
                408 => 4,
                409 => 9,
                503 => 14,
                500 => 13,
                other => panic!("unmapped status {other}"),
            };
            assert_eq!(code.grpc_code(), expected_grpc, "{code}");
        }
    }

    #[test]
    fn internal_cause_is_not_in_the_body() {
        let e = Error::internal("db password is hunter2");
        let body = serde_json::to_string(&e.to_body(None)).unwrap();
        assert!(!body.contains("hunter2"));
        assert_eq!(e.internal_cause(), Some("db password is hunter2"));
    }
}
