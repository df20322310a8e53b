//! Streamed chat (`stream: true`) end to end against the mock model: the SSE framing, chunk
//! order through server and client tool loops, and upstream deltas cut or mislabelled.

use crate::common;

use agentd_mock::{Reply, ScriptedCall};
use common::sse::*;
use common::{TestDaemon, assert_history_valid, say, tool};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn text_stream_arrives_in_chunks_and_ends_with_usage() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock
        .push(Reply::text("Hello there, friend").split_chars());
    let s = stream_chat(&d, &session, say("hi")).await;
    assert_finished(&s, "stop");
    let texts = s.chunks.iter().filter(|c| kind(c) == "text").count();
    assert!(texts > 1, "several text chunks expected: {}", s.raw);
    assert_eq!(text_of(&s.chunks), "Hello there, friend");
    assert_eq!(delta(&s.chunks[0])["role"], "assistant");
    for c in &s.chunks[..s.chunks.len() - 1] {
        assert!(c["usage"].is_null(), "usage only on the last chunk: {c}");
    }
    assert!(s.raw.starts_with("data: "), "{:?}", s.raw);
    let history = d.history(&session).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["content"], "Hello there, friend");
}

fn echo_then_text_script(d: &TestDaemon) {
    d.mock.push(
        Reply::tool_calls(vec![ScriptedCall::new("echo", json!({"text": "ping"}))])
            .with_text("Let me check."),
    );
    d.mock.push(Reply::text("The echo said ping."));
}

#[tokio::test]
async fn server_tool_loop_streams_in_order_and_stores_what_a_plain_turn_stores() {
    let d = TestDaemon::start().await;
    let streamed_session = d.session().await;
    echo_then_text_script(&d);
    let mut body = say("echo ping please");
    body["tools"] = json!([tool("echo")]);
    let s = stream_chat(&d, &streamed_session, body.clone()).await;
    assert_finished(&s, "stop");
    assert_eq!(
        shape(&s.chunks),
        ["text", "calls", "tool", "text", "final"],
        "{}",
        s.raw
    );
    let calls_chunk = s.chunks.iter().find(|c| kind(c) == "calls").unwrap();
    let call = &delta(calls_chunk)["tool_calls"][0];
    assert_eq!(delta(calls_chunk)["role"], "assistant");
    assert_eq!(call["function"]["name"], "echo");
    assert_eq!(call["index"], 0);
    let tool = tool_chunks(&s.chunks)[0];
    assert_eq!(delta(tool)["tool_call_id"], call["id"]);
    assert_eq!(delta(tool)["name"], "echo");
    assert_eq!(tool_content(tool), json!({"echo": {"text": "ping"}}));
    assert_eq!(text_of(&s.chunks), "Let me check.The echo said ping.");

    let plain_session = d.session().await;
    echo_then_text_script(&d);
    let (status, r) = d.chat(&plain_session, body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let streamed = d.history(&streamed_session).await;
    let plain = d.history(&plain_session).await;
    assert_history_valid(&streamed);
    assert_eq!(streamed.len(), 4);
    assert_eq!(comparable(&streamed), comparable(&plain));
}

#[tokio::test]
async fn parallel_calls_each_get_a_tool_chunk() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("echo", json!({"text": "one"})),
        ScriptedCall::new("echo", json!({"text": "two"})),
    ]));
    d.mock.push(Reply::text("both done"));
    let mut body = say("twice");
    body["tools"] = json!([tool("echo")]);
    let s = stream_chat(&d, &session, body).await;
    assert_finished(&s, "stop");
    let tools = tool_chunks(&s.chunks);
    assert_eq!(tools.len(), 2, "{}", s.raw);
    let mut contents: Vec<Value> = tools.iter().map(|c| tool_content(c)).collect();
    contents.sort_by_key(|v| v.to_string());
    assert_eq!(
        contents,
        [
            json!({"echo": {"text": "one"}}),
            json!({"echo": {"text": "two"}})
        ]
    );
    let calls_chunk = s.chunks.iter().find(|c| kind(c) == "calls").unwrap();
    let indexes: Vec<&Value> = delta(calls_chunk)["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["index"])
        .collect();
    assert_eq!(indexes, [&json!(0), &json!(1)]);
    let history = d.history(&session).await;
    assert_eq!(history.len(), 5);
    assert_history_valid(&history);
}

