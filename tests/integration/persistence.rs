//! What survives a restart: resources, complete ordered history, and the tool-call journal
//! (a call found started but unfinished is reported as "outcome unknown", never re-run; a
//! finished call whose result missed history is answered from the journal).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use agentd::session::{
    ChatMessage, Entry, EntrySource, FunctionCall, MessageJson, Role, ToolCallRequest,
};
use agentd::store::{CallStatus, JournalRecord};
use agentd_mock::{Reply, ScriptedCall};
use common::{TestDaemon, assert_history_valid, handlers::SLEEP_CALLS, say, tool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

#[tokio::test]
async fn history_is_complete_and_ordered_after_a_restart() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("echo", json!({"text": "a"})),
        ScriptedCall::new("echo", json!({"text": "b"})),
    ]));
    d.mock.push(Reply::text("done"));
    let mut body = say("first");
    body["tools"] = json!([tool("echo")]);
    let (s, _) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = d.chat(&session, say("second")).await;
    assert_eq!(s, StatusCode::CREATED);
    let before = d.history(&session).await;
    assert_eq!(before.len(), 7);

    let d = d.restart().await;
    let after = d.history(&session).await;
    assert_eq!(before, after);
    assert_history_valid(&after);
    let (s, agent_list) = d.get("/agents").await;
    assert_eq!(
        (s, agent_list["items"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    // The conversation goes on where it was.
    let (s, _) = d.chat(&session, say("third")).await;
    assert_eq!(s, StatusCode::CREATED);
    let sent = d.mock.requests().last().cloned().unwrap();
    let contents: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first", "second", "third"]);
}

fn call_entry(session: &str, call_id: &str, tool: &str) -> Entry {
    Entry {
        id: uuid::Uuid::now_v7().to_string().into(),
        session_id: session.into(),
        source: EntrySource::ApiResponse,
        message: ChatMessage {
            tool_calls: Some(vec![ToolCallRequest {
                id: call_id.to_owned(),
                kind: "function".into(),
                function: FunctionCall {
                    name: tool.to_owned(),
                    arguments: "{\"ms\": 10}".into(),
                },
            }]),
            ..ChatMessage::text(Role::Assistant, "")
        },
        created_at: OffsetDateTime::now_utc(),
        json: MessageJson::default(),
    }
}

fn journal(
    session: &str,
    call_id: &str,
    status: CallStatus,
    result: Option<&str>,
) -> JournalRecord {
    JournalRecord {
        session_id: session.into(),
        call_id: call_id.to_owned(),
        digest: agentd::session::call_digest_of_text("slow", "{\"ms\": 10}"),
        tool: "slow".into(),
        arguments: "{\"ms\": 10}".into(),
        status,
        result: result.map(str::to_owned),
        started_at: OffsetDateTime::now_utc(),
        finished_at: None,
    }
}

/// The state a daemon killed in the middle of tool calls leaves behind: the assistant's calls
/// in history, one call journaled as started (handler running), one finished but its result not
/// yet in history, one never started. The next chat answers all three without running any.
#[tokio::test]
async fn calls_interrupted_by_a_crash_are_never_run_twice() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    // What a daemon killed mid-step leaves in its store, written through the store itself
    // (whichever the suite runs on) while the daemon is idle.
    let store = d.app.store().clone();
    let mut entry = call_entry(&session, "c_started", "slow");
    let calls = entry.message.tool_calls.as_mut().unwrap();
    let mut finished = calls[0].clone();
    finished.id = "c_finished".into();
    let mut never = calls[0].clone();
    never.id = "c_never".into();
    calls.extend([finished, never]);
    store.append_entries(vec![Arc::new(entry)]).await.unwrap();
    store
        .journal_start(&journal(&session, "c_started", CallStatus::Started, None))
        .await
        .unwrap();
    store
        .journal_start(&journal(&session, "c_finished", CallStatus::Started, None))
        .await
        .unwrap();
    store
        .journal_finish(
            &session,
            "c_finished",
            &agentd::session::call_digest_of_text("slow", "{\"ms\": 10}"),
            "{\"slept_ms\":10}",
        )
        .await
        .unwrap();
    drop(store);
    let d = d.restart().await;
    let sleeps_before = SLEEP_CALLS.load(Ordering::SeqCst);
    d.mock.push(Reply::text("picking up where we left off"));
    let mut body = say("where were we?");
    body["tools"] = json!([tool("slow")]);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        SLEEP_CALLS.load(Ordering::SeqCst),
        sleeps_before,
        "no handler ran again"
    );

    let sent = d.mock.requests().last().cloned().unwrap();
    let results: Vec<(String, Value)> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                serde_json::from_str(m["content"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].0, "c_started");
    assert_eq!(results[0].1["error"]["kind"], "outcome_unknown");
    assert_eq!(results[1].1, json!({"slept_ms": 10}));
    assert_eq!(results[2].1["error"]["kind"], "no_result");
    let history = d.history(&session).await;
    assert_history_valid(&history);
}
