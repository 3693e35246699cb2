//! The checked-in OpenAPI documents are what the code produces (`cargo xtask codegen`).

fn checked_in(name: &str) -> String {
    // The manifest directory at run time: a shared target dir may hold a test binary compiled
    // in another clone, whose compiled-in path would name that clone's files.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let path = std::path::Path::new(&dir).join("../../openapi").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn openapi_31_file_is_current() {
    assert!(
        checked_in("keyward.openapi.json") == keyward_server::openapi_json(false),
        "openapi/keyward.openapi.json is stale: run `cargo xtask codegen`"
    );
}

#[test]
fn openapi_30_file_is_current() {
    assert!(
        checked_in("keyward.openapi-3.0.json") == keyward_server::openapi_json(true),
        "openapi/keyward.openapi-3.0.json is stale: run `cargo xtask codegen`"
    );
}

#[test]
fn every_operation_is_documented_and_secured() {
    let doc: serde_json::Value = serde_json::from_str(&checked_in("keyward.openapi.json")).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let at = format!("{method} {path}");
            if signed(op) {
                assert_signed(&at, op);
                continue;
            }
            assert!(
                op["description"].as_str().is_some_and(|d| !d.is_empty()) || op["summary"].is_string(),
                "{at}"
            );
            assert!(op["operationId"].is_string(), "{at}");
            assert_eq!(op["security"].as_array().map(Vec::len), Some(2), "{at}");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("401"), "{at} documents 401");
            assert!(
                responses.contains_key("429") && responses.contains_key("503"),
                "{at} documents 429 and 503"
            );
            let params = op["parameters"].as_array().unwrap();
            assert!(params.iter().any(|p| p["name"] == "X-Workspace-Id" && p["in"] == "header"), "{at}");
            assert!(responses.values().all(|r| r["description"].is_string()), "{at}");
        }
    }
    assert_eq!(operations, 34);
    assert_eq!(
        self::operations(&doc)
            .iter()
            .filter(|(_, op)| signed(op))
            .map(|(at, _)| at.as_str())
            .collect::<Vec<_>>(),
        ["POST /v1/leaks/github"],
        "the only operation without an API key"
    );
}

/// Whether an operation authenticates by a signature instead of an API key (GitHub's leak
/// reports): it says so with `x-keyward-authentication`, and takes none of the API-key layer's
/// answers.
fn signed(op: &Value) -> bool {
    op.get("x-keyward-authentication").is_some()
}

fn assert_signed(at: &str, op: &Value) {
    assert_eq!(op["x-keyward-authentication"], "github-signature", "{at}");
    assert!(op.get("security").is_none(), "{at} takes no API key");
    let params = op["parameters"].as_array().unwrap();
    for header in ["Github-Public-Key-Identifier", "Github-Public-Key-Signature"] {
        assert!(
            params.iter().any(|p| p["name"] == header && p["in"] == "header" && p["required"] == true),
            "{at}"
        );
    }
    assert!(!params.iter().any(|p| p["name"] == "X-Workspace-Id"), "{at} acts on no workspace");
    let responses = op["responses"].as_object().unwrap();
    assert!(responses["401"]["description"].as_str().unwrap().contains("INVALID_SIGNATURE"), "{at}");
    for status in ["400", "413", "503"] {
        assert!(responses.contains_key(status), "{at} documents {status}");
    }
    assert!(!responses.contains_key("429"), "{at} has no rate limit");
    for (status, response) in responses {
        assert!(response["headers"]["X-Request-Id"].is_object(), "{at}: {status} carries X-Request-Id");
    }
}

use serde_json::Value;

fn document(name: &str) -> Value {
    serde_json::from_str(&checked_in(name)).unwrap()
}

/// Every operation of a document, as (`METHOD path`, operation).
fn operations(doc: &Value) -> Vec<(String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((format!("{} {path}", method.to_uppercase()), op));
        }
    }
    ops
}

