//! The chat turn end to end against the mock model: the seed guide's curl flows, server tool
//! loops, parallel calls, every failure kind reaching the model, client tools, max_steps.

use crate::common;

use std::time::Duration;

use agentd::store::CallStatus;
use agentd_mock::{Reply, ScriptedCall};
use common::{TestDaemon, assert_history_valid, say, tool};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `send_email` tool exactly as Julep's chat guide declares it in the request.
fn guide_send_email() -> Value {
    json!({"type": "function", "function": {
        "name": "send_email",
        "description": "Send an email to a recipient",
        "parameters": {"type": "object", "properties": {
            "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
            "required": ["to", "subject", "body"]}}})
}

/// The tool results in the `index`-th request the mock received, as (call id, parsed content).
fn tool_results(mock_request: &Value) -> Vec<(String, Value)> {
    mock_request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let content = m["content"].as_str().unwrap();
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                serde_json::from_str(content).unwrap_or(Value::String(content.to_owned())),
            )
        })
        .collect()
}

#[tokio::test]
async fn seed_guide_flow_message_with_max_tokens() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let (s, r) = d
        .chat(
            &session,
            json!({"messages": [{"role": "user", "content": "Hello, can you help me with a task?"}], "stream": false, "max_tokens": 150}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "You said: Hello, can you help me with a task?"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(r["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["jobs"], json!([]));
    let sent = &d.mock.requests()[0];
    assert_eq!(sent["max_tokens"], 150);
    assert_eq!(sent["model"], "mock-model");
    assert_eq!(sent["messages"][0]["role"], "system");
    assert!(
        sent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Be brief.")
    );
}

#[tokio::test]
async fn seed_guide_flow_client_tool_round_trip() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let (s, r) = d
        .chat(
            &session,
            json!({"messages": [{"role": "user", "content": "Send an email to john@example.com about our meeting tomorrow."}],
                   "tools": [guide_send_email()]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "send_email");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["to"], "john@example.com");
    assert_eq!(
        d.mock.requests()[0]["tools"][0]["function"]["name"],
        "send_email"
    );

    // The client runs the tool and sends the result; the turn resumes.
    let call_id = call["id"].as_str().unwrap();
    let (s, r) = d
        .chat(
            &session,
            json!({"messages": [{"role": "tool", "tool_call_id": call_id, "content": "{\"status\":\"sent\"}"}],
                   "tools": [guide_send_email()]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("sent")
    );
    let history = d.history(&session).await;
    assert_eq!(history.len(), 4);
    assert_history_valid(&history);

    // A result for a call that is not pending is refused, and nothing is stored.
    let (s, e) = d
        .chat(
            &session,
            json!({"messages": [{"role": "tool", "tool_call_id": "call_nope", "content": "x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(d.history(&session).await.len(), 4);
}

#[tokio::test]
async fn two_step_server_tool_loop() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "echo",
        json!({"text": "first"}),
    )]));
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "echo",
        json!({"text": "second"}),
    )]));
    d.mock.push(Reply::text("all done"));
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "all done");
    assert_eq!(r["steps"], 3);
    assert_eq!(r["tool_runs"].as_array().unwrap().len(), 2);
    let requests = d.mock.requests();
    assert_eq!(requests.len(), 3);
    let second = tool_results(&requests[1]);
    assert_eq!(second[0].1, json!({"echo": {"text": "first"}}));
    let third = tool_results(&requests[2]);
    assert_eq!(third.len(), 2);
    assert_eq!(third[1].1, json!({"echo": {"text": "second"}}));
    // The catalog's schema is what the model was offered, not the request's placeholder.
    assert_eq!(
        requests[0]["tools"][0]["function"]["parameters"]["required"],
        json!(["text"])
    );
    // Usage is summed over the three model calls.
    let total: u64 = r["usage"]["total_tokens"].as_u64().unwrap();
    assert!(total >= 3);
    let history = d.history(&session).await;
    assert_eq!(history.len(), 6, "user, call, result, call, result, answer");
    assert_history_valid(&history);
}

