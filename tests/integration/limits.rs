//! Ceilings on what an API client can make the daemon hold or wait for: messages and tools per
//! chat, list filters, a body that trickles in, open connections, a session's history and the
//! size of the model request built from it. Each one is a 4xx in the API's error shape.

use crate::common;

use std::time::Duration;

use common::{KEY, Options, TestDaemon, say};
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

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// The host:port the daemon listens on.
fn authority(d: &TestDaemon) -> String {
    d.base
        .trim_start_matches("http://")
        .trim_end_matches("/api")
        .to_owned()
}

#[tokio::test]
async fn too_many_messages_tools_or_calls_in_one_chat_is_a_422_naming_the_limit() {
    let d = daemon_with(&[
        "limits.max_request_messages=3",
        "tools.max_declared_tools=1",
        "limits.max_tool_calls=100",
    ])
    .await;
    let session = d.session().await;

    let four = json!({"messages": [user("a"), user("b"), user("c"), user("d")]});
    let (status, body) = d.chat(&session, four).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["loc"], "messages", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("limits.max_request_messages"), "{body}");
    assert!(d.history(&session).await.is_empty(), "nothing was stored");
    assert_eq!(d.mock.request_count(), 0, "the model was not called");

    let tool = |name: &str| json!({"type": "function", "function": {"name": name}});
    let mut two_tools = say("hi");
    two_tools["tools"] = json!([tool("a"), tool("b")]);
    let (status, body) = d.chat(&session, two_tools).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["loc"], "tools", "{body}");

    let call = |i: usize| {
        json!({"id": format!("call_{i}"), "type": "function",
                                 "function": {"name": "echo", "arguments": "{}"}})
    };
    let replayed = json!({"messages": [{"role": "assistant", "content": null,
        "tool_calls": (0..200).map(call).collect::<Vec<_>>()}]});
    let (status, body) = d.chat(&session, replayed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"][0]["loc"], "messages.0.tool_calls",
        "{body}"
    );

    let three = json!({"messages": [user("a"), user("b"), user("c")]});
    let (status, body) = d.chat(&session, three).await;
    assert_eq!(status, StatusCode::CREATED, "at the limit is fine: {body}");
}

