//! The OpenAPI document (`docs/openapi.json`) as a test oracle: each response a test gets is
//! checked against the document's schema for its operation, status and content type, and the
//! operations checked are counted so a test can require that it reached every one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::KEY;

/// The document as checked in.
pub(crate) const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// One response as received.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub(crate) struct Contract {
    pub document: Value,
    validators: Mutex<HashMap<String, jsonschema::Validator>>,
    /// (METHOD, path template) of each response checked so far.
    checked: Mutex<BTreeSet<(String, String)>>,
}

/// `~` and `/` escaped for a JSON pointer.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl Contract {
    pub(crate) fn load() -> Self {
        Self {
            document: serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON"),
            validators: Mutex::new(HashMap::new()),
            checked: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every (METHOD, path template) the document describes.
    pub(crate) fn operations(&self) -> BTreeSet<(String, String)> {
        self.document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(|m| (m.to_ascii_uppercase(), path.clone()))
            })
            .collect()
    }

    /// The operations no response was checked for yet.
    pub(crate) fn unchecked(&self) -> BTreeSet<(String, String)> {
        let checked = self.checked.lock().unwrap();
        self.operations().difference(&checked).cloned().collect()
    }

    /// Fails the test unless `answer` is a response the document lists for `method` on
    /// `template` (`/api/agents/{id}`): its status, its content type, and its body (each
    /// event's data for a stream) valid against the schema.
    pub(crate) fn check(&self, method: &Method, template: &str, answer: &Answer) {
        let label = format!("{method} {template} -> {}", answer.status.as_u16());
        let operation_pointer = format!(
            "/paths/{}/{}",
            escape(template),
            method.as_str().to_ascii_lowercase()
        );
        assert!(
            self.document.pointer(&operation_pointer).is_some(),
            "{label}: not in the document"
        );
        let status = answer.status.as_u16().to_string();
        let mut response_pointer = format!("{operation_pointer}/responses/{status}");
        let response = self
            .document
            .pointer(&response_pointer)
            .unwrap_or_else(|| panic!("{label}: status not documented; body {}", answer.text));
        if let Some(Value::String(reference)) = response.get("$ref") {
            response_pointer = reference.trim_start_matches('#').to_owned();
        }
        let media_type = answer
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let content_pointer = format!("{response_pointer}/content/{}", escape(&media_type));
        assert!(
            self.document.pointer(&content_pointer).is_some(),
            "{label}: content type {:?} not documented",
            answer.content_type
        );
        match media_type.as_str() {
            "application/json" => {
                self.validate(&format!("{content_pointer}/schema"), &answer.json(), &label);
            }
            "text/event-stream" => {
                let schema = format!("{content_pointer}/schema/properties/data/contentSchema");
                let chunks = super::sse::parse_events(&answer.text);
                assert!(!chunks.is_empty(), "{label}: an empty stream");
                for chunk in &chunks {
                    self.validate(&schema, chunk, &label);
                }
            }
            "text/plain" => {
                assert!(!answer.text.is_empty(), "{label}: empty text");
            }
            other => panic!("{label}: no check for {other}"),
        }
        self.checked
            .lock()
            .unwrap()
            .insert((method.as_str().to_owned(), template.to_owned()));
    }

    /// Validates `value` against the schema at `pointer` in the document (its `$ref`s resolved
    /// within the document).
    fn validate(&self, pointer: &str, value: &Value, label: &str) {
        let mut validators = self.validators.lock().unwrap();
        let validator = validators.entry(pointer.to_owned()).or_insert_with(|| {
            let schema = self
                .document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{label}: no schema at {pointer}"));
            let mut root = self.document.clone();
            match schema.get("$ref") {
                Some(reference) => root["$ref"] = reference.clone(),
                None => root["$ref"] = Value::String(format!("#{pointer}")),
            }
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("{label}: schema at {pointer} does not compile: {e}"))
        });
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{label}: the body does not match the document:\n{}\nbody: {value}",
            errors.join("\n")
        );
    }
}

/// How a request authenticates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    Key,
    Wrong,
    None,
}

/// Sends one request (`path` relative to the daemon's root) and returns the raw answer.
pub(crate) async fn send(
    http: &reqwest::Client,
    root: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    auth: Auth,
) -> Answer {
    let mut request = http.request(method, format!("{root}{path}"));
    request = match auth {
        Auth::Key => request.bearer_auth(KEY),
        Auth::Wrong => request.bearer_auth("not-the-key"),
        Auth::None => request,
    };
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    Answer {
        status,
        content_type,
        text,
    }
}
