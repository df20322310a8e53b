//! Requests a strict OpenAI endpoint refuses are refused with 400 and OpenAI's error shape.

use serde_json::{Value, json};

use super::{post, send_email_tool, start};
use crate::request_body::RequestBody;
use crate::wire;

fn call(id: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": "send_email", "arguments": "{}"}})
}

fn refusal(body: &Value) -> String {
    let text = body.to_string();
    let parsed = RequestBody::parse(text.as_bytes()).expect("the body is JSON");
    match wire::read(&parsed) {
        Ok(_) => panic!("accepted: {body}"),
        Err(refusal) => refusal.message,
    }
}

#[test]
fn well_formed_conversations_with_tool_rounds_pass() {
    let body = json!({"model": "m", "tools": [send_email_tool()], "tool_choice": "required",
    "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 10,
    "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": null, "tool_calls": [call("c1"), call("c2")]},
        {"role": "tool", "tool_call_id": "c2", "name": "send_email", "content": "ok"},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "again"}
    ]});
    let text = body.to_string();
    let parsed = RequestBody::parse(text.as_bytes()).expect("the body is JSON");
    let request = wire::read(&parsed).expect("valid");
    assert!(request.stream && request.include_usage);
    assert_eq!(request.tool_choice, wire::ToolChoice::Required);
}

#[test]
fn broken_conversations_are_refused_with_openai_wording() {
    let user = json!({"role": "user", "content": "hi"});
    let asks =
        json!({"role": "assistant", "content": null, "tool_calls": [call("c1"), call("c2")]});
    let answer = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "ok"});
    let cases = [
        (
            json!([user, asks, answer("c1")]),
            "did not have response messages: c2",
        ),
        (
            json!([user, asks, answer("c1"), user]),
            "did not have response messages: c2",
        ),
        (
            json!([user, answer("c1")]),
            "must be a response to a preceding message",
        ),
        (
            json!([user, asks, answer("c1"), answer("c2"), answer("c1")]),
            "must be a response",
        ),
        (
            json!([{"role": "user", "content": ["plain", "strings"]}]),
            "content",
        ),
        (json!([{"role": "user", "content": null}]), "content"),
        (json!([{"role": "assistant", "content": null}]), "content"),
        (
            json!([user, {"role": "assistant", "content": "x", "tool_calls": []}]),
            "minimum length 1",
        ),
        (
            json!([user, {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}]),
            "string 'arguments'",
        ),
        (
            json!([{"role": "user", "content": "hi", "created_at": "2025"}]),
            "'created_at' was unexpected",
        ),
        (json!([{"role": "robot", "content": "hi"}]), "role"),
    ];
    for (messages, expected) in cases {
        let body = json!({"model": "m", "messages": messages});
        let message = refusal(&body);
        assert!(message.contains(expected), "{body}: {message}");
    }
}

#[test]
fn bad_parameters_and_tools_are_refused() {
    let messages = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"messages": messages}), "model"),
        (json!({"model": "m", "messages": []}), "empty array"),
        (
            json!({"model": "m", "messages": messages, "session_id": "s"}),
            "Unrecognized request argument supplied: session_id",
        ),
        (
            json!({"model": "m", "messages": messages, "tools": []}),
            "tools",
        ),
        (
            json!({"model": "m", "messages": messages, "tools": [{"name": "f"}]}),
            "each tool",
        ),
        (
            json!({"model": "m", "messages": messages, "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            "pattern",
        ),
        (
            json!({"model": "m", "messages": messages, "tool_choice": "auto"}),
            "only allowed when 'tools'",
        ),
        (
            json!({"model": "m", "messages": messages, "tools": [send_email_tool()],
            "tool_choice": {"type": "function", "function": {"name": "other"}}}),
            "no function named 'other'",
        ),
        (
            json!({"model": "m", "messages": messages, "stream_options": {"include_usage": true}}),
            "only allowed when 'stream'",
        ),
    ];
    for (body, expected) in cases {
        let message = refusal(&body);
        assert!(message.contains(expected), "{body}: {message}");
    }
}

#[tokio::test]
async fn refusals_are_400_in_openai_error_shape_and_keep_the_script() {
    let mock = start().await;
    mock.push(crate::Reply::text("kept"));
    let refused = post(
        &mock,
        &json!({"model": "m", "messages": [{"role": "user", "content": "x", "extra": 1}]}),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["type"], "invalid_request_error");
    assert_eq!(refused.body["error"]["param"], "messages[0]");
    assert_eq!(mock.pending_replies(), 1);

    let not_json = reqwest_post_raw(&mock, "{not json").await;
    assert_eq!(not_json.0, 400);
    assert!(
        not_json.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("parse the JSON"))
    );
    assert_eq!(mock.requests()[1], json!("{not json"));
}

pub(super) async fn reqwest_post_raw(mock: &crate::MockModel, body: &'static str) -> (u16, Value) {
    let response = super::client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON error"))
}
