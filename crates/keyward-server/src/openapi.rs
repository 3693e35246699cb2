//! The OpenAPI document, assembled from the handlers' utoipa annotations as `crate::routes`
//! registers them.
//!
//! What every operation shares (the security schemes, the auth layer's answers, the body limit,
//! the headers) and what describes the types of `keyward-core` is added here once, by modifiers,
//! rather than on each handler.

use axum::Router;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward management API",
        description = "Issue, verify, rotate and revoke API keys; manage workspaces, plans, audit events and usage.\n\n\
Every request but GitHub's signed leak reports (`POST /v1/leaks/github`, `x-keyward-authentication: github-signature`) authenticates with a keyward key, sent as `Authorization: Bearer <key>` or `X-API-Key: <key>` \
(both at once only if they carry the same key; two different keys are refused with 400 `CONFLICTING_API_KEYS`; \
a key in the query string is refused with 400 `API_KEY_IN_URL`).\n\n\
Every error is `{\"error\": {\"code\", \"message\", \"details\", \"requestId\"}}` with a stable `code`; \
every response carries `X-Request-Id`; a 401 carries `WWW-Authenticate`; a 429 carries `Retry-After`. \
Request bodies are JSON (`Content-Type: application/json`) of at most 64 KiB (1 MiB for `POST /v1/keys/import`; \
else 413 `PAYLOAD_TOO_LARGE`); \
a JSON value of the wrong type, such as an array where an object is expected, and unknown fields are refused \
with 400 `VALIDATION_FAILED`. Timestamps are RFC 3339 with a 4-digit year (0000 to 9999). \
An unknown path answers 404 `NOT_FOUND` and a method a path does not support answers 405 \
`METHOD_NOT_ALLOWED` with `Allow`, once the key is verified.",
        license(name = "MIT OR Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "`keyward serve` on its default address")),
    components(schemas(keyward_core::ErrorBody, keyward_core::ErrorObject, keyward_core::ErrorCode)),
    tags(
        (name = "status", description = "The calling key"),
        (name = "verify", description = "Key verification for services in other languages"),
        (name = "verifier", description = "Remote verifiers: services that check keys through this server, caching them and hearing of changes on an event stream"),
        (name = "keys", description = "The key lifecycle"),
        (name = "usage", description = "Requests per key per day"),
        (name = "workspaces", description = "Tenants"),
        (name = "plans", description = "What workspaces may do"),
        (name = "audit", description = "Who changed what"),
        (name = "webhooks", description = "Signed event deliveries to a workspace's endpoints: key created, updated, rotated, revoked, deleted, leaked, expiring, low on credits"),
        (name = "leaks", description = "Leak reports from GitHub secret scanning, authenticated by GitHub's signature instead of an API key"),
    )
)]
struct ApiDoc;

/// The modifiers, run once the router has added every path: `#[openapi(modifiers(..))]` would run
/// them before.
const MODIFIERS: &[&dyn Modify] = &[&Security, &InlineValues, &CoreSchemas, &Conventions, &Signed, &Links];

/// Paths whose operations authenticate by a signature, outside keyward's layer: no API key, no
/// `X-Workspace-Id`, no rate limit. Marked `x-keyward-authentication` in the document.
pub(crate) const SIGNED_PATHS: &[&str] = &["/v1/leaks/github"];

/// The `/v1` router (behind keyward's layer), the router of the [signed](SIGNED_PATHS)
/// operations, and the complete document describing both.
pub(crate) fn api() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = crate::routes::router(ApiDoc::openapi()).split_for_parts();
    let (signed, signed_doc) = crate::routes::signed_router().split_for_parts();
    doc.merge(signed_doc);
    for modifier in MODIFIERS {
        modifier.modify(&mut doc);
    }
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    (router, signed, doc)
}

/// Every operation of the document that takes an API key.
fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    operations_where(openapi, |path| !SIGNED_PATHS.contains(&path))
}

