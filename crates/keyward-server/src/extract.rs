//! Extractors that turn every bad input into a catalog error with field details.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, USER_AGENT};
use axum::http::request::Parts;
use keyward_core::{Actor, ActorKey, Error, ErrorCode, KeyId, Scope, VerifiedKey, WorkspaceId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, current_request_id};

/// `X-Workspace-Id`: lets internal keys act on another workspace.
pub(crate) const WORKSPACE_HEADER: &str = "x-workspace-id";
/// The scope that makes a key internal: it may name any workspace and manage workspaces and plans.
pub(crate) const ADMIN_SCOPE: &str = "workspaces:admin";

/// A JSON body, parsed strictly: wrong content type, bad JSON, unknown fields, wrong types and
/// oversized bodies each become a catalog error naming the field.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Serialize> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(ApiError(
                Error::new(
                    ErrorCode::ValidationFailed,
                    "expected a JSON body with `Content-Type: application/json`",
                )
                .with_detail("field", "body"),
            ));
        }
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The raw body, read up to the body limit; a body over it is `PAYLOAD_TOO_LARGE` (413) and any
/// other failure `VALIDATION_FAILED`, both in the catalog shape.
#[derive(Debug)]
pub(crate) struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(ApiBytes).map_err(|e| match e {
            BytesRejection::FailedToBufferBody(ref inner) if inner.status().as_u16() == 413 => ApiError(
                Error::new(ErrorCode::PayloadTooLarge, "the request body is too large")
                    .with_detail("maxBytes", crate::MAX_BODY_BYTES),
            ),
            other => {
                ApiError(Error::new(ErrorCode::ValidationFailed, format!("could not read the body: {other}")))
            }
        })
    }
}

/// A path segment, percent-decoded; one that does not decode to UTF-8 (e.g. `%ff`) is
/// `VALIDATION_FAILED` in the catalog shape instead of axum's plain-text rejection.
#[derive(Debug)]
pub(crate) struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::validation("id", "must be a percent-encoded UTF-8 path segment"))
    }
}

/// Parses JSON into `T`, reporting the path of the offending field.
///
/// - An array where `T` (or a part of it) is an object is refused: serde would otherwise map it
///   to fields by position, so `["x"]` would be read as `{"name": "x"}`.
/// - A number with a zero fraction (`60.0`) is read as the integer it equals, as JSON Schema
///   (and so the OpenAPI document) counts it an integer; `60.5` stays a type error.
pub(crate) fn parse_json<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut input: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON at line {} column {}", e.line(), e.column())
            }
            _ => strip_position(&e.to_string()),
        };
        ApiError::validation("body", reason)
    })?;
    integral_floats_to_integers(&mut input);
    let parsed: T = serde_path_to_error::deserialize(&input).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError(Error::validation(&field, strip_position(&e.into_inner().to_string())))
    })?;
    let output = serde_json::to_value(&parsed).map_err(|e| ApiError(Error::internal(e)))?;
    match array_read_as_object(&input, &output, String::new()) {
        None => Ok(parsed),
        Some(path) => {
            let field = if path.is_empty() { "body".to_owned() } else { path };
            Err(ApiError::validation(&field, "must be a JSON object, not an array"))
        }
    }
}

/// Rewrites every number that is a whole float within the 64-bit integer range as that integer.
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Exactly representable bounds: -2^63 and 2^64.
            if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f) {
                *value = if f < 0.0 { Value::from(f as i64) } else { Value::from(f as u64) };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// The path of the first place where `input` holds an array and the parsed value an object.
fn array_read_as_object(
    input: &serde_json::Value,
    output: &serde_json::Value,
    path: String,
) -> Option<String> {
    use serde_json::Value;
    match (input, output) {
        (Value::Array(_), Value::Object(_)) => Some(path),
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| {
            let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            b.get(k).and_then(|w| array_read_as_object(v, w, sub))
        }),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| array_read_as_object(v, w, format!("{path}[{i}]"))),
        _ => None,
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Query parameters, parsed by `serde_urlencoded` into a typed struct: a parameter given twice,
/// an unknown one (the struct denies unknown fields) and a value of the wrong type each become
/// `VALIDATION_FAILED` naming the parameter.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default().as_bytes();
        // A struct field takes one value; serde would report a repeat without naming it.
        let mut seen = std::collections::HashSet::new();
        if let Some((name, _)) = form_urlencoded::parse(query).find(|(name, _)| !seen.insert(name.clone())) {
            return Err(ApiError::validation(&name, "given more than once"));
        }
        let params = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query));
        serde_path_to_error::deserialize(params).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "query".to_owned() } else { path };
            ApiError::validation(&field, e.into_inner().to_string())
        })
    }
}