fn operation<'a>(doc: &'a Value, at: &str) -> &'a Value {
    let (method, path) = at.split_once(' ').unwrap();
    &doc["paths"][path][method.to_lowercase()]
}

/// Calls `f` with the JSON pointer of every object in `v`.
fn walk(v: &Value, at: &str, f: &mut dyn FnMut(&str, &serde_json::Map<String, Value>)) {
    match v {
        Value::Object(obj) => {
            f(at, obj);
            for (k, child) in obj {
                walk(child, &format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), f);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{at}/{i}"), f);
            }
        }
        _ => {}
    }
}

fn description(op: &Value, status: &str) -> String {
    op["responses"][status]["description"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn every_operation_documents_what_every_request_may_meet() {
    // The auth layer (400 key in URL or two different keys, 401, 403 plan without API access),
    // `X-Workspace-Id` (400, 403), the rate limits (429), the store (503) and, for operations with
    // a body, the 64 KiB body limit (413).
    let doc = document("keyward.openapi.json");
    // The signed operation meets none of these layers (`assert_signed` checks what it meets).
    for (at, op) in operations(&doc).into_iter().filter(|(_, op)| !signed(op)) {
        let responses = op["responses"].as_object().unwrap();
        for status in ["400", "401", "403", "429", "503"] {
            assert!(responses.contains_key(status), "{at} documents {status}");
        }
        assert_eq!(
            responses.contains_key("413"),
            op.get("requestBody").is_some(),
            "{at}: 413 iff it takes a body"
        );
        let bad_request = description(op, "400");
        for code in ["API_KEY_IN_URL", "CONFLICTING_API_KEYS"] {
            assert!(bad_request.contains(code), "{at}: 400 names {code}: {bad_request}");
        }
        assert!(description(op, "403").contains("FEATURE_NOT_IN_PLAN"), "{at}");
        for (status, header) in [("401", "WWW-Authenticate"), ("429", "Retry-After")] {
            assert!(
                op["responses"][status]["headers"][header].is_object(),
                "{at}: {status} carries {header}"
            );
        }
        for (status, response) in responses {
            assert!(response["headers"]["X-Request-Id"].is_object(), "{at}: {status} carries X-Request-Id");
        }
    }
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().unwrap();
    for code in
        ["CONFLICTING_API_KEYS", "LAST_ADMIN_KEY", "SELF_LOCKOUT", "PAYLOAD_TOO_LARGE", "METHOD_NOT_ALLOWED"]
    {
        assert!(codes.iter().any(|c| c == code), "ErrorCode lists {code}");
    }
    assert!(description(operation(&doc, "GET /v1/status"), "404").contains("X-Workspace-Id"));
    for at in [
        "PATCH /v1/keys/{id}",
        "POST /v1/keys/{id}/activate",
        "POST /v1/keys/{id}/deactivate",
        "POST /v1/keys/{id}/revoke",
        "POST /v1/keys/{id}/rotate",
        "DELETE /v1/keys/{id}",
    ] {
        let forbidden = description(operation(&doc, at), "403");
        assert!(
            forbidden.contains("INSUFFICIENT_SCOPE") && forbidden.contains("RESOURCE_NOT_ALLOWED"),
            "{at}"
        );
    }
    for at in ["PATCH /v1/keys/{id}", "POST /v1/keys/{id}/deactivate", "POST /v1/keys/{id}/revoke"] {
        assert!(description(operation(&doc, at), "409").contains("LAST_ADMIN_KEY"), "{at}");
    }
    for at in ["PUT /v1/plans/{id}", "PATCH /v1/workspaces/{id}"] {
        assert!(description(operation(&doc, at), "409").contains("SELF_LOCKOUT"), "{at}");
    }
}

#[test]
fn every_integer_states_its_format_and_bounds_in_both_documents() {
    for name in ["keyward.openapi.json", "keyward.openapi-3.0.json"] {
        let doc = document(name);
        let mut integers = 0;
        walk(&doc, "", &mut |at, obj| {
            let integer = match obj.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            // Response headers describe what the server sends, not what it accepts.
            if !integer || at.contains("/headers/") {
                return;
            }
            integers += 1;
            let (min, max) =
                (obj.get("minimum").and_then(Value::as_f64), obj.get("maximum").and_then(Value::as_f64));
            let format = obj.get("format").and_then(Value::as_str);
            assert!(min.is_some() && max.is_some(), "{name}{at}: minimum and maximum");
            let limit = match format {
                Some("uint32") => f64::from(u32::MAX),
                Some("uint64") => u64::MAX as f64,
                Some("int64") => i64::MAX as f64,
                other => panic!("{name}{at}: format {other:?}"),
            };
            assert!(min.unwrap() >= 0.0 && max.unwrap() <= limit, "{name}{at}: bounds within {format:?}");
        });
        assert!(integers > 20, "{name}: {integers} integers");
    }
    // The bounds the server enforces, the same in both documents.
    for name in ["keyward.openapi.json", "keyward.openapi-3.0.json"] {
        let doc = document(name);
        let schemas = &doc["components"]["schemas"];
        let window = &schemas["RateLimitWindow"]["properties"];
        assert_eq!(
            (window["limit"]["minimum"].as_u64(), window["limit"]["maximum"].as_u64()),
            (Some(1), Some(4294967295))
        );
        assert_eq!(window["periodSecs"]["maximum"], 2678400, "{name}: 31 days");
        assert_eq!(
            schemas["RotateKeyRequest"]["properties"]["graceSeconds"]["maximum"], 2592000,
            "{name}: 30 days"
        );
        assert_eq!(schemas["VerifyRequest"]["properties"]["cost"]["format"], "uint32", "{name}");
        assert_eq!(schemas["SavePlanRequest"]["properties"]["maxKeys"]["format"], "uint32", "{name}");
        assert_eq!(schemas["CreateKeyRequest"]["properties"]["concurrencyLimit"]["minimum"], 1, "{name}");
        for (schema, field) in [
            ("CreateKeyRequest", "rateLimit"),
            ("UpdateKeyRequest", "rateLimit"),
            ("CreateWorkspaceRequest", "rateLimit"),
            ("UpdateWorkspaceRequest", "rateLimit"),
            ("SavePlanRequest", "keyRateLimit"),
        ] {
            assert_eq!(schemas[schema]["properties"][field]["maxItems"], 8, "{name}: {schema}.{field}");
        }
        assert_eq!(schemas["CreateKeyRequest"]["properties"]["metadata"]["maxProperties"], 50, "{name}");
        assert_eq!(schemas["CreateKeyRequest"]["properties"]["resources"]["maxItems"], 100, "{name}");
    }
}

#[test]
fn string_rules_the_server_enforces_are_stated() {
    let doc = document("keyward.openapi.json");
    let schemas = &doc["components"]["schemas"];
    let name = &schemas["CreateKeyRequest"]["properties"]["name"];
    assert_eq!((name["minLength"].as_u64(), name["maxLength"].as_u64()), (Some(1), Some(100)));
    let scope = &schemas["CreateKeyRequest"]["properties"]["scopes"]["items"];
    assert_eq!(scope["maxLength"], 128);
    assert!(scope["pattern"].as_str().unwrap().contains(':'));
    let plan = &operation(&doc, "PUT /v1/plans/{id}")["parameters"][0]["schema"];
    assert_eq!(plan["pattern"], "^[a-z0-9_\\-]{1,64}$");
    let labels = &schemas["CreateKeyRequest"]["properties"]["metadata"];
    assert_eq!(
        (labels["propertyNames"]["maxLength"].as_u64(), labels["additionalProperties"]["maxLength"].as_u64()),
        (Some(64), Some(512))
    );
    // Every name field carries the same rule.
    let mut names = Vec::new();
    for schema in [
        "ApiKeyView",
        "CreateKeyRequest",
        "WorkspaceView",
        "CreateWorkspaceRequest",
        "PlanView",
        "SavePlanRequest",
    ] {
        names.push(schemas[schema]["properties"]["name"]["pattern"].clone());
    }
    assert!(names.iter().all(|p| p.is_string() && *p == names[0]), "{names:?}");

    // The 3.0 copy keeps them as `x-` extensions: typify would turn constrained strings into
    // validating newtypes and change the SDK.
    let v30 = document("keyward.openapi-3.0.json");
    let name = &v30["components"]["schemas"]["CreateKeyRequest"]["properties"]["name"];
    assert_eq!((name["x-minLength"].as_u64(), name["x-maxLength"].as_u64()), (Some(1), Some(100)));
    assert!(name.get("pattern").is_none() && name["x-pattern"].is_string());
}

#[test]
fn descriptions_are_written_for_json_readers() {
    for name in ["keyward.openapi.json", "keyward.openapi-3.0.json"] {
        let doc = document(name);
        walk(&doc, "", &mut |at, obj| {
            for key in ["description", "summary"] {
                let Some(Value::String(text)) = obj.get(key) else { continue };
                // Intra-doc links, paths and Rust's own vocabulary.
                for rustism in ["[`", "`]", "::", "None", "Some(", "Option<", "Vec<", "`Debug`", "&str"] {
                    assert!(!text.contains(rustism), "{name}{at}/{key} holds {rustism:?}: {text}");
                }
                // Field names are camelCase in JSON: no snake_case identifiers in backticks.
                for quoted in text.split('`').skip(1).step_by(2) {
                    let snake = quoted.contains('_')
                        && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && !quoted.starts_with('_');
                    assert!(!snake, "{name}{at}/{key} names `{quoted}`: {text}");
                }
            }
        });
    }
}

#[test]
fn links_chain_created_keys_and_workspaces() {
    for name in ["keyward.openapi.json", "keyward.openapi-3.0.json"] {
        let doc = document(name);
        let ids: Vec<String> =
            operations(&doc).iter().map(|(_, op)| op["operationId"].as_str().unwrap().to_owned()).collect();
        let created = &doc["components"]["schemas"]["CreatedApiKey"];
        assert!(
            created["required"].as_array().unwrap().iter().any(|r| r == "id"),
            "{name}: CreatedApiKey has a flat id"
        );
        for (at, status, targets) in [
            (
                "POST /v1/keys",
                "201",
                &[
                    "get_key",
                    "update_key",
                    "rotate_key",
                    "revoke_key",
                    "deactivate_key",
                    "activate_key",
                    "delete_key",
                ][..],
            ),
            ("POST /v1/keys/{id}/rotate", "201", &["get_key", "revoke_key", "rotate_key"][..]),
            ("POST /v1/keys/{id}/revoke", "200", &["delete_key"][..]),
            ("POST /v1/workspaces", "201", &["get_workspace", "update_workspace"][..]),
        ] {
            let links = operation(&doc, at)["responses"][status]["links"]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: {at} has links"));
            for target in targets {
                let link = links
                    .values()
                    .find(|l| l["operationId"] == *target)
                    .unwrap_or_else(|| panic!("{name}: {at} -> {target}"));
                assert!(
                    link["parameters"]["id"].as_str().unwrap().starts_with("$response.body#/"),
                    "{name}: {at} -> {target}"
                );
            }
        }
        walk(&doc, "", &mut |at, obj| {
            if at.ends_with("/links") {
                for (link, body) in obj {
                    let target = body["operationId"].as_str().unwrap();
                    assert!(ids.iter().any(|id| id == target), "{name}{at}/{link}: no operation {target}");
                }
            }
        });
    }
}

#[test]
fn servers_name_the_default_address() {
    for name in ["keyward.openapi.json", "keyward.openapi-3.0.json"] {
        let doc = document(name);
        assert_eq!(doc["servers"][0]["url"], "http://127.0.0.1:8080", "{name}");
    }
}
