//! Streamed chat (`stream: true`) end to end against the mock model: the SSE framing, chunk
//! order through server tool loops, upstream deltas cut or mislabelled, upstream failures,
//! and a client that hangs up in the middle of a tool call.

mod common;

use std::time::{Duration, Instant};

use agentd::mock_model::{Reply, ScriptedCall};
use common::{KEY, TestDaemon, assert_history_valid, say, tool};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A finished stream: status, content type, the parsed `data:` chunks and the raw body.
struct Streamed {
    status: StatusCode,
    content_type: String,
    chunks: Vec<Value>,
    raw: String,
}

/// Parses a complete SSE body into its `data:` payloads; comment lines are skipped and every
/// payload must be JSON.
fn parse_events(raw: &str) -> Vec<Value> {
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

fn stream_request(d: &TestDaemon, session: &str, mut body: Value) -> reqwest::RequestBuilder {
    body["stream"] = json!(true);
    d.http
        .post(d.url(&format!("/sessions/{session}/chat")))
        .bearer_auth(KEY)
        .json(&body)
}

async fn stream_chat(d: &TestDaemon, session: &str, body: Value) -> Streamed {
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

fn delta(chunk: &Value) -> &Value {
    &chunk["choices"][0]["delta"]
}

/// What a chunk carries, in one word: `text`, `calls`, `tool`, `final` or `error`.
fn kind(chunk: &Value) -> &'static str {
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
fn shape(chunks: &[Value]) -> Vec<&'static str> {
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

fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| delta(c)["content"].as_str().filter(|_| kind(c) == "text"))
        .collect()
}

fn tool_chunks(chunks: &[Value]) -> Vec<&Value> {
    chunks.iter().filter(|c| kind(c) == "tool").collect()
}

/// A tool chunk's content parsed as JSON (it is sent as a string, like the history stores it).
fn tool_content(chunk: &Value) -> Value {
    let content = &delta(chunk)["content"];
    match content.as_str() {
        Some(text) => serde_json::from_str(text).unwrap_or(Value::String(text.to_owned())),
        None => content.clone(),
    }
}

fn assert_well_formed(s: &Streamed) {
    assert_eq!(s.status, StatusCode::OK, "{}", s.raw);
    assert!(
        s.content_type.starts_with("text/event-stream"),
        "content type {:?}",
        s.content_type
    );
    assert!(!s.raw.contains("[DONE]"), "no [DONE] line: {}", s.raw);
    assert!(!s.chunks.is_empty(), "no chunks: {:?}", s.raw);
    let (last, rest) = s.chunks.split_last().unwrap();
    for c in rest {
        assert!(
            c["choices"][0]["finish_reason"].is_null(),
            "finish_reason before the last chunk: {c}"
        );
        assert!(c["id"].is_string() && c["created_at"].is_string(), "{c}");
    }
    let _ = last;
}

