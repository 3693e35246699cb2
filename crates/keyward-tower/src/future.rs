//! [`ResponseFuture`]: verification, then the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::CONNECTION;
use http::{HeaderValue, Request, Response};
use keyward_core::{Error, VerifiedKey};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::KeywardBody;
use crate::render::{X_REQUEST_ID, insert_rate_limit_headers, render};
use keyward_core::http::{RATE_LIMIT_HEADERS, RateLimitHeaders};

/// The verifier's future. Boxed: `Verifier::verify` is an `async fn`, whose type has no name.
pub(crate) type VerifyFuture = Pin<Box<dyn Future<Output = Result<VerifiedKey, Error>> + Send>>;

pin_project! {
    /// Response future of [`Keyward`](crate::Keyward).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
        refusal: Refusal,
    }
}

/// How a refusal of this request is rendered.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The request's id.
    pub(crate) request_id: HeaderValue,
    /// A gRPC request: trailers-only errors.
    pub(crate) grpc: bool,
    /// The request's body would be left unread on an HTTP/1.x connection: say
    /// `Connection: close`.
    pub(crate) close: bool,
    /// Which rate-limit headers its answer carries.
    pub(crate) rate_limit_headers: RateLimitHeaders,
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // Waiting for the verifier; holds the request and the ready inner service.
        Verifying {
            verify: VerifyFuture,
            request: Option<Request<ReqBody>>,
            inner: S,
        },
        // The key passed; waiting for the inner service.
        Calling {
            #[pin]
            future: S::Future,
            verified: Option<Arc<VerifiedKey>>,
        },
        // Refused before any I/O (no key, key in the URL, a cached refusal).
        Refused {
            error: Option<Error>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn verifying(
        verify: VerifyFuture,
        request: Request<ReqBody>,
        inner: S,
        refusal: Refusal,
    ) -> Self {
        Self { state: State::Verifying { verify, request: Some(request), inner }, refusal }
    }

    /// The key passed without I/O and the inner service was called: its response is next.
    pub(crate) fn calling(future: S::Future, verified: Arc<VerifiedKey>, refusal: Refusal) -> Self {
        Self { state: State::Calling { future, verified: Some(verified) }, refusal }
    }

    pub(crate) fn refused(error: Error, refusal: Refusal) -> Self {
        Self { state: State::Refused { error: Some(error) }, refusal }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Verifying { .. } => "Verifying",
            State::Calling { .. } => "Calling",
            State::Refused { .. } => "Refused",
        };
        f.debug_struct("ResponseFuture").field("state", &state).field("refusal", &self.refusal).finish()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<KeywardBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Verifying { verify, request, inner } => {
                    let verified = match ready!(verify.as_mut().poll(cx)) {
                        Ok(verified) => Arc::new(verified),
                        Err(error) => return Poll::Ready(Ok(refusal(&error, this.refusal))),
                    };
                    crate::trace::record_verified(&verified);
                    let mut request = request.take().expect("ResponseFuture polled after completion");
                    request.extensions_mut().insert(verified.clone());
                    let future = inner.call(request);
                    this.state.set(State::Calling { future, verified: Some(verified) });
                }
                StateProj::Calling { future, verified } => {
                    let response = ready!(future.poll(cx))?;
                    let verified = verified.take();
                    let (mut parts, body) = response.into_parts();
                    // Room for the rate-limit headers and the request id at once, rather than
                    // growing the map as they arrive.
                    parts.headers.reserve(RATE_LIMIT_HEADERS.len() + 1);
                    if let Some(v) = &verified {
                        let sent = this.refusal.rate_limit_headers;
                        insert_rate_limit_headers(v.rate_limit(), &mut parts.headers, sent);
                    }
                    parts.headers.entry(X_REQUEST_ID).or_insert_with(|| this.refusal.request_id.clone());
                    return Poll::Ready(Ok(Response::from_parts(parts, KeywardBody::inner(body, verified))));
                }
                StateProj::Refused { error } => {
                    let error = error.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(refusal(&error, this.refusal)));
                }
            }
        }
    }
}

fn refusal<B>(error: &Error, refusal: &Refusal) -> Response<KeywardBody<B>> {
    let rendered = render(error, &refusal.request_id, refusal.grpc, refusal.rate_limit_headers);
    let body = rendered.body.map_or_else(KeywardBody::empty, KeywardBody::full);
    let mut response = Response::new(body);
    *response.status_mut() = rendered.status;
    *response.headers_mut() = rendered.headers;
    if refusal.close {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