fn operations_where(
    openapi: &mut utoipa::openapi::OpenApi,
    keep: fn(&str) -> bool,
) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.iter_mut().filter(move |(path, _)| keep(path)).flat_map(|(_, item)| {
        [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete]
            .into_iter()
            .flatten()
    })
}

/// The signed operations: their error bodies, the body limit and the store's answer, the request
/// id; and the mark that they take no API key.
struct Signed;

impl Modify for Signed {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::extensions::ExtensionsBuilder;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

        let error_body =
            || RefOr::T(ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build());
        for op in operations_where(openapi, |path| SIGNED_PATHS.contains(&path)) {
            op.security = None;
            let shared = SHARED
                .iter()
                .filter(|s| s.status == "503" || (s.status == "413" && op.request_body.is_some()));
            for shared in shared {
                let mut response = ResponseBuilder::new().description(shared.description).build();
                response.content.insert("application/json".into(), error_body());
                op.responses.responses.entry(shared.status.into()).or_insert(RefOr::T(response));
            }
            for (status, response) in &mut op.responses.responses {
                let RefOr::T(response) = response else { continue };
                if status.starts_with('4') || status.starts_with('5') {
                    response.content.entry("application/json".into()).or_insert_with(error_body);
                }
                response
                    .headers
                    .insert("X-Request-Id".into(), RefOr::Ref(Ref::new("#/components/headers/X-Request-Id")));
            }
            op.extensions =
                Some(ExtensionsBuilder::new().add("x-keyward-authentication", "github-signature").build());
        }
    }
}

/// The two ways to send a key, and every operation needs one of them.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations(openapi) {
            op.security = Some(vec![
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("apiKey", Vec::<String>::new()),
            ]);
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kw_live_...")
                    .description(Some("`Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "`X-API-Key: <key>`. Sent together with `Authorization: Bearer`, both must carry the same key \
                 (else 400 `CONFLICTING_API_KEYS`).",
            ))),
        );
    }
}

/// Fields that inline a value type from `crate::dto` (a name, a plan id) and have their own doc
/// comment come out of utoipa as `allOf: [<the value type>, {description, type: object}]`, which
/// no string satisfies. This folds the field's description and example into the value type.
struct InlineValues;

impl Modify for InlineValues {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::Object(obj)) = schema else { continue };
            for property in obj.properties.values_mut() {
                let RefOr::T(Schema::AllOf(all)) = property else { continue };
                let [RefOr::T(Schema::Object(value)), RefOr::T(Schema::Object(field))] = all.items.as_slice()
                else {
                    continue;
                };
                if !field.properties.is_empty() || field.additional_properties.is_some() {
                    continue;
                }
                let mut value = value.clone();
                value.description = field.description.clone().or(value.description);
                value.example = field.example.clone().or(value.example);
                *property = RefOr::T(Schema::Object(value));
            }
        }
    }
}

/// The schemas derived from `keyward-core` types, described for a JSON reader: their doc comments
/// are written for Rust, and their integers carry no bounds.
struct CoreSchemas;