/// `save: false` stores no history, but a server call is still journaled before it runs and
/// finished after, so a replay of it is answered from the journal.
#[tokio::test]
async fn a_turn_that_saves_nothing_still_journals_its_tool_call() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "echo",
        json!({"text": "unsaved"}),
    )]));
    d.mock.push(Reply::text("done"));
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    body["save"] = json!(false);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "done");
    assert!(d.history(&session).await.is_empty(), "nothing stored");

    let results = tool_results(&d.mock.requests()[1]);
    let (call_id, content) = &results[0];
    assert_eq!(content, &json!({"echo": {"text": "unsaved"}}));
    let record = d
        .app
        .store()
        .journal_get(
            &session,
            call_id,
            &agentd::session::call_digest("echo", &json!({"text": "unsaved"})),
        )
        .await
        .expect("journal")
        .expect("the call is journaled");
    assert_eq!(record.status, CallStatus::Finished);
    assert_eq!(
        record.arguments, "",
        "the unsaved turn's arguments are not kept"
    );
    let stored: Value = serde_json::from_str(record.result.as_deref().unwrap()).unwrap();
    assert_eq!(&stored, content);
}

/// Some servers number calls per response ("call_0" every time). A reused id must not be
/// taken for a replay of the earlier call: the second call runs, under an id of its own.
#[tokio::test]
async fn a_call_id_the_model_reuses_is_renamed_and_the_call_runs() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    for text in ["first", "second"] {
        d.mock.push(Reply::tool_calls(vec![
            ScriptedCall::new("echo", json!({ "text": text })).with_id("call_0"),
        ]));
        d.mock.push(Reply::text("done"));
        let mut body = say(text);
        body["tools"] = json!([tool("echo")]);
        let (s, r) = d.chat(&session, body).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["tool_runs"][0]["status"], "ok", "{r}");
    }
    let requests = d.mock.requests();
    let results = tool_results(requests.last().unwrap());
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].1, json!({"echo": {"text": "first"}}));
    assert_eq!(results[1].1, json!({"echo": {"text": "second"}}));
    assert_ne!(results[0].0, results[1].0, "each call has its own id");
    let history = d.history(&session).await;
    assert_eq!(history.len(), 8);
    assert_history_valid(&history);
}

#[tokio::test]
async fn parallel_calls_run_concurrently_and_results_keep_call_order() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("slow_long", json!({"ms": 2000})),
        ScriptedCall::new("echo", json!({"text": "quick"})),
        ScriptedCall::new("slow_long", json!({"ms": 1000})),
    ]));
    d.mock.push(Reply::text("done"));
    let mut body = say("go");
    body["tools"] = json!([tool("slow_long"), tool("echo")]);
    let started = std::time::Instant::now();
    let (s, r) = d.chat(&session, body).await;
    let elapsed = started.elapsed();
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let results = tool_results(&d.mock.requests()[1]);
    let contents: Vec<&Value> = results.iter().map(|(_, c)| c).collect();
    assert_eq!(
        contents,
        [
            &json!({"slept_ms": 2000}),
            &json!({"echo": {"text": "quick"}}),
            &json!({"slept_ms": 1000})
        ]
    );
    let call_ids: Vec<String> = d.mock.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["tool_calls"].as_array())
        .flatten()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let result_ids: Vec<String> = results.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(call_ids, result_ids);
    // Run one after another, the sleeps alone would take 3 s; together they take 2 s (the
    // margin absorbs a loaded machine).
    assert!(
        elapsed < Duration::from_millis(2900),
        "calls ran one after another: {elapsed:?}"
    );
}

