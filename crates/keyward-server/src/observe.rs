//! What every request leaves behind: one log line, in a span that keyward's layer fills with
//! the verified key's id, and the HTTP metrics.
//!
//! The line and the metrics name the route by its template (`/v1/keys/{id}`), never by the
//! raw path, and never hold a header value or the query string: a key sent where it should not
//! be (in a path, in the URL) is not repeated. A path no route matches is `unmatched`.
//!
//! Routes are matched inside the merged routers, after the layers on the whole app have seen
//! the request; each router's [`route_template`] layer hands the match back on the response.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Response};
use axum::middleware::Next;
use tracing::Span;
use tracing::field::Empty;

use keyward_core::metrics::{HTTP_DURATION, HTTP_REQUESTS};

/// The `route` of a request no route matched.
pub(crate) const UNMATCHED: &str = "unmatched";

/// The route a request matched, carried back on its response.
#[derive(Debug, Clone)]
struct RouteTemplate(MatchedPath);

/// Puts the matched route on the response, for the layers on the whole app. Goes on each
/// router, outermost, so that refusals by the layers under it carry the route too.
pub(crate) async fn route_template(req: Request, next: Next) -> axum::response::Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(RouteTemplate(matched));
    }
    response
}

/// The route `response` answered for.
fn route<B>(response: &Response<B>) -> &str {
    response.extensions().get::<RouteTemplate>().map_or(UNMATCHED, |r| r.0.as_str())
}

/// A method as a label: the standard ones, or `other` (a client may send any token).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The request's span: its method now; its route and (once verified, from keyward's layer) its
/// key's id and workspace later. No header, no path, no query string.
pub(crate) fn request_span<B>(req: &axum::http::Request<B>) -> Span {
    tracing::info_span!(
        "request",
        method = method_label(req.method()),
        route = Empty,
        key_id = Empty,
        workspace_id = Empty,
    )
}

/// The request's one log line, once its response is ready, with the id its response carries
/// (keyward's layer, or [`crate::public_request_id`], gave it one).
pub(crate) fn log_response<B>(response: &Response<B>, latency: Duration, span: &Span) {
    span.record("route", route(response));
    let request_id =
        response.headers().get(keyward_core::http::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        tracing::warn!(status, latency_ms, request_id, "request answered");
    } else {
        tracing::info!(status, latency_ms, request_id, "request answered");
    }
}

/// Counts the request and times it, by method, route and status.
pub(crate) async fn http_metrics(req: Request, next: Next) -> axum::response::Response {
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let took = start.elapsed().as_secs_f64();
    let route = route(&response).to_owned();
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route.clone()).record(took);
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}
