//! The OpenAPI document served at `/api/openapi.json`, held to the routing table (issue 15): every
//! registered `/api/v1` route is in it with its method and nothing else is, every path parameter is
//! declared, every `$ref` points at something defined, and every error answer is an `ErrorBody`. The Python conformance suite
//! (`tests/conformance/test_openapi.py`) validates the same document with openapi-spec-validator
//! and runs schemathesis against it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::TestApp;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

async fn served_document() -> Value {
    let app = TestApp::spawn().await;
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `(method, path)` of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), operation));
            }
        }
    }
    out
}

/// The `{names}` of a path template, in order.
fn template_parameters(path: &str) -> Vec<String> {
    path.split('{').skip(1).filter_map(|rest| rest.split_once('}')).map(|(name, _)| name.to_owned()).collect()
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[actix_web::test]
async fn the_openapi_document_describes_exactly_the_registered_management_routes() {
    let doc = served_document().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    assert!(doc["components"]["securitySchemes"]["management_token"].is_object());

    let registered = gatehouse::routes::api::route_list();
    let routes: BTreeSet<(String, String)> = registered.iter().map(|(m, p)| (m.as_str().to_lowercase(), p.clone())).collect();
    assert_eq!(routes.len(), registered.len(), "a route is registered twice: {registered:?}");
    assert!(routes.len() >= 41, "the route list is suspiciously short: {routes:?}");
    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();

    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
    assert!(unrouted.is_empty(), "operations in the OpenAPI document that no route serves: {unrouted:?}");
}

#[actix_web::test]
async fn every_path_parameter_is_declared_every_reference_defined_and_every_error_an_error_body() {
    let doc = served_document().await;
    let mut problems = Vec::new();
    for (method, path, operation) in operations(&doc) {
        let template = template_parameters(&path);
        let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for p in &parameters {
            let (name, place) = (p["name"].as_str().unwrap_or_default(), p["in"].as_str().unwrap_or_default());
            if !seen.insert((name.to_owned(), place.to_owned())) {
                problems.push(format!("{method} {path}: parameter {name} ({place}) declared twice"));
            }
            if place == "path" && !template.iter().any(|t| t == name) {
                problems.push(format!("{method} {path}: path parameter {name} is not in the path"));
            }
            if place == "path" && p["required"] != Value::Bool(true) {
                problems.push(format!("{method} {path}: path parameter {name} must be required"));
            }
        }
        for name in &template {
            if !parameters.iter().any(|p| p["in"] == "path" && p["name"] == name.as_str()) {
                problems.push(format!("{method} {path}: path parameter {name} is not declared"));
            }
        }
        let responses = operation["responses"].as_object().cloned().unwrap_or_default();
        if !responses.keys().any(|s| s.starts_with('2')) {
            problems.push(format!("{method} {path}: no success response"));
        }
        for status in ["401", "503"] {
            if !responses.contains_key(status) {
                problems.push(format!("{method} {path}: no {status} response"));
            }
        }
        for (status, response) in &responses {
            if status.starts_with(['4', '5'])
                && response["content"]["application/json"]["schema"]["$ref"] != "#/components/schemas/ErrorBody"
            {
                problems.push(format!("{method} {path}: the {status} response does not carry an ErrorBody"));
            }
        }
    }

    // `additionalProperties: false` on a part of an `allOf` refuses the other parts' properties.
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let target = part["$ref"].as_str().and_then(|r| r.strip_prefix('#')).and_then(|p| doc.pointer(p)).unwrap_or(part);
            if target["additionalProperties"] == Value::Bool(false) {
                problems.push(format!("schema {name}: an allOf part is closed (additionalProperties: false)"));
            }
        }
    }

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let target = r.strip_prefix('#').map(|pointer| doc.pointer(pointer));
        if !matches!(target, Some(Some(_))) {
            problems.push(format!("$ref {r} points at nothing"));
        }
    }
    assert!(problems.is_empty(), "the OpenAPI document is invalid:\n{}", problems.join("\n"));
}
