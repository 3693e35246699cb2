//! [`KeywardBody`]: the response body of a [`Keyward`](crate::Keyward) service.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use keyward_core::VerifiedKey;
use pin_project_lite::pin_project;

pin_project! {
    /// The inner service's body for verified requests, or the error body of a refused one.
    ///
    /// The body of a verified request holds the [`VerifiedKey`], and with it the key's
    /// concurrency slot, until the body has been read to its end or dropped: a request stops
    /// counting against the key's concurrency limit when its response is done, not when the
    /// handler returns.
    #[derive(Debug)]
    pub struct KeywardBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            verified: Option<Arc<VerifiedKey>>,
        },
        Full {
            data: Option<Bytes>,
        },
    }
}

impl<B> KeywardBody<B> {
    /// The inner service's body, keeping `verified` alive until the body is done.
    pub(crate) fn inner(body: B, verified: Option<Arc<VerifiedKey>>) -> Self {
        Self { kind: Kind::Inner { body, verified } }
    }

    /// A complete body (the JSON of an error); empty bytes make an empty body.
    pub fn full(data: Bytes) -> Self {
        Self { kind: Kind::Full { data: (!data.is_empty()).then_some(data) } }
    }

    /// An empty body (gRPC errors carry everything in their headers).
    pub fn empty() -> Self {
        Self { kind: Kind::Full { data: None } }
    }
}

impl<B> Body for KeywardBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { mut body, verified } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                // Release the key (and its concurrency slot) with the last frame, before the
                // caller can see the end of the response and send its next request.
                if verified.is_some() && !matches!(frame, Some(Ok(_)) if !body.is_end_stream()) {
                    *verified = None;
                }
                Poll::Ready(frame)
            }
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_empty_bodies_report_their_size() {
        let body = KeywardBody::<http_body_util::Empty<Bytes>>::full(Bytes::from_static(b"{}"));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        let empty = KeywardBody::<http_body_util::Empty<Bytes>>::empty();
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
