//! [`Keyward`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, Entry, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Request, Response, Version};
use keyward_core::http::is_grpc;
use keyward_core::{Presented, Requirements, TrustedProxies, Verifier};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::KeywardBody;
use crate::future::{Refusal, ResponseFuture};
use crate::layer::{KeywardLayer, Settings};
use crate::render::{X_REQUEST_ID, request_id_value};

/// Verifies the API key of every request before the inner service sees it.
///
/// Per request: the request id (the caller's `X-Request-Id`, or a new one), the key from the
/// bearer or API-key header (a key in the query string is refused with 400 `API_KEY_IN_URL`),
/// then [`Verifier::verify`] with the layer's requirements. A verified request reaches the inner
/// service with an `Arc<`[`VerifiedKey`](keyward_core::VerifiedKey)`>` in its extensions and its
/// key headers marked sensitive; its response gets `X-Request-Id` and the rate-limit headers. A
/// refused request gets the catalog error: JSON for HTTP, a trailers-only response with
/// `grpc-status` and `grpc-message` for gRPC.
///
/// A refusal never reads the request's body. Over HTTP/1.x, where an unread body would be taken
/// for the start of the next request, a refusal of a request with a body says
/// `Connection: close`, and the server closes the connection after it; the client opens a new
/// one instead of losing its next request. HTTP/2 streams (gRPC among them) end on their own.
///
/// Build it with [`KeywardLayer`].
#[derive(Clone, Debug)]
pub struct Keyward<S> {
    inner: S,
    /// Shared by every clone: axum clones the service for each request.
    settings: Arc<Settings>,
}

impl<S> Keyward<S> {
    /// Wraps `inner`, requiring a valid key and nothing more.
    pub fn new(inner: S, verifier: Verifier) -> Self {
        KeywardLayer::new(verifier).layer(inner)
    }

    /// A [`KeywardLayer`] for `verifier`, to set requirements on.
    pub fn layer(verifier: Verifier) -> KeywardLayer {
        KeywardLayer::new(verifier)
    }

    pub(crate) fn from_settings(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Keyward<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<KeywardBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = &self.settings;
        let (mut parts, body) = request.into_parts();
        let incoming_id = parts.headers.get(X_REQUEST_ID);
        let request_id = request_id_value(incoming_id);
        // The inner service must see the id the response will carry: a new one replaces the
        // caller's (which was missing, or refused).
        let replace_id = incoming_id != Some(&request_id);
        crate::trace::record_request_id(&request_id);
        let grpc = is_grpc(parts.headers.get(CONTENT_TYPE).map(|v| v.as_bytes()));
        let close = leaves_body_unread(&parts, grpc);
        let rate_limit_headers = settings.verifier.config().rate_limit_headers;

        let presented = Presented {
            authorization: parts.headers.get(&settings.bearer_header).map(|v| v.as_bytes()),
            api_key: parts.headers.get(&settings.api_key_header).map(|v| v.as_bytes()),
            query: parts.uri.query(),
        };
        let (bearer_present, api_key_present) =
            (presented.authorization.is_some(), presented.api_key.is_some());
        // Missing, misplaced and malformed keys are refused here, before any allocation; a
        // well-formed key is hashed once, and its plaintext kept only for a remote verifier.
        let key = presented.key(settings.verifier.config()).and_then(|key| settings.verifier.prepare(key));
        let key = match key {
            Ok(key) => key,
            Err(error) => {
                return ResponseFuture::refused(
                    error,
                    Refusal { request_id, grpc, close, rate_limit_headers },
                );
            }
        };
        let client_ip = client_ip(&parts, &settings.trusted_proxies);
        let requirements = match (&settings.resource, client_ip) {
            (None, None) => settings.requirements.clone(),
            (pick, client_ip) => Arc::new(Requirements {
                resource: pick.as_ref().and_then(|p| p.resource(&parts)),
                client_ip,
                ..Requirements::clone(&settings.requirements)
            }),
        };

        // Whatever the inner service logs or forwards, it must not show the key.
        if bearer_present {
            mark_sensitive(&mut parts.headers, &settings.bearer_header);
        }
        if api_key_present {
            mark_sensitive(&mut parts.headers, &settings.api_key_header);
        }
        if replace_id {
            parts.headers.insert(X_REQUEST_ID, request_id.clone());
        }

        let refusal = Refusal { request_id, grpc, close, rate_limit_headers };
        // A cached key is decided here, without a future; only a key that needs the store (or a
        // remote or shared limiter) waits for one.
        match settings.verifier.verify_cached(&key, &requirements) {
            Some(Ok(verified)) => {
                let verified = Arc::new(verified);
                crate::trace::record_verified(&verified);
                let mut request = Request::from_parts(parts, body);
                request.extensions_mut().insert(verified.clone());
                return ResponseFuture::calling(self.inner.call(request), verified, refusal);
            }
            Some(Err(error)) => return ResponseFuture::refused(error, refusal),
            None => {}
        }
        let verifier = settings.verifier.clone();
        let verify = Box::pin(async move { verifier.verify_prepared(&key, &requirements).await });

        // Take the service that was driven to readiness and leave a clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::verifying(verify, Request::from_parts(parts, body), inner, refusal)
    }
}

/// Whether refusing this request leaves a body unread on an HTTP/1.x connection: framed by
/// `Transfer-Encoding` or a non-zero `Content-Length`, which is how HTTP/1 frames request bodies.
/// gRPC runs on HTTP/2, where `Connection` is a forbidden header.
fn leaves_body_unread(parts: &Parts, grpc: bool) -> bool {
    let http1 = matches!(parts.version, Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11);
    let body = parts.headers.contains_key(TRANSFER_ENCODING)
        || parts
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0));
    http1 && !grpc && body
}

/// Marks every value of `name`, a header the request carries, sensitive. (For a header it does
/// not find, `entry` would make room for one.)
fn mark_sensitive(headers: &mut HeaderMap, name: &HeaderName) {
    if let Entry::Occupied(mut entry) = headers.entry(name) {
        for value in entry.iter_mut() {
            value.set_sensitive(true);
        }
    }
}

/// The client's address: the peer's (`ConnectInfo<SocketAddr>` with axum, else a `SocketAddr`
/// extension), or the one trusted proxies name.
fn client_ip(parts: &Parts, proxies: &TrustedProxies) -> Option<std::net::IpAddr> {
    #[cfg(feature = "axum")]
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    #[cfg(not(feature = "axum"))]
    let peer = None;
    let peer = peer.or_else(|| parts.extensions.get::<std::net::SocketAddr>().copied())?.ip();
    if proxies.is_empty() {
        return Some(peer.to_canonical());
    }
    let values = |name: http::HeaderName| -> Vec<&str> {
        parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
    };
    let forwarded = values(http::header::FORWARDED);
    let xff = values(http::HeaderName::from_static("x-forwarded-for"));
    Some(proxies.client_addr(peer, &forwarded, &xff))
}
