//! Serving HTTP/1.1 connections with bounds on everything a client controls: how long it takes
//! to send a request head, to send a body, to read a response, how long it may keep an idle
//! connection, and how many connections there are.
//!
//! hyper serves each connection. Its own `header_read_timeout` is not used: hyper 1.x starts it
//! as soon as a kept-alive connection goes idle, so it would also close every idle connection
//! after the header timeout. Here each connection has a clock instead, whose phase its socket
//! and its requests move on:
//!
//! | phase | from | until | bounded by |
//! |---|---|---|---|
//! | head | accept, or the first byte after an idle spell | the request reaches the app | `header_read_timeout` |
//! | handling | the request reaches the app | the app answers | the body's own deadline, the store's timeouts |
//! | responding | the app answers, or the body's last part was ready | the response body is written | `keep_alive_timeout` |
//! | idle | the response is written | the next byte | `keep_alive_timeout` |
//!
//! A connection whose phase outlasts its bound is dropped. A request body must arrive whole
//! within `body_read_timeout` of the app starting to read it; when it does not, the request is
//! answered `408 REQUEST_TIMEOUT` and the connection closed. A response to a request whose body
//! was left unread (a refusal, a body too large) says `Connection: close`, since the rest of
//! that body would otherwise be read as the next request.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::header::CONNECTION;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use keyward_core::http::{ErrorResponse, REQUEST_ID};
use keyward_core::{Error, ErrorCode};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tower_service::Service as _;

/// How long a client may take over each part of an exchange, and how many connections there may
/// be at once. Every bound must be positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a whole request head, counted from the connection's
    /// accept or from the first byte after an idle spell.
    pub header_read_timeout: Duration,
    /// Longest a request body may take to arrive, counted from when the app starts reading it;
    /// past it the request is answered `408 REQUEST_TIMEOUT` and the connection closed.
    pub body_read_timeout: Duration,
    /// Longest a kept-alive connection may wait for its next request, and longest a client may
    /// take to read a response.
    pub keep_alive_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen backlog until one
    /// closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then stops accepting,
/// lets in-flight requests finish, closes idle connections and returns. Handlers see the
/// client's address as `ConnectInfo<SocketAddr>`.
///
/// ```no_run
/// # async fn demo(app: axum::Router) -> std::io::Result<()> {
/// use keyward_server::serve::{ConnectionLimits, serve_http};
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// serve_http(listener, app, ConnectionLimits::default(), keyward_server::serve::shutdown_signal()).await
/// # }
/// ```
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    if limits.header_read_timeout.is_zero()
        || limits.body_read_timeout.is_zero()
        || limits.keep_alive_timeout.is_zero()
        || limits.max_connections == 0
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("every limit must be positive: {limits:?}"),
        ));
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The clock below times request heads (see the module docs).
    http.header_read_timeout(None);
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: past the cap, connections wait in the backlog, unaccepted.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(Clock::new(limits));
        let service = ConnectionService {
            app: app.clone(),
            remote,
            clock: clock.clone(),
            body_read_timeout: limits.body_read_timeout,
        };
        let io = TokioIo::new(ClockedIo { io: stream, clock: clock.clone() });
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                }
                phase = clock.expired() => {
                    tracing::debug!(%remote, ?phase, "connection timed out; closed");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Accept errors about one connection (it was reset before it was accepted) are that
/// connection's; others (out of file descriptors) pass with time, so wait a little rather
/// than spin.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    sleep(Duration::from_secs(1)).await;
}

/// Where a connection is in its exchange (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Handling,
    Responding,
    Idle,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    phase: Phase,
    since: Instant,
    /// Requests handed to the app whose responses are not done.
    in_flight: usize,
}

/// One connection's phase, moved by its socket and its requests, watched by its task.
#[derive(Debug)]
struct Clock {
    state: watch::Sender<ClockState>,
    limits: ConnectionLimits,
}

impl Clock {
    fn new(limits: ConnectionLimits) -> Self {
        let state = ClockState { phase: Phase::Head, since: Instant::now(), in_flight: 0 };
        Self { state: watch::Sender::new(state), limits }
    }

    /// Bytes arrived: after an idle spell, they start a request head.
    fn read(&self) {
        self.state.send_if_modified(|s| {
            let starts = s.phase == Phase::Idle;
            if starts {
                *s = ClockState { phase: Phase::Head, since: Instant::now(), ..*s };
            }
            starts
        });
    }

    fn handling(&self) {
        self.state.send_modify(|s| {
            *s = ClockState { phase: Phase::Handling, since: Instant::now(), in_flight: s.in_flight + 1 };
        });
    }

    fn responding(&self) {
        self.state.send_modify(|s| *s = ClockState { phase: Phase::Responding, since: Instant::now(), ..*s });
    }

