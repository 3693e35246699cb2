//! [`KeywardMiddleware`] (the [`Transform`]) and [`KeywardService`] (the service it makes).

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use actix_web::http::{ConnectionType, Version};
use actix_web::{HttpMessage, ResponseError};
use keyward_core::RateLimitStatus;
use keyward_core::http::{RATE_LIMIT_HEADERS, REQUEST_ID, RateLimitHeaders, render_rate_limit, request_id};
use keyward_core::{IpNet, Presented, Requirements, Scope, TrustedProxies, VerifiedKey, Verifier};

use crate::body::VerifiedBody;
use crate::rejection::Rejection;

type ResourceFn = dyn Fn(&ServiceRequest) -> Option<String> + Send + Sync;

/// Verifies the API key of every request it wraps. Clone it into each `App` (it is cheap to
/// clone and `Send`, as `HttpServer`'s factory needs).
///
/// A refusal never reads the request's body; over HTTP/1.x a refusal of a request with a body
/// closes the connection and says `Connection: close`, so the client's next request goes on a new
/// connection instead of being lost.
///
/// Built with [`KeywardMiddleware::new`] and the builder methods; see the
/// [crate docs](crate) for a complete server.
#[derive(Clone)]
pub struct KeywardMiddleware {
    verifier: Verifier,
    requirements: Arc<Requirements>,
    resource: Option<Arc<ResourceFn>>,
    trusted_proxies: Arc<TrustedProxies>,
}

impl fmt::Debug for KeywardMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardMiddleware")
            .field("verifier", &self.verifier)
            .field("requirements", &self.requirements)
            .field("resource", &self.resource.as_ref().map(|_| "Fn(&ServiceRequest) -> Option<String>"))
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl KeywardMiddleware {
    /// Verifies keys with `verifier`, requiring no scope and costing nothing.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            requirements: Arc::new(Requirements::default()),
            resource: None,
            trusted_proxies: Arc::default(),
        }
    }

    /// Believes `Forwarded` / `X-Forwarded-For` from these proxies (none by default: the
    /// headers are ignored), for the client address checked against IP allowlists (403
    /// `IP_NOT_ALLOWED`); otherwise the client is the connection's peer. See [`TrustedProxies`].
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = Arc::new(TrustedProxies::new(proxies));
        self
    }

    /// Also requires `scope` (every required scope must be allowed; a refusal is 403
    /// `INSUFFICIENT_SCOPE` naming the missing ones in `details.missing`).
    pub fn require_scope(mut self, scope: Scope) -> Self {
        Arc::make_mut(&mut self.requirements).scopes.push(scope);
        self
    }

    /// Also requires each of `scopes`.
    pub fn require_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Arc::make_mut(&mut self.requirements).scopes.extend(scopes);
        self
    }

    /// Each request costs `credits` (only keys that use credits pay; 402 `INSUFFICIENT_CREDITS`
    /// when too few are left).
    pub fn cost(mut self, credits: u32) -> Self {
        Arc::make_mut(&mut self.requirements).cost = credits;
        self
    }

    /// Names the resource a request touches, checked against the key's resource restrictions
    /// (403 `RESOURCE_NOT_ALLOWED`); `None` checks nothing. Typically a path parameter or a
    /// header.
    pub fn resource<F>(mut self, extract: F) -> Self
    where
        F: Fn(&ServiceRequest) -> Option<String> + Send + Sync + 'static,
    {
        self.resource = Some(Arc::new(extract));
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// What every request must satisfy (the resource apart, which is read per request).
    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }
}

impl<S, B> Transform<S, ServiceRequest> for KeywardMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<VerifiedBody<B>>>;
    type Error = actix_web::Error;
    type Transform = KeywardService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(KeywardService { inner: Rc::new(service), middleware: Rc::new(self.clone()) }))
    }
}

/// The service [`KeywardMiddleware`] wraps around a route: verifies, then calls the route.
pub struct KeywardService<S> {
    inner: Rc<S>,
    middleware: Rc<KeywardMiddleware>,
}

impl<S> fmt::Debug for KeywardService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardService").field("middleware", &self.middleware).finish_non_exhaustive()
    }
}

impl<S> KeywardService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

// The verifier's future cannot be named, so the response future is boxed; actix services are
// single-threaded, so it is a local (non-`Send`) box.
type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

