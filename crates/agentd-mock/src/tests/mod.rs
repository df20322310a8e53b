//! HTTP-level tests of the mock model, with a real client and an SSE reader of their own (they
//! must not trust the mock's code to check the mock).

mod control;
mod defaults;
mod parse_errors;
mod parsing;
mod scripted;
mod streaming;
mod validation;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{MockConfig, MockModel};

pub(super) fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub(super) async fn start() -> MockModel {
    MockModel::start(MockConfig::default())
        .await
        .expect("mock starts on a free port")
}

/// A minimal valid request with one user message.
pub(super) fn user_request(text: &str) -> Value {
    json!({"model": "test-model", "messages": [{"role": "user", "content": text}]})
}

pub(super) fn send_email_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "send_email",
        "description": "Send an e-mail",
        "parameters": {"type": "object", "required": ["to", "subject", "body"], "properties": {
            "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}
        }}
    }})
}

pub(super) struct Answered {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub(super) async fn post(mock: &MockModel, body: &Value) -> Answered {
    let response = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(body)
        .send()
        .await
        .expect("request reaches the mock");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body arrives");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answered {
        status,
        headers,
        body,
    }
}

/// The first choice's message of a successful non-streaming answer.
pub(super) async fn message(mock: &MockModel, body: &Value) -> Value {
    let answered = post(mock, body).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    answered.body["choices"][0]["message"].clone()
}

/// What an SSE answer delivered before it ended.
#[derive(Debug, Default)]
pub(super) struct Streamed {
    pub chunks: Vec<Value>,
    pub saw_done: bool,
    /// The body ended with a transport error (connection cut).
    pub cut: bool,
}

pub(super) async fn post_stream(mock: &MockModel, body: &Value) -> Streamed {
    let response = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(body)
        .send()
        .await
        .expect("request reaches the mock");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap_or("");
    assert_eq!(content_type, "text/event-stream");
    let mut raw = Vec::new();
    let mut streamed = Streamed::default();
    let mut body = response.bytes_stream();
    while let Some(piece) = body.next().await {
        match piece {
            Ok(bytes) => raw.extend_from_slice(&bytes),
            Err(_) => {
                streamed.cut = true;
                break;
            }
        }
    }
    let text = String::from_utf8(raw).expect("SSE is UTF-8");
    for event in text.split("\n\n").filter(|event| !event.is_empty()) {
        let data = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("event without data: {event:?}"));
        assert!(!streamed.saw_done, "event after [DONE]: {data}");
        if data == "[DONE]" {
            streamed.saw_done = true;
        } else {
            streamed
                .chunks
                .push(serde_json::from_str(data).expect("chunk is JSON"));
        }
    }
    streamed
}

/// A streamed answer put back together the way a careful client does: tool calls by index,
/// and a new call whenever a delta brings an id different from the call at that index.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Assembled {
    pub text: String,
    /// (id, name, arguments)
    pub calls: Vec<(String, String, String)>,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
}

pub(super) fn assemble(chunks: &[Value]) -> Assembled {
    let mut out = Assembled::default();
    // index -> position in out.calls of the call currently receiving that index's deltas
    let mut current: Vec<(u64, usize)> = Vec::new();
    for chunk in chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
            out.usage = Some(usage.clone());
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            out.finish_reason = Some(reason.to_owned());
        }
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str() {
            out.text.push_str(text);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"]
                .as_u64()
                .expect("tool call delta has an index");
            let slot = current.iter().position(|(have, _)| *have == index);
            let target = match (call["id"].as_str(), slot) {
                (Some(id), Some(slot)) if out.calls[current[slot].1].0 != id => None,
                (_, Some(slot)) => Some(current[slot].1),
                _ => None,
            };
            let position = target.unwrap_or_else(|| {
                let id = call["id"].as_str().expect("a new call starts with its id");
                out.calls
                    .push((id.to_owned(), String::new(), String::new()));
                let position = out.calls.len() - 1;
                current.retain(|(have, _)| *have != index);
                current.push((index, position));
                position
            });
            if let Some(name) = call["function"]["name"].as_str() {
                out.calls[position].1.push_str(name);
            }
            if let Some(arguments) = call["function"]["arguments"].as_str() {
                out.calls[position].2.push_str(arguments);
            }
        }
    }
    out
}