impl Modify for CoreSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::SchemaFormat;

        let Some(components) = openapi.components.as_mut() else { return };
        let mut object = |name: &str, f: &mut dyn FnMut(&mut Object)| {
            if let Some(RefOr::T(Schema::Object(obj))) = components.schemas.get_mut(name) {
                f(obj);
            }
        };
        object("ErrorObject", &mut |o| {
            o.description = Some("The error: a stable code, a message, details and the request's id.".into());
        });
        object("KeyStatus", &mut |o| {
            o.description = Some(
                "Where a key stands: `active`, `inactive` (switched off, reversible) or `revoked` (final; also a \
                 key rotated without a grace period, or one whose grace period has ended). Only a revoked key can \
                 be deleted, after which the API no longer shows it."
                    .into(),
            );
        });
        object("RateLimitWindow", &mut |o| {
            o.description = Some(
                "One window of a rate limit: at most `limit` requests per `periodSecs` seconds. A policy holds at \
                 most 8 windows, and every window applies."
                    .into(),
            );
            let uint32 = |description: &str, max: u32| {
                let mut s = Object::new();
                s.schema_type = utoipa::openapi::schema::Type::Integer.into();
                s.format = Some(SchemaFormat::Custom("uint32".into()));
                s.minimum = Some(1.into());
                s.maximum = Some((max as usize).into());
                s.description = Some(description.into());
                RefOr::T(Schema::Object(s))
            };
            o.properties.insert(
                "limit".into(),
                uint32(
                    "Requests allowed in one period: 1 to 1,000,000 times `periodSecs` (at most 1,000,000 a second).",
                    u32::MAX,
                ),
            );
            o.properties.insert(
                "periodSecs".into(),
                uint32("Length of the period in seconds: 1 to 2,678,400 (31 days).", 31 * 24 * 3600),
            );
        });
    }
}

/// A response every operation may give, described once.
struct Shared {
    status: &'static str,
    description: &'static str,
    /// Only operations that take a request body.
    body_only: bool,
}

const SHARED: &[Shared] = &[
    Shared {
        status: "400",
        description: "API_KEY_IN_URL: a key was sent in the query string; CONFLICTING_API_KEYS: `X-API-Key` and \
                      `Authorization: Bearer` carry two different keys; VALIDATION_FAILED: `X-Workspace-Id` is not \
                      a UUID",
        body_only: false,
    },
    Shared {
        status: "401",
        description: "MISSING_API_KEY, INVALID_API_KEY (malformed, unknown or deleted), KEY_INACTIVE, KEY_REVOKED \
                      (revoked, or rotated and past its grace period) or KEY_EXPIRED: the caller's key is not valid",
        body_only: false,
    },
    Shared {
        status: "403",
        description: "FEATURE_NOT_IN_PLAN: the caller's workspace plan does not include API access; \
                      IP_NOT_ALLOWED: the caller's address is outside its key's (or workspace's) IP allowlist; \
                      INSUFFICIENT_SCOPE: `X-Workspace-Id` names another workspace and the caller lacks \
                      `workspaces:admin`",
        body_only: false,
    },
    Shared {
        status: "413",
        description: "PAYLOAD_TOO_LARGE: the body is larger than 64 KiB",
        body_only: true,
    },
    Shared {
        status: "429",
        description: "RATE_LIMITED: a window of the key's or its workspace's rate limit is full; \
                      CONCURRENCY_LIMITED: the key has too many requests in flight. Retry after `Retry-After` \
                      seconds",
        body_only: false,
    },
    Shared {
        status: "503",
        description: "STORE_UNAVAILABLE: the key store cannot be reached",
        body_only: false,
    },
];

/// What every `/v1` operation shares: the optional `X-Workspace-Id` header, the answers of the
/// auth layer, the body limit and the store, the error body of every error, and the response
/// headers.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};

        let error_body =
            || RefOr::T(ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build());

        declare_headers(openapi);
        let workspace = ParameterBuilder::new()
            .name("X-Workspace-Id")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Acts on this workspace instead of the key's own; only internal keys (scope `workspaces:admin`) may name another workspace.",
            ))
            .schema(Some(
                ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ))
            .build();
        for op in operations(openapi) {
            for (status, response) in &mut op.responses.responses {
                if let RefOr::T(response) = response
                    && (status.starts_with('4') || status.starts_with('5'))
                {
                    response.content.entry("application/json".into()).or_insert_with(error_body);
                }
            }
            let has_body = op.request_body.is_some();
            for shared in SHARED.iter().filter(|s| has_body || !s.body_only) {
                match op.responses.responses.get_mut(shared.status) {
                    // An operation with a body limit of its own states it.
                    Some(RefOr::T(_)) if shared.status == "413" => {}
                    Some(RefOr::T(declared)) => {
                        declared.description = format!("{}; {}", declared.description, shared.description);
                    }
                    Some(RefOr::Ref(_)) => {}
                    None => {
                        let mut response = ResponseBuilder::new().description(shared.description).build();
                        response.content.insert("application/json".into(), error_body());
                        op.responses.responses.insert(shared.status.into(), RefOr::T(response));
                    }
                }
            }
            add_headers(op);
            op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(workspace.clone()));
        }
    }
}