#[tokio::test]
async fn hundreds_of_metadata_filters_are_a_422_not_a_500() {
    let d = TestDaemon::start().await;
    let filters: Vec<String> = (0..999)
        .map(|i| format!("metadata_filter.k{i}=v"))
        .collect();
    for collection in ["agents", "users", "sessions"] {
        let (status, body) = d.get(&format!("/{collection}?{}", filters.join("&"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            body["error"]["details"][0]["loc"], "query.metadata_filter",
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limits.max_list_filters"),
            "{body}"
        );
    }
    // The same count as one JSON object is refused the same way.
    let object: serde_json::Map<String, Value> =
        (0..999).map(|i| (format!("k{i}"), json!("v"))).collect();
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("metadata_filter", &Value::Object(object).to_string())
        .finish();
    let (status, body) = d.get(&format!("/agents?{query}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = d.get("/agents?metadata_filter.team=a").await;
    assert_eq!(status, StatusCode::OK, "a few filters still work: {body}");
}

#[tokio::test]
async fn a_body_that_trickles_in_gets_a_408_once_its_deadline_passes() {
    let d = daemon_with(&["limits.body_read_timeout=\"300ms\""]).await;
    let mut tcp = tokio::net::TcpStream::connect(authority(&d)).await.unwrap();
    let head = format!(
        "POST /api/agents HTTP/1.1\r\nHost: agentd\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"name\""
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // One more byte now and then keeps the connection busy but never finishes the body.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_answer = async {
        loop {
            tokio::select! {
                read = tcp.read(&mut buffer) => match read.unwrap() {
                    0 => break,
                    n => {
                        answer.extend_from_slice(&buffer[..n]);
                        if String::from_utf8_lossy(&answer).contains("request_timeout") {
                            break;
                        }
                    }
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let _ = tcp.write_all(b" ").await;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_answer)
        .await
        .expect("the daemon answers a trickling body instead of waiting for it");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.body_read_timeout"),
        "{body}"
    );
}

#[tokio::test]
async fn past_max_connections_a_client_waits_for_a_free_connection() {
    let d = daemon_with(&["limits.max_connections=1"]).await;
    let holder = tokio::net::TcpStream::connect(authority(&d)).await.unwrap();
    // The daemon's own client pool would reuse one connection; this one is fresh each time.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = format!("http://{}/healthz", authority(&d));
    let waiting = tokio::time::timeout(Duration::from_millis(800), fresh.get(&health).send()).await;
    assert!(
        waiting.is_err(),
        "not served while another connection holds the only slot: {waiting:?}"
    );
    drop(holder);
    let served = tokio::time::timeout(Duration::from_secs(5), fresh.get(&health).send())
        .await
        .expect("served once the slot is free")
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_full_history_refuses_the_turn_with_a_413_until_it_is_cleared() {
    let d = daemon_with(&["limits.max_history_entries=4"]).await;
    let session = d.session().await;
    for text in ["one", "two"] {
        let (status, body) = d.chat(&session, say(text)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(d.history(&session).await.len(), 4);

    let (status, body) = d.chat(&session, say("three")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "history_full", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limits.max_history_entries") && message.contains("/history"),
        "says which limit and how to get out: {message}"
    );
    assert_eq!(d.history(&session).await.len(), 4, "nothing more stored");
    assert_eq!(d.mock.request_count(), 2, "the model was not called");

    // A turn that stores nothing is not refused.
    let mut unsaved = say("just asking");
    unsaved["save"] = json!(false);
    let (status, body) = d.chat(&session, unsaved).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = d
        .send(
            reqwest::Method::DELETE,
            &format!("/sessions/{session}/history"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = d.chat(&session, say("three")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn history_bytes_are_limited_too() {
    let d = daemon_with(&["limits.max_history_bytes=3000"]).await;
    let session = d.session().await;
    let (status, body) = d.chat(&session, say(&"a".repeat(1000))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = d.chat(&session, say(&"b".repeat(1000))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "history_full", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_history_bytes"),
        "{body}"
    );
    assert_eq!(d.history(&session).await.len(), 2);
}

/// Bytes of the body of the model request the mock received last.
fn last_request_bytes(d: &TestDaemon) -> usize {
    serde_json::to_vec(&d.mock.last_request().expect("a model request"))
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_prompt_over_the_limit_is_a_413_or_loses_its_oldest_messages_with_truncate() {
    const LIMIT: usize = 9000;
    let d = daemon_with(&[&format!("limits.max_prompt_bytes={LIMIT}")]).await;
    let failing = d.session().await;
    let truncating = d.session().await;
    let (status, body) = d
        .send(
            reqwest::Method::PATCH,
            &format!("/sessions/{truncating}"),
            Some(json!({"context_overflow": "truncate"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Each turn adds a 2000-byte question and its 2000-byte echo: the third one's request is
    // over the limit.
    for session in [&failing, &truncating] {
        for n in 1..=2 {
            let text = format!("{n}").repeat(2000);
            let (status, body) = d.chat(session, say(&text)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let calls_before = d.mock.request_count();

    let (status, body) = d.chat(&failing, say(&"3".repeat(2000))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "prompt_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limits.max_prompt_bytes") && message.contains("context_overflow"),
        "{message}"
    );
    assert_eq!(d.mock.request_count(), calls_before, "nothing was sent");
    assert_eq!(d.history(&failing).await.len(), 4, "nothing was stored");

    let (status, body) = d.chat(&truncating, say(&"3".repeat(2000))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        last_request_bytes(&d) <= LIMIT,
        "{}",
        last_request_bytes(&d)
    );
    let sent = d.mock.last_request().unwrap();
    let texts: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        !texts.iter().any(|t| t.starts_with("111")),
        "the oldest question was dropped"
    );
    assert!(
        texts.last().unwrap().starts_with("333"),
        "the newest is kept"
    );
    assert_eq!(
        d.history(&truncating).await.len(),
        6,
        "history keeps it all"
    );

    // Even the newest message alone over the limit: truncating cannot help.
    let (status, body) = d.chat(&truncating, say(&"4".repeat(LIMIT))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "prompt_too_large", "{body}");
}

#[tokio::test]
async fn a_tool_result_over_the_limit_reaches_the_model_as_an_error_it_can_act_on() {
    let d = daemon_with(&["limits.max_tool_result_bytes=500"]).await;
    let session = d.session().await;
    let mut body = say(&format!("!call echo {}", json!({"text": "x".repeat(1000)})));
    body["tools"] = json!([common::tool("echo")]);
    let (status, r) = d.chat(&session, body).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["tool_runs"][0]["status"], "error", "{r}");
    assert_eq!(r["tool_runs"][0]["error_kind"], "result_too_large", "{r}");

    let history = d.history(&session).await;
    let result = history
        .iter()
        .find(|e| e["role"] == "tool")
        .expect("a tool result");
    let content = result["content"].as_str().unwrap();
    assert!(content.len() <= 500, "{content}");
    let content: Value = serde_json::from_str(content).unwrap();
    assert_eq!(content["error"]["kind"], "result_too_large");
    assert!(
        content["error"]["message"]
            .as_str()
            .unwrap()
            .contains("asking for less"),
        "{content}"
    );
    let sent = &d.mock.requests()[1];
    let results: Vec<&Value> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(results.len(), 1);
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("result_too_large"),
        "the model got the error, not the oversized result: {}",
        results[0]
    );
}

/// A list page is bounded in bytes, not only in items: a page that would hold more than
/// `limits.max_list_bytes` of records is refused before it is built.
#[tokio::test]
async fn a_list_page_over_its_byte_budget_is_a_422_asking_for_fewer_items() {
    let d = daemon_with(&["limits.max_list_bytes=6000"]).await;
    for i in 0..4 {
        let about = format!("{i}{}", "x".repeat(2_000));
        let (s, r) = d
            .post("/agents", json!({"name": "big", "about": about}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let (s, r) = d.get("/agents?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["items"].as_array().unwrap().len(), 2);
    let (s, r) = d.get("/agents?limit=100").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["error"]["details"][0]["loc"], "query.limit", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_list_bytes"),
        "{r}"
    );
}

/// Every participant a session names is looked up when it is stored, so the list is bounded
/// before the first lookup.
#[tokio::test]
async fn a_session_naming_too_many_participants_is_a_422() {
    let d = daemon_with(&["limits.max_session_participants=2"]).await;
    let (s, agent) = d.post("/agents", json!({"name": "a"})).await;
    assert_eq!(s, StatusCode::CREATED, "{agent}");
    let users: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let (s, r) = d
        .post(
            "/sessions",
            json!({"agent_id": agent["id"], "users": users}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["error"]["details"][0]["loc"], "users", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_session_participants"),
        "{r}"
    );
    let (s, r) = d
        .post("/sessions", json!({"agent_id": agent["id"], "users": []}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
}
