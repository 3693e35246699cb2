//! Request and response bodies of the management API, one module per resource as in
//! `crate::routes`, and the value types their fields share.

pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod leaks;
pub(crate) mod status;
pub(crate) mod verifier;
pub(crate) mod webhooks;
pub(crate) mod workspaces;

use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

/// Distinguishes a field that is absent (`None`) from one set to `null` (`Some(None)`).
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// How the document spells the values the server checks. Nothing constructs these types:
// fields name them with `value_type` so the rule is written once.

/// A name: 1 to 100 characters, not blank, without control characters.
#[derive(ToSchema)]
#[schema(
    min_length = 1,
    max_length = 100,
    pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\x9F\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$"
)]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Name(String);

/// A scope: `resource:action`, where either part may be `*`, or `*` alone for everything. Parts
/// are letters, digits, `_`, `-` and `.`; at most 128 characters in all.
#[derive(ToSchema)]
#[schema(
    min_length = 1,
    max_length = 128,
    pattern = r"^(\*|(\*|[A-Za-z0-9_.\-]+):(\*|[A-Za-z0-9_.\-]+))$",
    example = "keys:read"
)]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Scope(String);

/// A resource a key is restricted to (a site, a project...): 1 to 200 bytes of UTF-8 without
/// control characters.
#[derive(ToSchema)]
#[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1F\x7F-\x9F]+$", example = "site-42")]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Resource(String);

/// A plan's id: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`.
#[derive(ToSchema)]
#[schema(min_length = 1, max_length = 64, pattern = r"^[a-z0-9_\-]{1,64}$", example = "professional")]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct PlanId(String);

/// An opaque page cursor, as returned in `nextCursor`.
#[derive(ToSchema)]
#[schema(min_length = 22, max_length = 22, pattern = r"^[A-Za-z0-9_\-]{21}[AQgw]$")]
#[allow(dead_code, reason = "describes a JSON value only")]
pub(crate) struct Cursor(String);

/// Labels: at most 50 entries; keys 1 to 64 bytes, values at most 512 bytes (UTF-8).
fn labels_schema(nullable: bool) -> Object {
    let string = |min: usize, max: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length((min > 0).then_some(min))
            .max_length(Some(max))
    };
    let types =
        if nullable { SchemaType::from_iter([Type::Object, Type::Null]) } else { Type::Object.into() };
    ObjectBuilder::new()
        .schema_type(types)
        .description(Some(
            "Free-form labels: at most 50 entries; keys of 1 to 64 bytes, values of at most 512 bytes (UTF-8).",
        ))
        .max_properties(Some(50))
        .property_names(Some(string(1, 64)))
        .additional_properties(Some(string(0, 512)))
        .build()
}

pub(crate) fn labels() -> Object {
    labels_schema(false)
}

pub(crate) fn labels_or_null() -> Object {
    labels_schema(true)
}
