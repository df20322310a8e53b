//! Streamed chat when things go wrong: upstream failing before or during the stream, a tool
//! call cut off mid-stream, and a client that hangs up while text streams or a tool runs.

use crate::common;

use std::time::{Duration, Instant};

use agentd_mock::{Reply, ScriptedCall};
use common::sse::*;
use common::{TestDaemon, assert_history_valid, say, tool};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

#[tokio::test]
async fn keep_alive_comments_flow_at_the_configured_interval_while_a_tool_runs() {
    let d = TestDaemon::start_with(common::Options {
        sets: vec!["server.sse_keep_alive=100ms".into()],
        ..Default::default()
    })
    .await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "slow_long",
        json!({"ms": 700}),
    )]));
    d.mock.push(Reply::text("rested"));
    let mut body = say("take your time");
    body["tools"] = json!([tool("slow_long")]);
    let response = stream_request(&d, &session, body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let raw = response.text().await.expect("body");
    let comments = raw.lines().filter(|line| line.starts_with(':')).count();
    // 700 ms of tool time at one comment per 100 ms; the default (10 s) would send none.
    assert!((3..=10).contains(&comments), "{comments} comments in {raw}");
    assert!(raw.contains("rested"), "{raw}");
}

/// A model that keeps its stream alive without ever finishing (each chunk well within
/// `provider.read_timeout`) cannot hold a turn past `limits.max_answer_time`.
#[tokio::test]
async fn a_stream_that_never_finishes_is_cut_off_at_the_answer_time_limit() {
    let d = TestDaemon::start_with(common::Options {
        sets: vec!["limits.max_answer_time=\"700ms\"".into()],
        ..Default::default()
    })
    .await;
    let session = d.session().await;
    d.mock.push(
        Reply::text("a".repeat(200))
            .split_chars()
            .chunk_delay(Duration::from_millis(40)),
    );
    let started = Instant::now();
    let s = stream_chat(&d, &session, say("hi")).await;
    let error = assert_error_end(&s);
    assert!(
        error["message"].as_str().unwrap().contains("timed out"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off at the limit, not after the 8 s the stream would take"
    );
    let (status, r) = d.chat(&session, say("again")).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
}
