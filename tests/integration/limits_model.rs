//! Ceilings on what the model can make the daemon hold: an answer's size (streamed or not),
//! one event-stream line, tool calls per answer, token counts that overflow, and a streamed
//! turn whose client reads slowly. Model-side excess is a 502 (or an error chunk once a
//! stream has started), never unbounded buffering.

use crate::common;

use std::time::Duration;

use agentd_mock::{Reply, ScriptedCall};
use common::sse::{assert_error_end, stream_chat, text_of};
use common::{KEY, Options, TestDaemon, say, tool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn daemon_with(sets: &[&str]) -> TestDaemon {
    TestDaemon::start_with(Options {
        sets: sets.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await
}

/// A streamed chat that fails before its first event: a 502 whose message names `setting`.
async fn assert_streamed_502(d: &TestDaemon, session: &str, text: &str, setting: &str) {
    let mut body = say(text);
    body["stream"] = json!(true);
    let (status, body) = d.chat(session, body).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(message_of(&body).contains(setting), "{body}");
}

fn message_of(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_model_answer_over_the_limit_is_a_502_streamed_or_not() {
    let d = daemon_with(&["limits.max_response_bytes=10000"]).await;
    let session = d.session().await;

    d.mock.push(Reply::text("x".repeat(20_000)));
    let (status, body) = d.chat(&session, say("hi")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "upstream_error", "{body}");
    assert!(
        message_of(&body).contains("limits.max_response_bytes"),
        "{body}"
    );

    // Streamed word by word: text goes out as it comes, until the answer is over the limit.
    let words = "word ".repeat(4_000);
    d.mock.push(Reply::text(words));
    let streamed = stream_chat(&d, &session, say("hi")).await;
    let error = assert_error_end(&streamed);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_response_bytes"),
        "{error}"
    );
    assert!(text_of(&streamed.chunks).len() <= 10_000);
    assert!(d.history(&session).await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn an_event_stream_line_over_the_limit_is_a_502() {
    let d = daemon_with(&["limits.max_event_bytes=4096"]).await;
    let session = d.session().await;
    // One chunk carrying 20 kB of text in one line.
    d.mock.push(Reply::text("y".repeat(20_000)));
    assert_streamed_502(&d, &session, "hi", "limits.max_event_bytes").await;

    // A line that never ends is refused once it is over the limit, not read to its end.
    d.mock.push(Reply::raw_body(
        200,
        format!("data: {}", "z".repeat(200_000)),
    ));
    assert_streamed_502(&d, &session, "again", "limits.max_event_bytes").await;
}

#[tokio::test]
async fn an_answer_calling_too_many_tools_at_once_is_a_502() {
    let d = daemon_with(&["limits.max_tool_calls=2"]).await;
    let session = d.session().await;
    let calls = || {
        (0..3)
            .map(|i| ScriptedCall::new("echo", json!({"text": format!("{i}")})))
            .collect::<Vec<_>>()
    };
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);

    d.mock.push(Reply::tool_calls(calls()));
    let (status, r) = d.chat(&session, body.clone()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{r}");
    assert!(message_of(&r).contains("limits.max_tool_calls"), "{r}");

    d.mock.push(Reply::tool_calls(calls()));
    body["stream"] = json!(true);
    let (status, r) = d.chat(&session, body).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{r}");
    assert!(message_of(&r).contains("limits.max_tool_calls"), "{r}");
    assert!(
        d.history(&session).await.is_empty(),
        "no call was stored or run"
    );
}

#[tokio::test]
async fn token_counts_from_the_model_saturate_instead_of_overflowing() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let usage = json!({"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX,
                       "total_tokens": u64::MAX});
    let call = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "echo", "arguments": "{\"text\": \"a\"}"}}]}}], "usage": usage});
    let answer = json!({"choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "done"}}], "usage": usage});
    d.mock.push(Reply::raw_body(200, call.to_string()));
    d.mock.push(Reply::raw_body(200, answer.to_string()));
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    let (status, r) = d.chat(&session, body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["steps"], 2, "{r}");
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(r["usage"][field].as_u64(), Some(u64::MAX), "{r}");
    }
}

/// Reads from `tcp` until `pattern` has been seen; returns everything read.
async fn read_until(tcp: &mut tokio::net::TcpStream, pattern: &str) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains(pattern) {
        let n = tcp.read(&mut buffer).await.expect("read");
        assert!(n > 0, "closed before {pattern:?}");
        seen.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_stream_client_that_reads_nothing_holds_the_turn_back_instead_of_a_buffer() {
    // About 14 MB of chunks to the client: far more than the sockets between the daemon and a
    // client that stopped reading can hold.
    const WORDS: usize = 40_000;
    let word = format!("{} ", "w".repeat(200));
    let d = daemon_with(&[
        "limits.max_response_bytes=20000000",
        "limits.stream_buffer_events=8",
    ])
    .await;
    let session = d.session().await;
    d.mock.push(Reply::text(word.repeat(WORDS)));

    let authority = d
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(authority.parse().unwrap()).await.unwrap();
    let body = json!({"messages": [{"role": "user", "content": "talk"}], "stream": true});
    let body = body.to_string();
    let request = format!(
        "POST /api/sessions/{session}/chat HTTP/1.1\r\nHost: agentd\r\n\
         Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let head = read_until(&mut tcp, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // The client reads nothing more. An unbounded buffer would let the turn read the whole
    // answer and end (its session free again, its answer stored) within a moment.
    let ended = async {
        loop {
            if !d.history(&session).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(3), ended)
            .await
            .is_err(),
        "the turn ended while its client read nothing: its events were buffered"
    );

    // Reading again, the client gets the whole answer, and the turn ends.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = tcp.read(&mut buffer).await.expect("read");
            rest.extend_from_slice(&buffer[..n]);
            if n == 0 || rest.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
    })
    .await
    .expect("the stream ends once the client reads");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("\"finish_reason\":\"stop\""), "ends finished");
    let history = d.history(&session).await;
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[1]["content"].as_str().unwrap().len(),
        word.len() * WORDS
    );
}