    /// A part of the response body is ready: a streamed response (e.g. Server-Sent Events)
    /// lives as long as its parts keep coming, each within the bound of the last.
    fn progressed(&self) {
        self.state.send_if_modified(|s| {
            let responding = s.phase == Phase::Responding;
            if responding {
                s.since = Instant::now();
            }
            responding
        });
    }

    fn done(&self) {
        self.state.send_modify(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                *s = ClockState { phase: Phase::Idle, since: Instant::now(), in_flight: 0 };
            }
        });
    }

    /// Resolves with the phase that outlasted its bound.
    async fn expired(&self) -> Phase {
        let mut changes = self.state.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            let limit = match state.phase {
                Phase::Head => Some(self.limits.header_read_timeout),
                Phase::Handling => None,
                Phase::Responding | Phase::Idle => Some(self.limits.keep_alive_timeout),
            };
            // `self` holds the sender, so `changed` never fails while this runs.
            match limit {
                None => {
                    let _ = changes.changed().await;
                }
                Some(limit) => tokio::select! {
                    _ = changes.changed() => {}
                    () = sleep_until(state.since + limit) => return state.phase,
                },
            }
        }
    }
}

/// Marks a request done (its response written, or abandoned) when dropped.
#[derive(Debug)]
struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.done();
    }
}

pin_project! {
    /// The connection's socket, telling the clock when bytes arrive.
    #[derive(Debug)]
    struct ClockedIo {
        #[pin]
        io: TcpStream,
        clock: Arc<Clock>,
    }
}

impl AsyncRead for ClockedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.io.poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.clock.read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClockedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// The app, as one connection's hyper service.
#[derive(Debug, Clone)]
struct ConnectionService {
    app: Router,
    remote: SocketAddr,
    clock: Arc<Clock>,
    body_read_timeout: Duration,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<ClockedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<ClockedBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.clock.handling();
        let in_flight = InFlight(self.clock.clone());
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.remote));
        let upload = Arc::new(Upload::default());
        let has_body = !http_body::Body::is_end_stream(&body);
        let body = Body::new(DeadlineBody::new(body, self.body_read_timeout, upload.clone()));
        let mut app = self.app.clone();
        let clock = self.clock.clone();
        Box::pin(async move {
            let served = async {
                std::future::poll_fn(|cx| tower_service::Service::<Request<Body>>::poll_ready(&mut app, cx))
                    .await?;
                app.call(Request::from_parts(parts, body)).await
            };
            let response = match served.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let mut response =
                if upload.timed_out.load(Ordering::Acquire) { request_timeout(&response) } else { response };
            // The rest of an unread body would be parsed as the next request: announce the
            // close, and hyper closes after this response.
            if has_body && !upload.finished.load(Ordering::Acquire) {
                response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            clock.responding();
            Ok(response.map(|body| ClockedBody { body, in_flight }))
        })
    }
}

/// The catalog's `408 REQUEST_TIMEOUT`, with the request id `response` carries.
fn request_timeout(response: &Response<Body>) -> Response<Body> {
    let id = response.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let id = id.unwrap_or_else(|| keyward_core::http::request_id(None));
    let error = Error::new(ErrorCode::RequestTimeout, "the request body did not arrive in time");
    let rendered = ErrorResponse::new(&error, &id, None);
    let mut timeout = Response::new(Body::from(rendered.body));
    *timeout.status_mut() = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::REQUEST_TIMEOUT);
    for (name, value) in rendered.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            timeout.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    timeout
}

/// What became of a request's body.
#[derive(Debug, Default)]
struct Upload {
    /// Read to its end.
    finished: AtomicBool,
    /// Not whole within the body timeout.
    timed_out: AtomicBool,
}

pin_project! {
    /// A request body that must arrive whole within its deadline, counted from its first read.
    #[derive(Debug)]
    struct DeadlineBody {
        #[pin]
        body: Incoming,
        timeout: Duration,
        #[pin]
        deadline: Option<Sleep>,
        upload: Arc<Upload>,
    }
}

impl DeadlineBody {
    fn new(body: Incoming, timeout: Duration, upload: Arc<Upload>) -> Self {
        Self { body, timeout, deadline: None, upload }
    }
}

/// The error a stalled body ends with.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        if this.upload.timed_out.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        if this.deadline.is_none() {
            this.deadline.set(Some(sleep(*this.timeout)));
        }
        match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                if frame.is_none() || this.body.is_end_stream() {
                    this.upload.finished.store(true, Ordering::Release);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.deadline.as_pin_mut().expect("set above");
                ready!(deadline.poll(cx));
                this.upload.timed_out.store(true, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

pin_project! {
    /// A response body that marks its request done once hyper is through with it.
    #[derive(Debug)]
    struct ClockedBody {
        #[pin]
        body: Body,
        in_flight: InFlight,
    }
}

impl http_body::Body for ClockedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &frame {
            this.in_flight.0.progressed();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