/// Parses a path id, answering `VALIDATION_FAILED` for anything that is not a UUID.
pub(crate) fn parse_id<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::validation(field, "must be a UUID"))
}

/// Parses a key id from the path.
pub(crate) fn key_id(raw: &str) -> Result<KeyId, ApiError> {
    parse_id("id", raw)
}

/// The authenticated caller: its verified key, the workspace it acts on, and the audit actor.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The verified key.
    pub(crate) key: Arc<VerifiedKey>,
    /// The workspace acted on: the key's own, or `X-Workspace-Id` for internal keys.
    pub(crate) workspace: WorkspaceId,
    /// Who acts, for the audit log.
    pub(crate) actor: Actor,
}

impl Caller {
    /// Fails with `INSUFFICIENT_SCOPE` unless the key allows `scope`.
    pub(crate) fn require(&self, scope: &str) -> Result<(), ApiError> {
        let needed: Scope = scope.parse().expect("route scopes are valid");
        if self.key.allows(&needed) {
            Ok(())
        } else {
            Err(ApiError(
                Error::new(ErrorCode::InsufficientScope, format!("the API key lacks scope `{scope}`"))
                    .with_detail("missing", vec![scope.to_owned()]),
            ))
        }
    }

    /// Whether the key is internal (may name other workspaces).
    pub(crate) fn is_admin(&self) -> bool {
        self.key.allows(&ADMIN_SCOPE.parse().expect("valid scope"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let key = parts.extensions.get::<Arc<VerifiedKey>>().cloned().ok_or_else(|| {
            ApiError(Error::new(ErrorCode::MissingApiKey, "this endpoint needs an API key"))
        })?;
        let mut workspace = key.workspace_id();
        if let Some(raw) = parts.headers.get(WORKSPACE_HEADER) {
            let raw = raw.to_str().map_err(|_| ApiError::validation(WORKSPACE_HEADER, "must be a UUID"))?;
            let named: WorkspaceId = parse_id(WORKSPACE_HEADER, raw.trim())?;
            if named != workspace {
                if !key.allows(&ADMIN_SCOPE.parse().expect("valid scope")) {
                    return Err(ApiError(
                        Error::new(
                            ErrorCode::InsufficientScope,
                            "only internal keys may name another workspace",
                        )
                        .with_detail("missing", vec![ADMIN_SCOPE]),
                    ));
                }
                workspace = named;
            }
        }
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        let actor = Actor {
            key: Some(ActorKey {
                id: key.key_id(),
                workspace_id: key.workspace_id(),
                scopes: key.scopes().clone(),
                resources: key.key().resources.clone(),
            }),
            ip,
            user_agent,
            request_id: Some(current_request_id()),
        };
        Ok(Caller { key, workspace, actor })
    }
}

/// The client's address as the API's layer sees it: the peer, or what a trusted proxy says
/// (`--trusted-proxy`); `None` when the server runs without the peer address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) Option<std::net::IpAddr>);

impl FromRequestParts<crate::AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &crate::AppState) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
            return Ok(Self(None));
        };
        let values = |name: &str| -> Vec<&str> {
            parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
        };
        let proxies = keyward_core::TrustedProxies::new(state.trusted_proxies.iter().copied());
        Ok(Self(Some(proxies.client_addr(peer, &values("forwarded"), &values("x-forwarded-for")))))
    }
}