/// The response headers, declared once under `components/headers`: (name, type, description).
const HEADERS: &[(&str, HeaderType, &str)] = &[
    (
        "X-Request-Id",
        HeaderType::String,
        "The request's id: the caller's `X-Request-Id` when sane, else a new one.",
    ),
    ("WWW-Authenticate", HeaderType::String, "`Bearer realm=\"keyward\", error=\"invalid_token\", ...`"),
    ("Retry-After", HeaderType::Integer, "Seconds to wait before retrying."),
    (
        "X-RateLimit-Limit",
        HeaderType::Integer,
        "Requests allowed in the tightest window. Present when a rate limit was applied to the request.",
    ),
    (
        "X-RateLimit-Remaining",
        HeaderType::Integer,
        "Requests left in the tightest window. Present when a rate limit was applied to the request.",
    ),
    (
        "X-RateLimit-Reset",
        HeaderType::Integer,
        "When the tightest window is full again (seconds since the epoch). Present when a rate limit was \
         applied to the request.",
    ),
    (
        "RateLimit-Policy",
        HeaderType::String,
        "Every window, as the IETF draft spells it: `\"key-60s\";q=60;w=60, ...`. Present when a rate limit \
         was applied to the request.",
    ),
    (
        "RateLimit",
        HeaderType::String,
        "Every window's state, as the IETF draft spells it: `\"key-60s\";r=59;t=1, ...`. Present when a rate \
         limit was applied to the request.",
    ),
];

const RATE_LIMIT_HEADERS: &[&str] =
    &["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit"];

#[derive(Clone, Copy)]
enum HeaderType {
    String,
    Integer,
}

fn declare_headers(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};

    let components = openapi.components.get_or_insert_with(Default::default);
    for (name, ty, description) in HEADERS {
        let ty = match ty {
            HeaderType::String => Type::String,
            HeaderType::Integer => Type::Integer,
        };
        let header = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(ty)))
            .description(Some(*description))
            .build();
        components.headers.insert((*name).into(), RefOr::T(header));
    }
}

/// Points each response at the headers it carries: `X-Request-Id` always, `WWW-Authenticate` on
/// 401, `Retry-After` on 429, and the rate-limit headers on successes and 429s (other answers
/// given after the rate limit carry them too; they are declared where clients look for them).
fn add_headers(op: &mut Operation) {
    use utoipa::openapi::Ref;

    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        let mut names = vec!["X-Request-Id"];
        match status.as_str() {
            "401" => names.push("WWW-Authenticate"),
            "429" => names.push("Retry-After"),
            _ => {}
        }
        if status.starts_with('2') || status == "429" {
            names.extend(RATE_LIMIT_HEADERS);
        }
        for name in names {
            response
                .headers
                .insert(name.into(), RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))));
        }
    }
}

/// OpenAPI links from the operations that return a key or a workspace to the operations that take
/// its id, so that clients and stateful testers can chain create -> get/patch/rotate/revoke/delete.
struct Links;

/// A link to an operation on one key or workspace.
struct LinkTarget {
    /// The link's name.
    name: &'static str,
    operation: &'static str,
    /// What following it does, to the source's subject.
    does: &'static str,
}

/// A response that returns a key or a workspace.
struct LinkSource {
    operation: &'static str,
    status: &'static str,
    /// The runtime expression of the id.
    id: &'static str,
    targets: &'static [LinkTarget],
    /// What the targets act on.
    subject: &'static str,
}

