//! Scripted replies over HTTP, non-streaming: text, tool calls, errors, delays, damage.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{client, message, post, send_email_tool, start, user_request};
use crate::{MockConfig, MockModel, Reply, ScriptedCall};

#[tokio::test]
async fn scripted_text_is_answered_in_order_then_the_default_takes_over() {
    let mock = start().await;
    mock.push_all([
        Reply::text("first"),
        Reply::text("second").with_finish_reason("length"),
    ]);
    let first = post(&mock, &user_request("hi")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["object"], "chat.completion");
    assert_eq!(first.body["model"], "test-model");
    assert!(first.body["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        first.body["created"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000)
    );
    let choice = &first.body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "first");
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(choice["finish_reason"], "stop");
    // "hi" is 2 characters: prompt ceil(2/4) = 1; "first" is 5: completion 5/4 + 1 = 2.
    assert_eq!(
        first.body["usage"],
        json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    );

    let second = post(&mock, &user_request("hi")).await;
    assert_eq!(second.body["choices"][0]["message"]["content"], "second");
    assert_eq!(second.body["choices"][0]["finish_reason"], "length");
    assert_eq!(mock.pending_replies(), 0);

    let third = message(&mock, &user_request("hello there")).await;
    assert_eq!(third["content"], "You said: hello there");
}

#[tokio::test]
async fn scripted_parallel_and_malformed_tool_calls_come_back_verbatim() {
    let mock = start().await;
    mock.push(
        Reply::tool_calls(vec![
            ScriptedCall::new("send_email", json!({"to": "a@b.io"})),
            ScriptedCall::raw("send_email", "{\"to\": \"a@b").with_id("call_fixed"),
        ])
        .with_text("Sending."),
    );
    let mut request = user_request("go");
    request["tools"] = json!([send_email_tool()]);
    let answered = post(&mock, &request).await;
    let choice = &answered.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Sending.");
    let calls = choice["message"]["tool_calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "send_email");
    let arguments = calls[0]["function"]["arguments"].as_str().expect("string");
    assert_eq!(
        serde_json::from_str::<Value>(arguments).expect("valid JSON"),
        json!({"to": "a@b.io"})
    );
    let generated = calls[0]["id"].as_str().expect("generated id");
    assert!(generated.starts_with("call_"), "{generated}");
    assert_eq!(calls[1]["id"], "call_fixed");
    assert_eq!(calls[1]["function"]["arguments"], "{\"to\": \"a@b");
}

#[tokio::test]
async fn generated_call_ids_never_repeat() {
    let mock = start().await;
    let mut request = user_request("!call a {}\n!call b {}");
    request["tools"] = json!([send_email_tool()]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let answer = message(&mock, &request).await;
        for call in answer["tool_calls"].as_array().expect("calls") {
            ids.push(call["id"].as_str().expect("id").to_owned());
        }
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{ids:?}");
}

#[tokio::test]
async fn scripted_errors_carry_status_body_and_retry_after() {
    let mock = start().await;
    let error = json!({"error": {"message": "slow down", "type": "rate_limit_error"}});
    mock.push(Reply::error(429, error.clone()).with_retry_after("1"));
    mock.push(Reply::raw_body(502, "<html>bad gateway</html>"));
    let limited = post(&mock, &user_request("hi")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers["retry-after"], "1");
    assert_eq!(limited.body, error);
    let gateway = post(&mock, &user_request("hi")).await;
    assert_eq!(gateway.status, 502);
    assert_eq!(gateway.body, "<html>bad gateway</html>");
    assert_eq!(post(&mock, &user_request("hi")).await.status, 200);
}

#[tokio::test]
async fn delays_add_up_from_the_server_and_the_reply() {
    let config = MockConfig {
        latency: Duration::from_millis(40),
        record: true,
    };
    let mock = MockModel::start(config).await.expect("starts");
    mock.push(Reply::text("late").with_delay(Duration::from_millis(60)));
    let started = Instant::now();
    let answer = message(&mock, &user_request("hi")).await;
    assert_eq!(answer["content"], "late");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert!(mock.stats().busy_ns_total >= 100_000_000);
}

#[tokio::test]
async fn a_dying_non_streaming_answer_cuts_the_body() {
    let mock = start().await;
    mock.push(Reply::text("never whole").die_after(0));
    let response = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&user_request("hi"))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "the body must end in an error"
    );
}

#[tokio::test]
async fn the_default_answer_reply_keeps_default_content_with_its_quirks() {
    let mock = start().await;
    mock.push(Reply::default_answer().with_header("x-mock", "yes"));
    let answered = post(&mock, &user_request("ping")).await;
    assert_eq!(answered.headers["x-mock"], "yes");
    assert_eq!(
        answered.body["choices"][0]["message"]["content"],
        "You said: ping"
    );
}