impl<S, B> Service<ServiceRequest> for KeywardService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<VerifiedBody<B>>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let inner = Rc::clone(&self.inner);
        let middleware = Rc::clone(&self.middleware);
        Box::pin(async move {
            let rid = request_id(req.headers().get(REQUEST_ID).map(HeaderValue::as_bytes));
            let verified = match verify(&middleware, &req).await {
                Ok(v) => Arc::new(v),
                Err(error) => {
                    tracing::debug!(code = %error.code(), request_id = %rid, "request refused");
                    let sent = middleware.verifier.config().rate_limit_headers;
                    let mut response =
                        Rejection::new(error, rid).with_rate_limit_headers(sent).error_response();
                    if leaves_body_unread(&req) {
                        response.head_mut().set_connection_type(ConnectionType::Close);
                    }
                    return Ok(req.into_response(response).map_into_right_body());
                }
            };
            req.extensions_mut().insert(Arc::clone(&verified));

            let mut res = inner.call(req).await?;
            let headers = res.headers_mut();
            insert_rate_limit_headers(
                verified.rate_limit(),
                headers,
                middleware.verifier.config().rate_limit_headers,
            );
            // A route that set its own request id keeps it.
            let request_id_header = HeaderName::from_static(REQUEST_ID);
            if !headers.contains_key(&request_id_header)
                && let Ok(value) = HeaderValue::try_from(rid)
            {
                headers.insert(request_id_header, value);
            }
            Ok(res.map_body(|_, body| VerifiedBody::new(body, verified)).map_into_left_body())
        })
    }
}

/// Adds the `X-RateLimit-*` and `RateLimit-Policy`/`RateLimit` headers of a decision: every
/// value a slice of one buffer, the names static.
fn insert_rate_limit_headers(
    status: &RateLimitStatus,
    headers: &mut actix_web::http::header::HeaderMap,
    sent: RateLimitHeaders,
) {
    if sent == RateLimitHeaders::None {
        return;
    }
    let mut text = Vec::with_capacity(48 + 64 * status.windows.len());
    let Some(ends) = render_rate_limit(status, &mut text) else { return };
    let text = bytes::Bytes::from(text);
    let mut start = 0;
    for (i, (name, end)) in RATE_LIMIT_HEADERS.into_iter().zip(ends).enumerate() {
        if sent.sends_index(i)
            && let Ok(value) = HeaderValue::from_maybe_shared(text.slice(start..end))
        {
            headers.insert(HeaderName::from_static(name), value);
        }
        start = end;
    }
}

/// Whether refusing `req` leaves a body unread on an HTTP/1.x connection, where it would be taken
/// for the next request: the refusal then closes the connection and says so
/// (`Connection: close`). Recent actix-http releases do this by themselves; doing it here keeps
/// it true whatever actix-http version an application resolves.
fn leaves_body_unread(req: &ServiceRequest) -> bool {
    let http1 = matches!(req.version(), Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11);
    let headers = req.headers();
    let body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0));
    http1 && body
}

async fn verify(
    middleware: &KeywardMiddleware,
    req: &ServiceRequest,
) -> Result<VerifiedKey, keyward_core::Error> {
    let config = middleware.verifier.config();
    let headers = req.headers();
    let query = req.query_string();
    let presented = Presented {
        authorization: headers.get(config.bearer_header.as_str()).map(HeaderValue::as_bytes),
        api_key: headers.get(config.api_key_header.as_str()).map(HeaderValue::as_bytes),
        query: (!query.is_empty()).then_some(query),
    };
    let key = presented.key(config)?;
    let client_ip = req.peer_addr().map(|peer| {
        let values =
            |name: &str| -> Vec<&str> { headers.get_all(name).filter_map(|v| v.to_str().ok()).collect() };
        let proxies = &middleware.trusted_proxies;
        if proxies.is_empty() {
            peer.ip().to_canonical()
        } else {
            proxies.client_addr(peer.ip(), &values("forwarded"), &values("x-forwarded-for"))
        }
    });
    match (&middleware.resource, client_ip) {
        (None, None) => middleware.verifier.verify(key, &middleware.requirements).await,
        (resource, client_ip) => {
            let requirements = Requirements {
                resource: resource.as_ref().and_then(|extract| extract(req)),
                client_ip,
                ..Requirements::clone(&middleware.requirements)
            };
            middleware.verifier.verify(key, &requirements).await
        }
    }
}