fn assert_finished(s: &Streamed, finish: &str) {
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
fn comparable(history: &[Value]) -> Vec<Value> {
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

fn assert_error_end(s: &Streamed) -> Value {
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

#[tokio::test]
async fn upstream_dying_mid_stream_ends_with_an_error_chunk() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(
        Reply::text("this answer will be cut off somewhere in the middle")
            .die_after(3)
            .chunk_delay(Duration::from_millis(5)),
    );
    let s = stream_chat(&d, &session, say("hi")).await;
    assert_error_end(&s);
    assert!(
        s.chunks.iter().any(|c| kind(c) == "text"),
        "text before the failure is streamed: {}",
        s.raw
    );
    assert_history_valid(&d.history(&session).await);
    let (status, r) = d.chat(&session, say("again")).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn a_tool_call_cut_off_mid_stream_never_runs() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(
        Reply::tool_calls(vec![ScriptedCall::new(
            "echo",
            json!({"text": "never sent whole"}),
        )])
        .with_text("ok")
        .split_chars()
        .die_after(8),
    );
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    let s = stream_chat(&d, &session, body).await;
    assert_error_end(&s);
    assert_eq!(shape(&s.chunks), ["text", "error"], "{}", s.raw);
    assert_eq!(d.mock.requests().len(), 1, "no second model call");
    let history = d.history(&session).await;
    assert_history_valid(&history);
    assert!(history.iter().all(|e| e["role"] != "tool"), "{history:?}");
    let (status, r) = d.chat(&session, say("again")).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
}

#[tokio::test]
async fn upstream_failing_before_any_output_is_a_plain_502() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    for _ in 0..3 {
        d.mock
            .push(Reply::error(500, json!({"error": {"message": "boom"}})));
    }
    let s = stream_chat(&d, &session, say("hi")).await;
    assert_eq!(s.status, StatusCode::BAD_GATEWAY, "{}", s.raw);
    assert!(
        s.content_type.starts_with("application/json"),
        "{}",
        s.content_type
    );
    let body: Value = serde_json::from_str(&s.raw).unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(d.mock.requests().len(), 3);
    assert_history_valid(&d.history(&session).await);
    let (status, r) = d.chat(&session, say("again")).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
}

#[tokio::test]
async fn upstream_failing_after_a_tool_ran_ends_with_an_error_chunk() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "echo",
        json!({"text": "x"}),
    )]));
    for _ in 0..3 {
        d.mock
            .push(Reply::error(500, json!({"error": {"message": "boom"}})));
    }
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    let s = stream_chat(&d, &session, body).await;
    assert_error_end(&s);
    assert_eq!(shape(&s.chunks), ["calls", "tool", "error"], "{}", s.raw);
    let history = d.history(&session).await;
    assert_history_valid(&history);
    assert_eq!(history.len(), 3);
    let (status, r) = d.chat(&session, say("again")).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
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

#[tokio::test]
async fn client_hanging_up_while_text_streams_frees_the_session() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(
        Reply::text("one two three four five six seven eight nine ten eleven twelve")
            .chunk_delay(Duration::from_millis(300)),
    );
    let mut response = stream_request(&d, &session, say("count"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    // Text arrives as it is generated: the first words well before the whole answer (~3.6s).
    let first = tokio::time::timeout(Duration::from_millis(1500), response.chunk())
        .await
        .expect("first chunk long before the answer is complete")
        .expect("read")
        .expect("stream open");
    assert!(String::from_utf8_lossy(&first).contains("\"content\""));
    let hung_up = Instant::now();
    drop(response);
    let mut next = None;
    while hung_up.elapsed() < Duration::from_secs(3) {
        let (status, r) = d.chat(&session, say("still there?")).await;
        if status != StatusCode::CONFLICT {
            next = Some((status, r));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, r) = next.expect("the session lock is released soon after the hang-up");
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let history = d.history(&session).await;
    assert_history_valid(&history);
    assert_eq!(history.last().unwrap()["role"], "assistant");
}

#[tokio::test]
async fn client_hanging_up_mid_tool_cancels_the_call_and_frees_the_session() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "slow_long",
        json!({"ms": 8000}),
    )]));
    let mut body = say("take your time");
    body["tools"] = json!([tool("slow_long")]);
    let mut response = stream_request(&d, &session, body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let mut raw = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !raw.contains("\"tool_calls\"") {
        assert!(Instant::now() < deadline, "no tool_calls chunk: {raw}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("chunk in time")
            .expect("read")
            .expect("stream still open");
        raw.push_str(&String::from_utf8_lossy(&chunk));
    }
    let hung_up = Instant::now();
    drop(response);

    // The session frees up well before the 8s sleep would have ended.
    let mut freed = None;
    while hung_up.elapsed() < Duration::from_secs(4) {
        let history = d.history(&session).await;
        if history.iter().any(|e| e["role"] == "tool") {
            freed = Some(history);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let history = freed.expect("the cancelled call gets a result soon after the hang-up");
    assert_history_valid(&history);
    let result = history.iter().find(|e| e["role"] == "tool").unwrap();
    let content: Value = serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["error"]["kind"], "cancelled", "{content}");

    let mut next = None;
    while hung_up.elapsed() < Duration::from_secs(5) {
        let (status, r) = d.chat(&session, say("still there?")).await;
        if status != StatusCode::CONFLICT {
            next = Some((status, r));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, r) = next.expect("the session lock is released");
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert!(hung_up.elapsed() < Duration::from_secs(5));
    assert_history_valid(&d.history(&session).await);
}
