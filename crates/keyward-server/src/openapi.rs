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
    modifiers(&Security),
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
