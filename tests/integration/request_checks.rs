//! Requests the OpenAPI document describes one way and agentd once treated another, found by
//! the schemathesis contract run (tests/contract): what agentd now refuses with 422 before any
//! model call, and what it now accepts.

use crate::common;

use common::{TestDaemon, say, tool};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `loc` of a 422's first problem.
fn loc(status: StatusCode, body: &Value) -> String {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    body["error"]["details"][0]["loc"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_empty_agent_list_is_refused_and_an_empty_user_list_removes_the_users() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let path = format!("/sessions/{session}");
    let (s, body) = d
        .send(reqwest::Method::PATCH, &path, Some(json!({"agents": []})))
        .await;
    assert_eq!(loc(s, &body), "agents");
    let (s, body) = d
        .send(reqwest::Method::PATCH, &path, Some(json!({"users": []})))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["users"], json!([]));
    assert_eq!(body["kind"], "single_agent");
    let (s, body) = d.get(&path).await;
    assert_eq!((s, body["users"].clone()), (StatusCode::OK, json!([])));
    assert_eq!(body["agents"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn integer_fields_take_whole_numbers_written_as_floats() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let (s, body) = d
        .send(
            reqwest::Method::PATCH,
            &format!("/sessions/{session}"),
            Some(json!({"token_budget": 4000.0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["token_budget"], json!(4000));
    let mut chat = say("Hello");
    chat["max_tokens"] = json!(50.0);
    chat["seed"] = json!(-7.0);
    chat["max_steps"] = json!(2.0);
    let (s, body) = d.chat(&session, chat).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let sent = d.mock.last_request().expect("the model was called");
    assert_eq!(
        (sent["max_tokens"].clone(), sent["seed"].clone()),
        (json!(50), json!(-7))
    );
    for (field, value) in [
        ("max_tokens", json!(2.5)),
        ("max_steps", json!(-1.0)),
        ("seed", json!(1e30)),
    ] {
        let mut chat = say("Hello");
        chat[field] = value;
        let (s, body) = d.chat(&session, chat).await;
        assert_eq!(loc(s, &body), field);
    }
}

#[tokio::test]
async fn messages_no_model_takes_are_refused_before_the_model_is_called() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let call = |id: &str, kind: &str| json!({"id": id, "type": kind, "function": {"name": "echo", "arguments": "{}"}});
    let cases = [
        (json!([{"role": "user"}]), "messages.0.content"),
        (
            json!([{"role": "user", "content": null}]),
            "messages.0.content",
        ),
        (
            json!([{"role": "system", "content": []}]),
            "messages.0.content",
        ),
        (json!([{"role": "assistant"}]), "messages.0.content"),
        (
            json!([{"role": "user", "content": "hi", "tool_call_id": "c1"}]),
            "messages.0.tool_call_id",
        ),
        (
            json!([{"role": "user", "content": "hi", "tool_calls": [call("c1", "function")]}]),
            "messages.0.tool_calls",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [call("c1", "custom")]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]),
            "messages.0.tool_calls.0.type",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [call("c1", "function")]}, {"role": "tool", "tool_call_id": "c1", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]),
            "messages.1.content.0",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [call("c1", "function"), call("c2", "function")]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}, {"role": "user", "content": "next"}]),
            "messages.0.tool_calls",
        ),
        (
            json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": [call("c1", "function")]}]),
            "messages.1.tool_calls",
        ),
    ];
    for (messages, want) in cases {
        let (s, body) = d.chat(&session, json!({"messages": messages})).await;
        assert_eq!(loc(s, &body), want, "{messages}");
    }
    assert_eq!(d.mock.request_count(), 0, "the model was called");
    // The same shapes, well formed, reach the model.
    let messages = json!([
        {"role": "user", "content": [{"type": "text", "text": "run it"}]},
        {"role": "assistant", "content": null, "tool_calls": [call("c1", "function")]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "done"}]},
        {"role": "user", "content": "thanks"}
    ]);
    let (s, body) = d.chat(&session, json!({"messages": messages})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(d.mock.request_count(), 1);
}

#[tokio::test]
async fn a_tool_choice_no_offered_tool_satisfies_is_refused() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let with_choice = |choice: Value, tools: Value| {
        let mut chat = say("Hello");
        chat["tool_choice"] = choice;
        chat["tools"] = tools;
        chat
    };
    let forced = json!({"type": "function", "function": {"name": "send_email"}});
    let (s, body) = d
        .chat(&session, with_choice(forced.clone(), json!([tool("echo")])))
        .await;
    assert_eq!(loc(s, &body), "tool_choice");
    let (s, body) = d
        .chat(&session, with_choice(json!("required"), json!([])))
        .await;
    assert_eq!(loc(s, &body), "tool_choice");
    assert_eq!(d.mock.request_count(), 0, "the model was called");
    // `auto` with nothing offered is not sent; a forced tool that is offered is.
    let (s, body) = d
        .chat(&session, with_choice(json!("auto"), json!([])))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert!(d.mock.last_request().unwrap().get("tool_choice").is_none());
    let forced = json!({"type": "function", "function": {"name": "echo"}});
    let (s, body) = d
        .chat(&session, with_choice(forced.clone(), json!([tool("echo")])))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(d.mock.requests()[1]["tool_choice"], forced);
}

#[tokio::test]
async fn a_decision_reason_is_bounded_in_characters() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let decide = |reason: String| json!({"decision": "deny", "digest": "0", "reason": reason});
    let path = format!("/sessions/{session}/approvals/call_1");
    // 1000 two-byte characters pass the bound (and find no held call).
    let (s, body) = d.post(&path, decide("é".repeat(1000))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body) = d.post(&path, decide("é".repeat(1001))).await;
    assert_eq!(loc(s, &body), "reason");
}
