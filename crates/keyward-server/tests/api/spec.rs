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
    assert_eq!(operations, 19);
}
