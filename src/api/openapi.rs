//! `GET {base_path}/openapi.json`: the OpenAPI 3.1 description of the HTTP API
//! (`docs/openapi.json`, embedded), its API paths moved under the configured `server.base_path`.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// The document as written: every API path under `/api`, the default base path.
const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The base path the document's API paths are written under.
const DOCUMENTED_BASE: &str = "/api";

/// The document as served, made once when the router is built.
#[derive(Clone, Default)]
pub(super) struct Document(Bytes);

impl Document {
    /// The document with its API paths under `base_path` (health and metrics stay at the root).
    pub(super) fn for_base_path(base_path: &str) -> Self {
        if base_path == DOCUMENTED_BASE {
            return Self(Bytes::from_static(DOCUMENT.as_bytes()));
        }
        let mut document: Value = match serde_json::from_str(DOCUMENT) {
            Ok(document) => document,
            Err(error) => {
                tracing::error!(%error, "the embedded OpenAPI document is not JSON");
                return Self::default();
            }
        };
        if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
            *paths = rebase(std::mem::take(paths), base_path);
        }
        Self(Bytes::from(document.to_string()))
    }
}

/// Moves the paths written under [`DOCUMENTED_BASE`] under `base_path`.
fn rebase(paths: Map<String, Value>, base_path: &str) -> Map<String, Value> {
    paths
        .into_iter()
        .map(|(path, item)| match path.strip_prefix(DOCUMENTED_BASE) {
            Some(rest) if rest.starts_with('/') => (format!("{base_path}{rest}"), item),
            _ => (path, item),
        })
        .collect()
}

pub(super) async fn serve(document: Document) -> Response {
    ([(CONTENT_TYPE, "application/json")], document.0).into_response()
}

#[cfg(test)]
mod tests;
