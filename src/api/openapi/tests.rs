//! The OpenAPI document against the route table: the same operations, every reference
//! resolving, the public routes marked public, and the document moved under other base paths.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{DOCUMENT, Document};
use crate::api::route_list;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

/// Every (METHOD, path) the document describes.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect()
}

#[test]
fn the_document_describes_exactly_the_route_table() {
    let routes: BTreeSet<_> = route_list("/api").into_iter().collect();
    let documented = operations(&document());
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from docs/openapi.json: {undocumented:?}; documented without a route: {unrouted:?}"
    );
    assert!(routes.len() >= 35, "{routes:?}");
}

#[test]
fn only_health_and_the_document_are_public() {
    let document = document();
    let public: BTreeSet<String> = ["/healthz", "/readyz", "/api/openapi.json"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for (method, path) in operations(&document) {
        let operation = &document["paths"][&path][method.to_ascii_lowercase()];
        let open = operation["security"] == serde_json::json!([]);
        assert_eq!(
            open,
            public.contains(&path),
            "{method} {path}: security {}",
            operation["security"]
        );
        let responses = operation["responses"].as_object().expect("responses");
        if !open {
            for status in ["401", "403"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
}

/// The value a local `$ref` points at.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_operation_is_unique() {
    let document = document();
    let mut all = Vec::new();
    refs(&document, &mut all);
    assert!(all.len() > 50);
    for reference in all {
        assert!(
            resolve(&document, reference).is_some(),
            "{reference} does not resolve"
        );
    }
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&document) {
        let id = document["paths"][&path][method.to_ascii_lowercase()]["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            .to_owned();
        assert!(ids.insert(id.clone()), "operationId {id} used twice");
    }
    assert_eq!(document["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
}

#[test]
fn every_schema_compiles() {
    let document = document();
    for (name, _) in document["components"]["schemas"].as_object().unwrap() {
        let mut root = document.clone();
        root["$ref"] = Value::String(format!("#/components/schemas/{name}"));
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn served_under_another_base_path_the_api_paths_move() {
    let served = |base: &str| -> Value {
        serde_json::from_slice(&Document::for_base_path(base).0).expect("served document is JSON")
    };
    assert_eq!(served("/api"), document());
    for base in ["", "/v1/agentd"] {
        let routes: BTreeSet<_> = route_list(base).into_iter().collect();
        assert_eq!(operations(&served(base)), routes, "base path {base:?}");
    }
}