#[tokio::test]
async fn tool_call_split_one_character_per_delta_is_assembled() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(
        Reply::tool_calls(vec![ScriptedCall::new(
            "echo",
            json!({"text": "split me", "n": 42}),
        )])
        .with_text("ok")
        .split_chars(),
    );
    d.mock.push(Reply::text("fine"));
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    let s = stream_chat(&d, &session, body).await;
    assert_finished(&s, "stop");
    let tools = tool_chunks(&s.chunks);
    assert_eq!(tools.len(), 1, "{}", s.raw);
    assert_eq!(
        tool_content(tools[0]),
        json!({"echo": {"text": "split me", "n": 42}})
    );
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn calls_that_all_claim_index_zero_are_kept_apart() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(
        Reply::tool_calls(vec![
            ScriptedCall::new("echo", json!({"text": "first"})),
            ScriptedCall::new("echo", json!({"text": "second"})),
        ])
        .all_index_zero(),
    );
    d.mock.push(Reply::text("done"));
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    let s = stream_chat(&d, &session, body).await;
    assert_finished(&s, "stop");
    let calls_chunk = s.chunks.iter().find(|c| kind(c) == "calls").unwrap();
    assert_eq!(
        delta(calls_chunk)["tool_calls"].as_array().unwrap().len(),
        2
    );
    let mut contents: Vec<Value> = tool_chunks(&s.chunks)
        .iter()
        .map(|c| tool_content(c))
        .collect();
    contents.sort_by_key(|v| v.to_string());
    assert_eq!(
        contents,
        [
            json!({"echo": {"text": "first"}}),
            json!({"echo": {"text": "second"}})
        ]
    );
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn tool_calls_reported_with_finish_reason_stop_still_run() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(
        Reply::tool_calls(vec![ScriptedCall::new("echo", json!({"text": "x"}))])
            .wrong_finish_reason(),
    );
    d.mock.push(Reply::text("after the tool"));
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    let s = stream_chat(&d, &session, body).await;
    assert_finished(&s, "stop");
    assert_eq!(tool_chunks(&s.chunks).len(), 1, "{}", s.raw);
    assert_eq!(text_of(&s.chunks), "after the tool");
    assert_eq!(d.mock.requests().len(), 2);
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn client_tool_calls_are_sent_once_and_end_the_stream() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let weather = json!({"type": "function", "function": {"name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "get_weather",
        json!({"city": "Oslo"}),
    )]));
    let mut body = say("weather?");
    body["tools"] = json!([weather]);
    let s = stream_chat(&d, &session, body.clone()).await;
    assert_finished(&s, "tool_calls");
    assert_eq!(shape(&s.chunks), ["calls", "final"], "{}", s.raw);
    let calls: Vec<&Value> = s
        .chunks
        .iter()
        .filter_map(|c| delta(c)["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "each call is sent once: {}", s.raw);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let call_id = calls[0]["id"].as_str().unwrap().to_owned();

    // The client answers; the streamed turn resumes from the result.
    d.mock.push(Reply::text("Sunny in Oslo."));
    body["messages"] = json!([{"role": "tool", "tool_call_id": call_id, "content": "sunny"}]);
    let s = stream_chat(&d, &session, body).await;
    assert_finished(&s, "stop");
    assert_eq!(text_of(&s.chunks), "Sunny in Oslo.");
    let history = d.history(&session).await;
    assert_eq!(history.len(), 4);
    assert_history_valid(&history);
}
