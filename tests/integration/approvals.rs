//! Human approval of risky tool calls, end to end with `send_email` writing `.eml` files: a
//! call that needs approval is validated, held with the digest of its arguments and ends the
//! turn; a decision bound to that digest resumes it. Approve runs once (a second approval, a
//! restart in between), deny and expiry reach the model as `denied`, a wrong digest changes
//! nothing, a new user message supersedes, a step's other calls run at once, streaming turns
//! end and resume the same way.

use std::path::Path;
use std::time::Duration;

use crate::common;

use agentd_mock::{Reply, ScriptedCall};
use common::sse::{parse_events, stream_chat};
use common::{KEY, Options, TestDaemon, assert_history_valid, say};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `send_email` writing into the data directory's outbox; mail outside example.com needs a
/// person's approval.
const MAIL_TOOLS: &str = r#"
[[tool]]
name = "send_email"
description = "Send an email"
handler = "smtp"
approval = { outside_domains = ["example.com"] }
parameters = { type = "object", required = ["to", "subject", "body"], properties = { to = { type = "string" }, subject = { type = "string" }, body = { type = "string" } } }

[tool.options]
transport = "file"
dir = "outbox"
from = "agentd@example.com"
"#;

async fn start(sets: &[&str]) -> TestDaemon {
    TestDaemon::start_with(Options {
        tools_toml: Some(MAIL_TOOLS.to_owned()),
        sets: sets.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await
}

fn mail(to: &str, id: &str) -> ScriptedCall {
    ScriptedCall::new(
        "send_email",
        json!({"to": to, "subject": "Hello", "body": "Hi there"}),
    )
    .with_id(id)
}

/// Messages written by `send_email` so far.
fn sent(d: &TestDaemon) -> usize {
    eml_count(&d.data_dir.join("outbox"))
}

fn eml_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

/// The result the model was sent for `call_id` in its latest request, parsed.
fn result_for(d: &TestDaemon, call_id: &str) -> Value {
    let request = d.mock.last_request().expect("the model was called");
    let message = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .cloned()
        .unwrap_or_else(|| panic!("no result for {call_id} in {request}"));
    serde_json::from_str(message["content"].as_str().unwrap()).unwrap()
}

async fn decide(d: &TestDaemon, session: &str, call_id: &str, body: Value) -> (StatusCode, Value) {
    d.post(&format!("/sessions/{session}/approvals/{call_id}"), body)
        .await
}

/// Chats once with the model asking for `calls`; returns the chat response, checked to end
/// for approval.
async fn held_turn(d: &TestDaemon, session: &str, calls: Vec<ScriptedCall>) -> Value {
    d.mock.push(Reply::tool_calls(calls));
    let (s, r) = d.chat(session, say("Please send it.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["stop_reason"], "approval_required", "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls", "{r}");
    r
}

#[tokio::test]
async fn an_approved_call_runs_once_and_the_turn_goes_on() {
    let d = start(&[]).await;
    let session = d.session().await;
    let r = held_turn(&d, &session, vec![mail("ann@elsewhere.org", "call_a")]).await;
    let approval = &r["approvals"][0];
    assert_eq!(approval["call_id"], "call_a");
    assert_eq!(approval["tool"], "send_email");
    assert_eq!(approval["arguments"]["to"], "ann@elsewhere.org");
    let digest = approval["digest"].as_str().unwrap().to_owned();
    assert!(approval["expires_at"].is_string(), "{approval}");
    assert_eq!(sent(&d), 0, "nothing is sent before a person approves");
    assert_history_valid(&d.history(&session).await);

    let (s, listed) = d.get(&format!("/sessions/{session}/approvals")).await;
    assert_eq!(s, StatusCode::OK, "{listed}");
    assert_eq!(listed["items"][0]["state"], "pending", "{listed}");
    assert_eq!(listed["items"][0]["digest"], digest.as_str());

    d.mock.push(Reply::text("Sent."));
    let (s, r) = decide(
        &d,
        &session,
        "call_a",
        json!({"decision": "approve", "digest": digest}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "Sent.", "{r}");
    assert_eq!(r["tool_runs"][0]["status"], "ok", "{r}");
    assert_eq!(sent(&d), 1);
    assert!(result_for(&d, "call_a")["error"].is_null());

    let (s, again) = decide(
        &d,
        &session,
        "call_a",
        json!({"decision": "approve", "digest": digest}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    assert_eq!(sent(&d), 1, "a second approval sends nothing");
    let (_, listed) = d.get(&format!("/sessions/{session}/approvals")).await;
    assert_eq!(listed["items"][0]["state"], "approved", "{listed}");
    assert_history_valid(&d.history(&session).await);

    let metrics = d.metrics().await;
    assert!(
        metrics.contains("agentd_approval_decisions_total{decision=\"approved\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("agentd_approvals_pending"), "{metrics}");
}

#[tokio::test]
async fn a_denied_call_reaches_the_model_as_denied_and_it_answers() {
    let d = start(&[]).await;
    let session = d.session().await;
    let r = held_turn(&d, &session, vec![mail("bob@elsewhere.org", "call_d")]).await;
    let digest = r["approvals"][0]["digest"].clone();
    d.mock.push(Reply::text("I did not send it."));
    let (s, r) = decide(
        &d,
        &session,
        "call_d",
        json!({"decision": "deny", "digest": digest, "reason": "not this recipient"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "I did not send it.");
    let result = result_for(&d, "call_d");
    assert_eq!(result["error"]["kind"], "denied", "{result}");
    assert_eq!(result["error"]["reason"], "not this recipient", "{result}");
    assert_eq!(sent(&d), 0);
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn a_decision_about_other_arguments_is_refused_and_nothing_runs() {
    let d = start(&[]).await;
    let session = d.session().await;
    held_turn(&d, &session, vec![mail("carl@elsewhere.org", "call_w")]).await;
    let wrong = common::request(
        &d.http,
        reqwest::Method::GET,
        d.url("/sessions/none/approvals"),
        None,
    )
    .await;
    assert_eq!(wrong.0, StatusCode::NOT_FOUND, "{}", wrong.1);
    let (s, r) = decide(
        &d,
        &session,
        "call_w",
        json!({"decision": "approve", "digest": "0".repeat(64)}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    let (s, r) = decide(
        &d,
        &session,
        "call_nope",
        json!({"decision": "approve", "digest": "0".repeat(64)}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    let (s, r) = decide(&d, &session, "call_w", json!({"decision": "maybe"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(sent(&d), 0);
    let (_, listed) = d.get(&format!("/sessions/{session}/approvals")).await;
    assert_eq!(listed["items"][0]["state"], "pending", "{listed}");
}

#[tokio::test]
async fn a_decision_after_a_restart_still_resumes_the_turn() {
    let d = start(&[]).await;
    let session = d.session().await;
    let r = held_turn(&d, &session, vec![mail("dora@elsewhere.org", "call_r")]).await;
    let digest = r["approvals"][0]["digest"].clone();
    let d = d.restart().await;
    d.mock.push(Reply::text("Sent after all."));
    let (s, r) = decide(
        &d,
        &session,
        "call_r",
        json!({"decision": "approve", "digest": digest}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(sent(&d), 1);
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn an_undecided_call_expires_into_a_denial() {
    let d = start(&["turn.approval_timeout=\"1s\""]).await;
    let session = d.session().await;
    let r = held_turn(&d, &session, vec![mail("eve@elsewhere.org", "call_x")]).await;
    let digest = r["approvals"][0]["digest"].clone();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, listed) = d.get(&format!("/sessions/{session}/approvals")).await;
    assert_eq!(listed["items"][0]["state"], "expired", "{listed}");
    let (s, r) = decide(
        &d,
        &session,
        "call_x",
        json!({"decision": "approve", "digest": digest}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    d.mock.push(Reply::text("It expired."));
    let (s, r) = d.chat(&session, say("What happened?")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let result = result_for(&d, "call_x");
    assert_eq!(result["error"]["kind"], "denied", "{result}");
    assert_eq!(result["error"]["reason"], "expired", "{result}");
    assert_eq!(sent(&d), 0);
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn a_new_user_message_supersedes_a_pending_call() {
    let d = start(&[]).await;
    let session = d.session().await;
    held_turn(&d, &session, vec![mail("fay@elsewhere.org", "call_s")]).await;
    d.mock.push(Reply::text("Understood, not sending."));
    let (s, r) = d.chat(&session, say("Never mind.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let result = result_for(&d, "call_s");
    assert_eq!(result["error"]["kind"], "denied", "{result}");
    assert_eq!(result["error"]["reason"], "superseded", "{result}");
    let (_, listed) = d.get(&format!("/sessions/{session}/approvals")).await;
    assert_eq!(listed["items"][0]["state"], "superseded", "{listed}");
    assert_eq!(sent(&d), 0);
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn a_step_runs_the_calls_that_need_no_approval_and_waits_for_the_last_decision() {
    let d = start(&[]).await;
    let session = d.session().await;
    let r = held_turn(
        &d,
        &session,
        vec![
            mail("gus@example.com", "call_in"),
            mail("hal@elsewhere.org", "call_out1"),
            mail("ida@elsewhere.org", "call_out2"),
        ],
    )
    .await;
    assert_eq!(sent(&d), 1, "the call inside example.com ran at once");
    assert_eq!(r["tool_runs"][0]["id"], "call_in", "{r}");
    let approvals = r["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 2, "{r}");
    assert_history_valid(&d.history(&session).await);

    let (s, first) = decide(
        &d,
        &session,
        "call_out1",
        json!({"decision": "approve", "digest": approvals[0]["digest"]}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["pending"][0]["call_id"], "call_out2", "{first}");
    assert_eq!(sent(&d), 1, "the turn resumes only on the last decision");

    d.mock.push(Reply::text("One sent, one not."));
    let (s, r) = decide(
        &d,
        &session,
        "call_out2",
        json!({"decision": "deny", "digest": approvals[1]["digest"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(sent(&d), 2);
    assert!(result_for(&d, "call_out1")["error"].is_null());
    assert_eq!(result_for(&d, "call_out2")["error"]["kind"], "denied");
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn a_streamed_turn_ends_with_its_held_calls_and_resumes_as_a_stream() {
    let d = start(&[]).await;
    let session = d.session().await;
    d.mock
        .push(Reply::tool_calls(vec![mail("jo@elsewhere.org", "call_st")]));
    let streamed = stream_chat(&d, &session, say("Please send it.")).await;
    assert_eq!(streamed.status, StatusCode::OK, "{}", streamed.raw);
    let last = streamed.chunks.last().expect("chunks");
    assert_eq!(last["stop_reason"], "approval_required", "{last}");
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls", "{last}");
    let digest = last["approvals"][0]["digest"].clone();
    assert_eq!(last["approvals"][0]["call_id"], "call_st", "{last}");

    d.mock.push(Reply::text("Sent it."));
    let response = d
        .http
        .post(d.url(&format!("/sessions/{session}/approvals/call_st")))
        .bearer_auth(KEY)
        .json(&json!({"decision": "approve", "digest": digest, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let chunks = parse_events(&response.text().await.unwrap());
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Sent it.");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(sent(&d), 1);
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn a_call_needing_approval_in_an_unsaved_turn_is_not_run() {
    let d = start(&[]).await;
    let session = d.session().await;
    d.mock
        .push(Reply::tool_calls(vec![mail("kim@elsewhere.org", "call_u")]));
    d.mock.push(Reply::text("Could not send."));
    let mut body = say("Send it.");
    body["save"] = json!(false);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        r["tool_runs"][0]["error_kind"], "approval_unavailable",
        "{r}"
    );
    assert_eq!(sent(&d), 0);
}

/// A plain HTTP endpoint answering 200 to every POST; hands each request body to the test.
fn webhook_listener() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_held_call_is_announced_to_the_webhook_and_deleting_the_session_removes_it() {
    let (port, received) = webhook_listener();
    let tools = format!(
        "{MAIL_TOOLS}\n[[tool]]\nname = \"notify\"\ndescription = \"Webhook\"\nhandler = \"http\"\noffer = false\nparameters = {{ type = \"object\" }}\n[tool.options]\nurl = \"http://127.0.0.1:{port}/hook\"\nallowed_hosts = [\"127.0.0.1\"]\n"
    );
    let d = TestDaemon::start_with(Options {
        tools_toml: Some(tools),
        sets: vec!["turn.approval_webhook=\"notify\"".to_owned()],
        ..Options::default()
    })
    .await;
    let session = d.session().await;
    let r = held_turn(&d, &session, vec![mail("lee@elsewhere.org", "call_n")]).await;
    let body = tokio::task::spawn_blocking(move || received.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the webhook was called");
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["event"], "approval_requested", "{event}");
    assert_eq!(event["data"]["call_id"], "call_n", "{event}");
    assert_eq!(
        event["data"]["digest"], r["approvals"][0]["digest"],
        "{event}"
    );
    assert!(
        !body.contains("lee@elsewhere.org"),
        "the arguments stay out of the notification: {body}"
    );

    let (s, _) = d
        .send(
            reqwest::Method::DELETE,
            &format!("/sessions/{session}"),
            None,
        )
        .await;
    assert!(s.is_success(), "{s}");
    let (s, _) = d.get(&format!("/sessions/{session}/approvals")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let stored = d.app.store().approvals(&session).await.expect("approvals");
    assert!(stored.is_empty(), "{stored:?}");
}