#[tokio::test]
async fn every_failure_kind_reaches_the_model_as_a_tool_result() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::raw("echo", "{\"text\": oops"),
        ScriptedCall::new("echo", json!({"n": -1})),
        ScriptedCall::new("ecko", json!({"text": "typo"})),
        ScriptedCall::new("fail", json!({})),
        ScriptedCall::new("explode", json!({})),
        ScriptedCall::new("slow", json!({"ms": 5000})),
    ]));
    d.mock.push(Reply::text("I saw the errors"));
    let mut body = say("go");
    body["tools"] = json!([tool("echo"), tool("fail"), tool("explode"), tool("slow")]);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a tool failure is not an HTTP failure: {r}"
    );
    let results = tool_results(&d.mock.requests()[1]);
    let kinds: Vec<&str> = results
        .iter()
        .map(|(_, c)| c["error"]["kind"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        kinds,
        [
            "malformed_arguments",
            "invalid_arguments",
            "unknown_tool",
            "upstream_down",
            "panic",
            "timeout"
        ]
    );
    let invalid = &results[1].1["error"];
    let pointers: Vec<&str> = invalid["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/n"), "{invalid}");
    assert!(
        pointers.contains(&""),
        "missing `text` is reported at the root: {invalid}"
    );
    let unknown = results[2].1["error"]["message"].as_str().unwrap();
    assert!(
        unknown.contains("echo"),
        "unknown_tool lists known names: {unknown}"
    );
    assert_eq!(results[3].1["error"]["retryable"], true);
    let runs = r["tool_runs"].as_array().unwrap();
    assert!(runs.iter().all(|run| run["status"] == "error"));
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn max_steps_forces_a_final_answer_without_tools() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    for i in 0..2 {
        d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
            "echo",
            json!({"text": format!("{i}")}),
        )]));
    }
    d.mock.push(Reply::text("stopping here"));
    let mut body = say("loop forever");
    body["tools"] = json!([tool("echo")]);
    body["max_steps"] = json!(2);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["stop_reason"], "max_steps");
    assert_eq!(r["steps"], 3);
    assert_eq!(r["choices"][0]["message"]["content"], "stopping here");
    let requests = d.mock.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2]["tool_choice"], "none");
    assert_ne!(requests[1]["tool_choice"], "none");
    assert_history_valid(&d.history(&session).await);
}

#[tokio::test]
async fn auto_run_tools_false_hands_server_tools_to_the_client() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "echo",
        json!({"text": "x"}),
    )]));
    let mut body = say("go");
    body["tools"] = json!([tool("echo")]);
    body["auto_run_tools"] = json!(false);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(r["tool_runs"], json!([]));
    let history = d.history(&session).await;
    assert_eq!(
        history.len(),
        2,
        "user and the assistant's call; nothing ran"
    );
}

#[tokio::test]
async fn a_new_message_instead_of_a_result_closes_the_pending_call() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let mut body = say("Send an email to a@example.com about lunch.");
    body["tools"] = json!([guide_send_email()]);
    let (_, r) = d.chat(&session, body).await;
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    let (s, r) = d.chat(&session, say("never mind")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let history = d.history(&session).await;
    assert_history_valid(&history);
    let filler = history.iter().find(|e| e["role"] == "tool").unwrap();
    assert!(filler["content"].as_str().unwrap().contains("no_result"));
}

#[tokio::test]
async fn a_second_chat_on_a_busy_session_gets_409() {
    let d = std::sync::Arc::new(TestDaemon::start().await);
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("slow", json!({"ms": 250})).with_id("call_busy_409"),
    ]));
    d.mock.push(Reply::text("done"));
    let mut body = say("go");
    body["tools"] = json!([tool("slow")]);
    let first = {
        let (d, session) = (d.clone(), session.clone());
        tokio::spawn(async move { d.chat(&session, body).await })
    };
    common::handlers::sleep_started("call_busy_409").await;
    let (s, e) = d.chat(&session, say("me too")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, _) = first.await.unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = d.chat(&session, say("now")).await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn upstream_failures_retry_then_map_to_502() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::error(
        500,
        json!({"error": {"message": "overloaded"}}),
    ));
    d.mock.push(Reply::text("recovered"));
    let (s, r) = d.chat(&session, say("hi")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "recovered");

    for _ in 0..3 {
        d.mock.push(Reply::error(
            503,
            json!({"error": {"message": "still overloaded"}}),
        ));
    }
    let (s, e) = d.chat(&session, say("again")).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still overloaded")
    );

    d.mock.push(Reply::error(
        400,
        json!({"error": {"message": "bad request upstream"}}),
    ));
    let before = d.mock.request_count();
    let (s, _) = d.chat(&session, say("once more")).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(d.mock.request_count(), before + 1, "a 400 is not retried");
}

