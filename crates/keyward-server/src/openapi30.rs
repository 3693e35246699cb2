//! Converts the OpenAPI 3.1 document utoipa emits into OpenAPI 3.0.3, for progenitor and older
//! generators. The walk only touches schema objects and a few document fields; property names are
//! never rewritten.

use serde_json::{Map, Value, json};

/// Converts a 3.1 document to 3.0.3.
pub(crate) fn to_openapi_30(mut doc: Value) -> Value {
    let Some(root) = doc.as_object_mut() else { return doc };
    root.insert("openapi".into(), json!("3.0.3"));
    root.remove("webhooks");
    root.remove("jsonSchemaDialect");
    if let Some(Value::Object(info)) = root.get_mut("info") {
        info.remove("summary");
        if let Some(Value::Object(license)) = info.get_mut("license") {
            license.remove("identifier");
        }
    }
    if let Some(Value::Object(schemas)) = root.get_mut("components").and_then(|c| c.get_mut("schemas")) {
        schemas.values_mut().for_each(convert_schema);
    }
    if let Some(paths) = root.get_mut("paths") {
        walk(paths);
    }
    doc
}

/// Finds schemas (`schema` keys) and responses below a path item.
fn walk(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::Object(responses)) = obj.get_mut("responses") {
                for response in responses.values_mut() {
                    if let Value::Object(r) = response {
                        r.entry("description").or_insert_with(|| json!(""));
                    }
                }
            }
            for (k, child) in obj.iter_mut() {
                if k == "schema" {
                    convert_schema(child);
                } else {
                    walk(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(walk),
        _ => {}
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

fn convert_schema(schema: &mut Value) {
    let Value::Object(obj) = schema else { return };

    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(convert_schema);
    }
    for k in ["items", "additionalProperties", "not"] {
        if let Some(child) = obj.get_mut(k).filter(|c| c.is_object()) {
            convert_schema(child);
        }
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(k) {
            list.iter_mut().for_each(convert_schema);
        }
    }

    // `type: [T, "null"]` -> `type: T, nullable: true`.
    if let Some(Value::Array(types)) = obj.get("type").cloned() {
        let non_null: Vec<Value> = types.iter().filter(|t| t.as_str() != Some("null")).cloned().collect();
        if non_null.len() != types.len() {
            obj.insert("nullable".into(), json!(true));
        }
        match non_null.len() {
            0 => {
                obj.remove("type");
            }
            1 => {
                obj.insert("type".into(), non_null[0].clone());
            }
            _ => {
                obj.remove("type");
                let variants: Vec<Value> = non_null.into_iter().map(|t| json!({ "type": t })).collect();
                obj.insert("anyOf".into(), Value::Array(variants));
            }
        }
    }

    // `oneOf`/`anyOf` with a `{type: null}` branch -> the other branches, nullable.
    for k in ["oneOf", "anyOf"] {
        let Some(Value::Array(list)) = obj.get(k) else { continue };
        if !list.iter().any(is_null_schema) {
            continue;
        }
        let rest: Vec<Value> = list.iter().filter(|v| !is_null_schema(v)).cloned().collect();
        obj.remove(k);
        obj.insert("nullable".into(), json!(true));
        match rest.len() {
            0 => {}
            1 => match &rest[0] {
                only if only.get("$ref").is_some() => {
                    obj.insert("allOf".into(), json!([only]));
                }
                Value::Object(inline) => {
                    for (ik, iv) in inline {
                        obj.entry(ik.clone()).or_insert_with(|| iv.clone());
                    }
                }
                _ => {}
            },
            _ => {
                obj.insert(k.into(), Value::Array(rest));
            }
        }
    }

    // `$ref` may not have siblings in 3.0.
    if obj.contains_key("$ref") && obj.len() > 1 {
        let reference = obj.remove("$ref").expect("checked");
        let mut all = match obj.remove("allOf") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        all.insert(0, json!({ "$ref": reference }));
        obj.insert("allOf".into(), Value::Array(all));
    }

    if let Some(Value::Array(examples)) = obj.remove("examples")
        && let Some(first) = examples.into_iter().next()
    {
        obj.insert("example".into(), first);
    }
    if let Some(c) = obj.remove("const") {
        obj.insert("enum".into(), json!([c]));
    }
    for (exclusive, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        if let Some(n) = obj.get(exclusive).filter(|v| v.is_number()).cloned() {
            obj.insert(bound.into(), n);
            obj.insert(exclusive.into(), json!(true));
        }
    }
    for k in ["propertyNames", "prefixItems", "$schema", "contentEncoding", "contentMediaType"] {
        obj.remove(k);
    }
    // A plain string with a pattern or a length bound becomes a validating newtype in typify, which
    // would change the SDK's API and pull in a regex engine: the 3.0 copy keeps those rules as
    // `x-` extensions, which generators ignore and readers still see.
    if obj.get("type").and_then(Value::as_str) == Some("string") && !obj.contains_key("format") {
        for k in ["pattern", "minLength", "maxLength"] {
            if let Some(rule) = obj.remove(k) {
                obj.insert(format!("x-{k}"), rule);
            }
        }
    }

    // Unsigned integers, so typify does not make them signed.
    let non_negative = obj.get("minimum").and_then(Value::as_f64).is_some_and(|m| m >= 0.0);
    if obj.get("type").and_then(Value::as_str) == Some("integer") && non_negative {
        let format = match obj.get("format").and_then(Value::as_str) {
            Some("int64") | Some("uint64") => "uint64",
            _ => "uint32",
        };
        obj.insert("format".into(), json!(format));
    }
    tidy(obj);
}

/// Drops `nullable: false` noise and keeps keys deterministic.
fn tidy(obj: &mut Map<String, Value>) {
    if obj.get("nullable") == Some(&json!(false)) {
        obj.remove("nullable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_each_31_construct() {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1", "summary": "s", "license": {"name": "MIT", "identifier": "MIT"}},
            "webhooks": {},
            "paths": {"/x": {"get": {
                "parameters": [{"name": "n", "in": "query", "schema": {"type": ["integer", "null"], "format": "int64", "minimum": 0}}],
                "responses": {"204": {}}
            }}},
            "components": {"schemas": {
                "A": {"type": "object", "properties": {
                    "type": {"type": "string", "const": "a"},
                    "examples": {"type": "array", "items": {"type": "string"}, "examples": [["x"]]},
                    "maybe": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/B"}]},
                    "described": {"$ref": "#/components/schemas/B", "description": "d"},
                    "positive": {"type": "number", "exclusiveMinimum": 0},
                    "count": {"type": "integer", "format": "int32", "minimum": 0},
                    "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^a"},
                    "at": {"type": "string", "format": "date-time", "pattern": "^[0-9]{4}"}
                }, "propertyNames": {"pattern": "x"}},
                "B": {"type": "string"}
            }}
        });
        let out = to_openapi_30(doc);
        assert_eq!(out["openapi"], "3.0.3");
        assert!(out.get("webhooks").is_none());
        assert!(out["info"].get("summary").is_none());
        assert!(out["info"]["license"].get("identifier").is_none());
        let p = &out["paths"]["/x"]["get"];
        assert_eq!(
            p["parameters"][0]["schema"],
            json!({"type": "integer", "format": "uint64", "minimum": 0, "nullable": true})
        );
        assert_eq!(p["responses"]["204"]["description"], "");
        let a = &out["components"]["schemas"]["A"];
        assert!(a.get("propertyNames").is_none());
        let props = &a["properties"];
        assert_eq!(
            props["type"],
            json!({"type": "string", "enum": ["a"]}),
            "a property named `type` keeps its name"
        );
        assert_eq!(props["examples"]["example"], json!(["x"]), "a property named `examples` keeps its name");
        assert_eq!(props["maybe"], json!({"allOf": [{"$ref": "#/components/schemas/B"}], "nullable": true}));
        assert_eq!(
            props["described"],
            json!({"allOf": [{"$ref": "#/components/schemas/B"}], "description": "d"})
        );
        assert_eq!(props["positive"], json!({"type": "number", "minimum": 0, "exclusiveMinimum": true}));
        assert_eq!(props["count"]["format"], "uint32");
        assert_eq!(
            props["name"],
            json!({"type": "string", "x-minLength": 1, "x-maxLength": 100, "x-pattern": "^a"}),
            "plain strings keep their rules as extensions"
        );
        assert_eq!(props["at"]["pattern"], "^[0-9]{4}", "a formatted string keeps its own");
    }
}
