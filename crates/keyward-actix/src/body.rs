//! The response body of a verified request, which keeps the key's concurrency slot.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use keyward_core::VerifiedKey;
use pin_project_lite::pin_project;

pin_project! {
    /// Wraps the route's response body and holds the request's [`VerifiedKey`] until the body
    /// has been sent (its last chunk produced, or an error) or dropped.
    ///
    /// Why the body and not the response extensions: actix drops the response head (and the
    /// request with its extensions) once the head is written, before a streamed body is, so a
    /// concurrency limit would otherwise free its slot while the response is still being
    /// produced. The body is the last part of a response to go.
    pub struct VerifiedBody<B> {
        #[pin]
        body: B,
        key: Option<Arc<VerifiedKey>>,
    }
}

impl<B> VerifiedBody<B> {
    pub(crate) fn new(body: B, key: Arc<VerifiedKey>) -> Self {
        Self { body, key: Some(key) }
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.body
    }
}

impl<B> fmt::Debug for VerifiedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedBody").field("holds_key", &self.key.is_some()).finish_non_exhaustive()
    }
}

impl<B: MessageBody> MessageBody for VerifiedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let next = ready!(this.body.poll_next(cx));
        if !matches!(next, Some(Ok(_))) {
            // The body is done (or failed): the request no longer counts as in flight.
            this.key.take();
        }
        Poll::Ready(next)
    }
    // `try_into_bytes` keeps its default (`Err(self)`), so the dispatcher streams the body
    // through `poll_next` and the key is held until the end.
}
