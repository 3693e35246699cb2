//! [`VerifiedApiKey`]: the axum extractor for the key the layer verified (feature `axum`).

use std::convert::Infallible;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use keyward_core::http::{RateLimitHeaders, is_grpc};
use keyward_core::{Error, ErrorCode, VerifiedKey};

use crate::render::{X_REQUEST_ID, render, request_id_value};

/// The key [`KeywardLayer`](crate::KeywardLayer) verified for this request.
///
/// Refuses with 401 `MISSING_API_KEY` when the request did not pass through the layer; use
/// `Option<VerifiedApiKey>` on routes that serve anonymous callers too.
///
/// ```
/// use keyward_tower::VerifiedApiKey;
///
/// async fn whoami(key: VerifiedApiKey) -> String {
///     format!("key {} of workspace {}", key.key_id(), key.workspace_id())
/// }
///
/// async fn greet(key: Option<VerifiedApiKey>) -> &'static str {
///     if key.is_some() { "hello, customer" } else { "hello, stranger" }
/// }
/// # let _: axum::Router = axum::Router::new()
/// #     .route("/whoami", axum::routing::get(whoami))
/// #     .route("/greet", axum::routing::get(greet));
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedApiKey(pub Arc<VerifiedKey>);

impl Deref for VerifiedApiKey {
    type Target = VerifiedKey;

    fn deref(&self) -> &VerifiedKey {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedApiKey {
    type Rejection = MissingVerifiedKey;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Arc<VerifiedKey>>() {
            Some(key) => Ok(Self(key.clone())),
            None => Err(MissingVerifiedKey {
                request_id: request_id_value(parts.headers.get(X_REQUEST_ID)),
                grpc: is_grpc(parts.headers.get(CONTENT_TYPE).map(|v| v.as_bytes())),
            }),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedApiKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Arc<VerifiedKey>>().map(|key| Self(key.clone())))
    }
}

/// Rejection of [`VerifiedApiKey`]: the request has no verified key. Renders as the catalog's
/// 401 `MISSING_API_KEY`.
#[derive(Debug)]
pub struct MissingVerifiedKey {
    request_id: HeaderValue,
    grpc: bool,
}

impl MissingVerifiedKey {
    /// The catalog error this rejection renders.
    pub fn error(&self) -> Error {
        Error::new(ErrorCode::MissingApiKey, "no verified API key for this request")
    }
}

impl IntoResponse for MissingVerifiedKey {
    fn into_response(self) -> Response {
        // The error carries no rate-limit state: there are no rate-limit headers to choose from.
        let rendered = render(&self.error(), &self.request_id, self.grpc, RateLimitHeaders::All);
        let body = rendered.body.map(axum::body::Body::from).unwrap_or_default();
        (rendered.status, rendered.headers, body).into_response()
    }
}