/// `offer` is access control: a catalog tool the turn did not offer (not offered by default,
/// not declared by the agent or the request) is refused as unknown when the model names it,
/// and never reaches the journal or its handler. A declared one runs.
#[tokio::test]
async fn a_tool_the_turn_did_not_offer_is_refused_even_when_it_is_in_the_catalog() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("echo", json!({"text": "hidden"})).with_id("c_hidden"),
        ScriptedCall::new("slow", json!({"ms": 1})).with_id("c_offered"),
    ]));
    d.mock.push(Reply::text("done"));
    let mut body = say("go");
    body["tools"] = json!([tool("slow")]);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["tool_runs"][0]["error_kind"], "unknown_tool", "{r}");
    assert_eq!(r["tool_runs"][1]["status"], "ok", "{r}");
    let requests = d.mock.requests();
    let offered: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["slow"]);
    let results = tool_results(&requests[1]);
    assert_eq!(results[0].1["error"]["kind"], "unknown_tool");
    assert_eq!(results[0].1["error"]["available"], json!(["slow"]));
    let journaled = d
        .app
        .store()
        .journal_get(
            &session,
            "c_hidden",
            &agentd::session::call_digest("echo", &json!({"text": "hidden"})),
        )
        .await
        .unwrap();
    assert!(journaled.is_none(), "the hidden tool never started");
    assert_history_valid(&d.history(&session).await);
}

/// Clearing history forgets the journal of the cleared calls: the same call (same id, same
/// content) in the next conversation runs instead of being answered with the old result.
#[tokio::test]
async fn clearing_history_forgets_the_calls_it_held() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    let arguments = json!({"text": "again"});
    for round in 0..2 {
        d.mock.push(Reply::tool_calls(vec![
            ScriptedCall::new("echo", arguments.clone()).with_id("call_0"),
        ]));
        d.mock.push(Reply::text("done"));
        let mut body = say("echo");
        body["tools"] = json!([tool("echo")]);
        let (s, r) = d.chat(&session, body).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["tool_runs"][0]["status"], "ok", "round {round}: {r}");
        let digest = agentd::session::call_digest("echo", &arguments);
        let stored = d.app.store().journal_get(&session, "call_0", &digest);
        assert!(
            stored.await.unwrap().is_some(),
            "journaled while it is in history"
        );
        let (s, _) = d
            .send(
                reqwest::Method::DELETE,
                &format!("/sessions/{session}/history"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let stored = d.app.store().journal_get(&session, "call_0", &digest);
        assert!(stored.await.unwrap().is_none(), "cleared with its history");
    }
}

/// Deleting a session cancels its running turn and waits for it: after the delete answers,
/// nothing of the session is written again, and a session re-created under the same id is
/// empty.
#[tokio::test]
async fn deleting_a_session_mid_turn_stops_the_turn_and_nothing_comes_back() {
    let d = std::sync::Arc::new(TestDaemon::start().await);
    let session = d.session().await;
    let (s, created) = d.get(&format!("/sessions/{session}")).await;
    assert_eq!(s, StatusCode::OK);
    let arguments = json!({"ms": 8000});
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("slow_long", arguments.clone()).with_id("c_long_mid_turn_delete"),
    ]));
    d.mock.push(Reply::text("finished after all"));
    let turn = tokio::spawn({
        let d = std::sync::Arc::clone(&d);
        let session = session.clone();
        async move {
            let mut body = say("take your time");
            body["tools"] = json!([tool("slow_long")]);
            d.chat(&session, body).await
        }
    });
    let started = tokio::time::Instant::now();
    // Wait until the call is running (journaled as started before its handler runs).
    common::handlers::sleep_started("c_long_mid_turn_delete").await;
    let digest = agentd::session::call_digest("slow_long", &arguments);

    let (s, r) = d
        .send(
            reqwest::Method::DELETE,
            &format!("/sessions/{session}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let (s, r) = turn.await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("deleted"),
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the running call was cancelled, not waited out"
    );
    assert_eq!(d.mock.requests().len(), 1, "no model call after the delete");

    let (s, r) = d
        .post(
            &format!("/sessions/{session}"),
            json!({"agents": created["agents"], "users": created["users"]}),
        )
        .await;
    assert!(s.is_success(), "{s} {r}");
    assert!(
        d.history(&session).await.is_empty(),
        "the new session is empty"
    );
    let stored = d
        .app
        .store()
        .journal_get(&session, "c_long_mid_turn_delete", &digest);
    assert!(stored.await.unwrap().is_none(), "the journal went with it");
}
