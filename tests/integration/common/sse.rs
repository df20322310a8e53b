//! Reading streamed chats in tests: sending `stream: true`, parsing the SSE body into its JSON
//! chunks, and naming what each chunk carries.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{KEY, TestDaemon};

/// A finished stream: status, content type, the parsed `data:` chunks and the raw body.
pub(crate) struct Streamed {
    pub status: StatusCode,
    pub content_type: String,
    pub chunks: Vec<Value>,
    pub raw: String,
}

/// Parses a complete SSE body into its `data:` payloads; comment lines are skipped and every
/// payload must be JSON.
pub(crate) fn parse_events(raw: &str) -> Vec<Value> {
    let mut chunks = Vec::new();
    for block in raw.split("\n\n").filter(|b| !b.trim().is_empty()) {
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let data = line
                .strip_prefix("data:")
                .unwrap_or_else(|| panic!("unexpected SSE line {line:?} in {raw:?}"))
                .trim_start();
            let value: Value = serde_json::from_str(data)
                .unwrap_or_else(|e| panic!("data line is not JSON ({e}): {data:?}"));
            chunks.push(value);
        }
    }
    chunks
}

pub(crate) fn stream_request(
    d: &TestDaemon,
    session: &str,
    mut body: Value,
) -> reqwest::RequestBuilder {
    body["stream"] = json!(true);
    d.http
        .post(d.url(&format!("/sessions/{session}/chat")))
        .bearer_auth(KEY)
        .json(&body)
}

pub(crate) async fn stream_chat(d: &TestDaemon, session: &str, body: Value) -> Streamed {
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        stream_request(d, session, body).send(),
    )
    .await
    .expect("stream starts in time")
    .expect("request");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let raw = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("stream ends in time")
        .expect("body");
    let chunks = if content_type.starts_with("text/event-stream") {
        parse_events(&raw)
    } else {
        Vec::new()
    };
    Streamed {
        status,
        content_type,
        chunks,
        raw,
    }
}

pub(crate) fn delta(chunk: &Value) -> &Value {
    &chunk["choices"][0]["delta"]
}

/// What a chunk carries, in one word: `text`, `calls`, `tool`, `final` or `error`.
pub(crate) fn kind(chunk: &Value) -> &'static str {
    let d = delta(chunk);
    if chunk.get("error").is_some_and(|e| !e.is_null()) {
        "error"
    } else if !chunk["choices"][0]["finish_reason"].is_null() {
        "final"
    } else if d["role"] == "tool" {
        "tool"
    } else if d["tool_calls"].is_array() {
        "calls"
    } else if d["content"].is_string() {
        "text"
    } else {
        "other"
    }
}

/// The chunk kinds with consecutive repeats of `text` folded into one.
pub(crate) fn shape(chunks: &[Value]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for c in chunks {
        let k = kind(c);
        if k == "text" && out.last() == Some(&"text") {
            continue;
        }
        out.push(k);
    }
    out
}

pub(crate) fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| delta(c)["content"].as_str().filter(|_| kind(c) == "text"))
        .collect()
}

pub(crate) fn tool_chunks(chunks: &[Value]) -> Vec<&Value> {
    chunks.iter().filter(|c| kind(c) == "tool").collect()
}

/// A tool chunk's content parsed as JSON (it is sent as a string, like the history stores it).
pub(crate) fn tool_content(chunk: &Value) -> Value {
    let content = &delta(chunk)["content"];
    match content.as_str() {
        Some(text) => serde_json::from_str(text).unwrap_or(Value::String(text.to_owned())),
        None => content.clone(),
    }
}

pub(crate) fn assert_well_formed(s: &Streamed) {
    assert_eq!(s.status, StatusCode::OK, "{}", s.raw);
    assert!(
        s.content_type.starts_with("text/event-stream"),
        "content type {:?}",
        s.content_type
    );
    assert!(!s.raw.contains("[DONE]"), "no [DONE] line: {}", s.raw);
    assert!(!s.chunks.is_empty(), "no chunks: {:?}", s.raw);
    let (_, rest) = s.chunks.split_last().unwrap();
    for c in rest {
        assert!(
            c["choices"][0]["finish_reason"].is_null(),
            "finish_reason before the last chunk: {c}"
        );
        assert!(c["id"].is_string() && c["created_at"].is_string(), "{c}");
    }
}

pub(crate) fn assert_finished(s: &Streamed, finish: &str) {
    assert_well_formed(s);
    let last = s.chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], finish, "{last}");
    assert!(
        last["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{last}"
    );
    assert!(last.get("error").is_none_or(Value::is_null), "{last}");
}

/// Role, content and tool-call names/arguments of each history entry (ids and times dropped).
pub(crate) fn comparable(history: &[Value]) -> Vec<Value> {
    history
        .iter()
        .map(|e| {
            let calls: Vec<Value> = e["tool_calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| json!([c["function"]["name"], c["function"]["arguments"]]))
                        .collect()
                })
                .unwrap_or_default();
            json!({"role": e["role"], "content": e["content"], "name": e["name"], "calls": calls})
        })
        .collect()
}

pub(crate) fn assert_error_end(s: &Streamed) -> Value {
    assert_well_formed(s);
    let last = s.chunks.last().unwrap();
    assert_eq!(kind(last), "error", "{}", s.raw);
    let error = &last["error"];
    assert!(error["message"].is_string(), "{last}");
    assert!(
        error["code"].is_string() || error["type"].is_string(),
        "{last}"
    );
    error.clone()
}