const fn target(name: &'static str, operation: &'static str, does: &'static str) -> LinkTarget {
    LinkTarget { name, operation, does }
}

const KEY_OPERATIONS: &[LinkTarget] = &[
    target("GetKey", "get_key", "Reads"),
    target("UpdateKey", "update_key", "Changes"),
    target("ActivateKey", "activate_key", "Switches on"),
    target("DeactivateKey", "deactivate_key", "Switches off"),
    target("RevokeKey", "revoke_key", "Revokes"),
    target("RotateKey", "rotate_key", "Rotates"),
    target("DeleteKey", "delete_key", "Deletes (once revoked)"),
    target("KeyUsage", "key_usage", "Reads the daily usage of"),
];

const WORKSPACE_OPERATIONS: &[LinkTarget] = &[
    target("GetWorkspace", "get_workspace", "Reads"),
    target("UpdateWorkspace", "update_workspace", "Changes"),
];

const fn source(
    operation: &'static str,
    status: &'static str,
    id: &'static str,
    targets: &'static [LinkTarget],
    subject: &'static str,
) -> LinkSource {
    LinkSource { operation, status, id, targets, subject }
}

const LINK_SOURCES: &[LinkSource] = &[
    source("create_key", "201", "$response.body#/id", KEY_OPERATIONS, "the new key"),
    source("rotate_key", "201", "$response.body#/id", KEY_OPERATIONS, "the successor"),
    source("get_key", "200", "$response.body#/key/id", KEY_OPERATIONS, "this key"),
    source("update_key", "200", "$response.body#/id", KEY_OPERATIONS, "this key"),
    source("activate_key", "200", "$response.body#/id", KEY_OPERATIONS, "this key"),
    source("deactivate_key", "200", "$response.body#/id", KEY_OPERATIONS, "this key"),
    source("revoke_key", "200", "$response.body#/id", KEY_OPERATIONS, "this key"),
    source("create_workspace", "201", "$response.body#/id", WORKSPACE_OPERATIONS, "the new workspace"),
    source("update_workspace", "200", "$response.body#/id", WORKSPACE_OPERATIONS, "this workspace"),
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::link::LinkBuilder;

        for op in operations(openapi) {
            let Some(id) = op.operation_id.clone() else { continue };
            for source in LINK_SOURCES.iter().filter(|s| s.operation == id) {
                let Some(RefOr::T(response)) = op.responses.responses.get_mut(source.status) else {
                    continue;
                };
                for target in source.targets {
                    let link = LinkBuilder::new()
                        .operation_id(target.operation)
                        .parameter("id", source.id)
                        .description(format!("{} {}", target.does, source.subject))
                        .build();
                    response.links.insert(target.name.into(), RefOr::T(link));
                }
            }
            if id == "rotate_key"
                && let Some(RefOr::T(response)) = op.responses.responses.get_mut("201")
            {
                let replaced = LinkBuilder::new()
                    .operation_id("get_key")
                    .parameter("id", "$request.path.id")
                    .description(
                        "Reads the replaced key: `revoked` at once, or at the end of its grace period",
                    )
                    .build();
                response.links.insert("GetReplacedKey".into(), RefOr::T(replaced));
            }
        }
    }
}

/// The management API's OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().2
}

/// The document as pretty JSON with a trailing newline, exactly as checked in under `openapi/`:
/// OpenAPI 3.1, or its 3.0.3 conversion when `v30` is set.
pub fn openapi_json(v30: bool) -> String {
    let doc = serde_json::to_value(openapi()).expect("the document serializes");
    let doc = if v30 { crate::openapi30::to_openapi_30(doc) } else { doc };
    let mut text = serde_json::to_string_pretty(&doc).expect("the document serializes");
    text.push('\n');
    text
}
