//! The OpenAPI document, assembled from the handlers' utoipa annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{audit, keys, status, workspaces};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward management API",
        description = "Issue, verify, rotate and revoke API keys; manage workspaces, plans, audit events and usage.\n\n\
Every error is `{\"error\": {\"code\", \"message\", \"details\", \"requestId\"}}` with a stable `code`; \
every response carries `X-Request-Id`; a 429 carries `Retry-After`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        status::status,
        status::verify,
        keys::create_key,
        keys::list_keys,
        keys::get_key,
        keys::update_key,
        keys::activate_key,
        keys::deactivate_key,
        keys::revoke_key,
        keys::rotate_key,
        keys::delete_key,
        keys::key_usage,
        workspaces::list_workspaces,
        workspaces::create_workspace,
        workspaces::get_workspace,
        workspaces::update_workspace,
        workspaces::list_plans,
        workspaces::save_plan,
        audit::list_audit_events,
    ),
    components(schemas(keyward_core::ErrorBody, keyward_core::ErrorObject, keyward_core::ErrorCode)),
    modifiers(&Security, &Conventions),
    tags(
        (name = "status", description = "The calling key"),
        (name = "verify", description = "Key verification for services in other languages"),
        (name = "keys", description = "The key lifecycle"),
        (name = "usage", description = "Requests per key per day"),
        (name = "workspaces", description = "Tenants"),
        (name = "plans", description = "What workspaces may do"),
        (name = "audit", description = "Who changed what"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
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
                "`X-API-Key: <key>`",
            ))),
        );
    }
}

/// What every `/v1` operation shares, added in one place rather than on each handler: the
/// optional `X-Workspace-Id` header, and the 429 and 503 answers any operation may give.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};

        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build(),
            )
        };
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
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let responses = &mut op.responses.responses;
                responses
                    .entry("429".into())
                    .or_insert_with(|| error("RATE_LIMITED or CONCURRENCY_LIMITED; see `Retry-After`"));
                responses
                    .entry("503".into())
                    .or_insert_with(|| error("STORE_UNAVAILABLE: the key store cannot be reached"));
                op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(workspace.clone()));
            }
        }
    }
}

/// The management API's OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
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
