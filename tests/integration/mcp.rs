//! MCP servers as tool sources, against real servers this project did not write: the reference
//! `server-everything` over stdio and a server on the official Python SDK over streamable HTTP.
//! Their tools are offered, validated before the call, run, and their results (text, structured
//! content, images, `isError`) reach the model; a server killed mid-call ends that call with a
//! clear error and is restarted; a timed-out call is cancelled on the server; a reload restarts
//! only the servers whose entry changed.

use std::time::Duration;

use crate::common;

use agentd_mock::{Reply, ScriptedCall};
use common::mcp::{
    HttpMcpServer, everything_command, everything_command_with_pid, kill_group, read_pid,
};
use common::{Options, TestDaemon, assert_history_valid, say, toml_str};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The tool messages the model was sent in one request, in order.
fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

fn offered_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn error_kind(result: &str) -> String {
    let parsed: Value = serde_json::from_str(result).unwrap_or(Value::Null);
    parsed["error"]["kind"].as_str().unwrap_or("").to_owned()
}

/// Sends a chat on its own task, so the test can act while the turn runs.
fn chat_in_background(
    d: &TestDaemon,
    session: &str,
    text: &str,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (http, url) = (d.http.clone(), d.url(&format!("/sessions/{session}/chat")));
    let body = say(text);
    tokio::spawn(
        async move { common::request(&http, reqwest::Method::POST, url, Some(body)).await },
    )
}

/// Waits until the model was asked once more than `before` times, then `settle` more: by then
/// the call it answered with has been sent to the server.
async fn wait_call_sent(d: &TestDaemon, before: usize, settle: Duration) {
    while d.mock.requests().len() <= before {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(settle).await;
}

/// The Python server and a daemon using it as `py` (with `extra` lines in its entry), up, with
/// a session whose next model answer is a `slow` call of 30 s.
async fn slow_call_on_py(extra: &str) -> (HttpMcpServer, tempfile::TempDir, TestDaemon, String) {
    let state = tempfile::tempdir().unwrap();
    let server = HttpMcpServer::start(None, state.path());
    let d = start(http_entry("py", &server, extra)).await;
    d.wait_mcp_up("py").await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "py__slow",
        json!({"seconds": 30}),
    )]));
    (server, state, d, session)
}

/// Waits (up to 10 s) until the Python server saw a call cancelled.
async fn wait_cancelled_on_server(server: &HttpMcpServer) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.cancelled() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never saw notifications/cancelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(tools_toml: String) -> TestDaemon {
    TestDaemon::start_with(Options {
        tools_toml: Some(tools_toml),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn stdio_server_tools_are_offered_checked_run_and_answered_to_the_model() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("token");
    std::fs::write(&secret_file, "s3cret-token\n").unwrap();
    let d = start(format!(
        r#"
[[mcp]]
name = "checked"
command = {command}
tools = ["echo", "get-sum", "get-tiny-image", "get-structured-content", "get-env"]
env = {{ MCP_TEST_PLAIN = "from-entry", MCP_TEST_SECRET = {{ file = {secret} }} }}
timeout = "20s"
"#,
        command = everything_command(),
        secret = toml_str(&secret_file.display().to_string()),
    ))
    .await;
    let status = d.wait_mcp_up("checked").await;
    assert_eq!(status["tools"], 5, "{status}");

    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("checked__echo", json!({"message": "hi"})),
        ScriptedCall::new("checked__get-sum", json!({"a": 2, "b": 3})),
        ScriptedCall::new("checked__get-sum", json!({"a": "two", "b": 3})),
        ScriptedCall::new("checked__get-tiny-image", json!({})),
        ScriptedCall::new(
            "checked__get-structured-content",
            json!({"location": "Chicago"}),
        ),
        ScriptedCall::new("checked__get-env", json!({})),
    ]));
    d.mock.push(Reply::text("done"));
    let (s, r) = d.chat(&session, say("Use the tools.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "done");

    let requests = d.mock.requests();
    let offered = offered_names(&requests[0]);
    for name in ["checked__echo", "checked__get-sum", "checked__get-env"] {
        assert!(offered.iter().any(|o| o == name), "{name} in {offered:?}");
    }
    assert!(
        !offered.iter().any(|o| o.contains("long-running")),
        "the allowlist keeps other tools out: {offered:?}"
    );
    let sum = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "checked__get-sum")
        .unwrap();
    assert_eq!(
        sum["function"]["parameters"]["required"],
        json!(["a", "b"]),
        "the server's input schema is offered"
    );

    let results = tool_results(&requests[1]);
    assert_eq!(results.len(), 6);
    assert!(results[0].contains("Echo: hi"), "{}", results[0]);
    assert!(results[1].contains('5'), "{}", results[1]);
    assert_eq!(
        error_kind(&results[2]),
        "invalid_arguments",
        "a schema violation is answered before the call: {}",
        results[2]
    );
    assert!(
        results[3].contains("[image image/png,") && results[3].contains("not shown]"),
        "an image is described, not dropped: {}",
        results[3]
    );
    let structured: Value = serde_json::from_str(&results[4]).expect("structured content is JSON");
    assert!(structured["temperature"].is_number(), "{structured}");
    let env = &results[5];
    assert!(
        env.contains("from-entry"),
        "the entry's env reaches the server: {env}"
    );
    assert!(
        env.contains("s3cret-token"),
        "a secret reference is resolved: {env}"
    );
    assert!(
        !env.contains("CARGO_MANIFEST_DIR"),
        "agentd's own environment does not reach the server: {env}"
    );
    assert_history_valid(&d.history(&session).await);

    let metrics = d.metrics().await;
    assert!(
        metrics.contains("agentd_mcp_server_up{server=\"checked\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agentd_tool_calls_total{tool=\"checked__echo\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stdio_server_killed_mid_call_fails_that_call_clearly_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let d = start(format!(
        r#"
[[mcp]]
name = "everything"
command = {command}
tools = ["echo", "trigger-long-running-operation"]
"#,
        command = everything_command_with_pid(&pid_file),
    ))
    .await;
    d.wait_mcp_up("everything").await;
    let first_pid = read_pid(&pid_file);

    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "everything__trigger-long-running-operation",
        json!({"duration": 20, "steps": 20}),
    )]));
    d.mock.push(Reply::text("it failed"));
    let chat = chat_in_background(&d, &session, "Run it.");
    wait_call_sent(&d, 0, Duration::from_millis(1500)).await;
    kill_group(first_pid);

    let (s, r) = tokio::time::timeout(Duration::from_secs(20), chat)
        .await
        .expect("the turn does not hang on a dead server")
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let results = tool_results(&d.mock.requests()[1]);
    assert_eq!(
        error_kind(&results[0]),
        "mcp_server_exited",
        "{}",
        results[0]
    );
    assert_history_valid(&d.history(&session).await);

    let status = d
        .wait_mcp("everything", |s| {
            s["state"] == "up" && s["failures"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(status["tools"], 2, "{status}");
    assert_ne!(read_pid(&pid_file), first_pid, "a new process was started");

    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "everything__echo",
        json!({"message": "again"}),
    )]));
    d.mock.push(Reply::text("ok"));
    let (s, r) = d.chat(&session, say("Once more.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let requests = d.mock.requests();
    let results = tool_results(requests.last().unwrap());
    assert!(
        results.last().unwrap().contains("Echo: again"),
        "{results:?}"
    );
}

fn http_entry(name: &str, server: &HttpMcpServer, extra: &str) -> String {
    format!(
        "[[mcp]]\nname = \"{name}\"\nurl = {}\n{extra}\n",
        toml_str(&server.url())
    )
}

#[tokio::test]
async fn http_server_results_errors_and_checks_reach_the_model() {
    let state = tempfile::tempdir().unwrap();
    let server = HttpMcpServer::start(None, state.path());
    let d = start(http_entry("py", &server, "")).await;
    d.wait_mcp_up("py").await;

    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("py__add", json!({"a": 2, "b": 3})),
        ScriptedCall::new("py__add", json!({"a": 2})),
        ScriptedCall::new("py__fail", json!({"message": "disk is full"})),
        ScriptedCall::new("py__image", json!({})),
    ]));
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "py__count",
        json!({}),
    )]));
    d.mock.push(Reply::text("done"));
    let (s, r) = d.chat(&session, say("Go.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");

    let requests = d.mock.requests();
    let results = tool_results(&requests[1]);
    assert_eq!(
        serde_json::from_str::<Value>(&results[0]).unwrap(),
        json!({"result": 5}),
        "structured content is the result"
    );
    assert_eq!(
        error_kind(&results[1]),
        "invalid_arguments",
        "{}",
        results[1]
    );
    assert_eq!(error_kind(&results[2]), "tool_error", "{}", results[2]);
    assert!(results[2].contains("disk is full"), "{}", results[2]);
    assert!(results[3].contains("[image image/png,"), "{}", results[3]);
    assert!(results[3].contains("a 1x1 red pixel"), "{}", results[3]);
    let counted = tool_results(&requests[2]);
    assert_eq!(
        serde_json::from_str::<Value>(counted.last().unwrap()).unwrap(),
        json!({"result": 3}),
        "add, fail and image reached the server; the invalid add did not: {counted:?}"
    );
}

#[tokio::test]
async fn a_timed_out_call_is_cancelled_on_the_server() {
    let (server, _state, d, session) = slow_call_on_py("timeout = \"700ms\"").await;
    d.mock.push(Reply::text("too slow"));
    let (s, r) = d.chat(&session, say("Wait.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let results = tool_results(&d.mock.requests()[1]);
    assert_eq!(error_kind(&results[0]), "timeout", "{}", results[0]);
    wait_cancelled_on_server(&server).await;
}

#[tokio::test]
async fn a_server_that_goes_away_is_not_offered_until_it_is_back() {
    let state = tempfile::tempdir().unwrap();
    let mut server = HttpMcpServer::start(None, state.path());
    let port = server.port;
    let d = start(http_entry("py", &server, "")).await;
    d.wait_mcp_up("py").await;

    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "py__exit_now",
        json!({}),
    )]));
    d.mock.push(Reply::text("it went away"));
    let (s, r) = d.chat(&session, say("Stop it.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let results = tool_results(&d.mock.requests()[1]);
    let kind = error_kind(&results[0]);
    assert!(
        kind.starts_with("mcp_"),
        "a server lost mid-call is a clear MCP error, got {}",
        results[0]
    );
    server.wait_exit();
    drop(server);

    let down = d.wait_mcp("py", |s| s["state"] == "down").await;
    assert!(down["failures"].as_u64() >= Some(1), "{down}");
    assert!(
        down.get("error").is_none(),
        "no reasons on the unauthenticated /readyz: {down}"
    );
    d.mock.push(Reply::text("no tools"));
    let (s, _) = d.chat(&session, say("Anything?")).await;
    assert_eq!(s, StatusCode::CREATED);
    let requests = d.mock.requests();
    let offered = offered_names(requests.last().unwrap());
    assert!(
        !offered.iter().any(|o| o.starts_with("py__")),
        "a server that is down has no tools on offer: {offered:?}"
    );

    let _server = HttpMcpServer::start(Some(port), state.path());
    d.wait_mcp("py", |s| s["state"] == "up").await;
    d.mock.push(Reply::text("back"));
    let (s, _) = d.chat(&session, say("And now?")).await;
    assert_eq!(s, StatusCode::CREATED);
    let requests = d.mock.requests();
    assert!(
        offered_names(requests.last().unwrap()).contains(&"py__add".to_owned()),
        "its tools are offered again"
    );
}

#[tokio::test]
async fn a_reload_restarts_only_the_servers_whose_entry_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (pid_a, pid_b) = (dir.path().join("a.pid"), dir.path().join("b.pid"));
    let catalog = |b_tools: &str| {
        format!(
            "[[mcp]]\nname = \"a\"\ncommand = {}\ntools = [\"echo\"]\n\n\
             [[mcp]]\nname = \"b\"\ncommand = {}\ntools = {b_tools}\n",
            everything_command_with_pid(&pid_a),
            everything_command_with_pid(&pid_b),
        )
    };
    let d = start(catalog("[\"echo\"]")).await;
    d.wait_mcp_up("a").await;
    d.wait_mcp_up("b").await;
    let (a_before, b_before) = (read_pid(&pid_a), read_pid(&pid_b));

    std::fs::write(
        d.data_dir.join("tools.toml"),
        catalog("[\"echo\", \"get-sum\"]"),
    )
    .unwrap();
    let status = d.app.reload();
    assert!(status.contains("1 kept, 1 started"), "{status}");
    let b = d
        .wait_mcp("b", |s| s["state"] == "up" && s["tools"] == 2)
        .await;
    assert_eq!(b["tools"], 2);
    assert_eq!(
        read_pid(&pid_a),
        a_before,
        "the unchanged server kept running"
    );
    assert_ne!(
        read_pid(&pid_b),
        b_before,
        "the changed server was restarted"
    );
}

#[tokio::test]
async fn deleting_a_session_mid_call_cancels_the_call_on_the_server() {
    let (server, _state, d, session) = slow_call_on_py("timeout = \"60s\"").await;
    let chat = chat_in_background(&d, &session, "Wait.");
    wait_call_sent(&d, 0, Duration::from_millis(500)).await;
    let (s, _) = d
        .send(
            reqwest::Method::DELETE,
            &format!("/sessions/{session}"),
            None,
        )
        .await;
    assert!(s.is_success(), "{s}");
    let (s, r) = tokio::time::timeout(Duration::from_secs(10), chat)
        .await
        .expect("the cancelled turn ends")
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    wait_cancelled_on_server(&server).await;
}

#[tokio::test]
async fn a_repeated_call_is_answered_from_the_journal_without_reaching_the_server() {
    let state = tempfile::tempdir().unwrap();
    let server = HttpMcpServer::start(None, state.path());
    let d = start(http_entry("py", &server, "")).await;
    d.wait_mcp_up("py").await;

    let session = d.session().await;
    let add = || ScriptedCall::new("py__add", json!({"a": 1, "b": 1})).with_id("call_add");
    d.mock.push(Reply::tool_calls(vec![add()]));
    d.mock.push(Reply::text("2"));
    // Not saved: the call is journaled (every server call is) but not in history, so the same
    // id and arguments coming back are the same call.
    let mut unsaved = say("Add.");
    unsaved["save"] = json!(false);
    let (s, r) = d.chat(&session, unsaved).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");

    d.mock.push(Reply::tool_calls(vec![add()]));
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "py__count",
        json!({}),
    )]));
    d.mock.push(Reply::text("still 2"));
    let (s, r) = d.chat(&session, say("Again.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["tool_runs"][0]["status"], "replayed", "{r}");
    let requests = d.mock.requests();
    let replayed = tool_results(&requests[3]);
    assert_eq!(
        serde_json::from_str::<Value>(replayed.last().unwrap()).unwrap(),
        json!({"result": 2}),
        "the journal's result: {replayed:?}"
    );
    let counted = tool_results(&requests[4]);
    assert_eq!(
        serde_json::from_str::<Value>(counted.last().unwrap()).unwrap(),
        json!({"result": 1}),
        "the server saw the call once: {counted:?}"
    );
}

/// The README's MCP walk-through: the mock model's default behaviour (no scripted reply) picks
/// the offered tool matching the user's words, and the reference server's answer comes back.
#[tokio::test]
async fn the_readme_walk_through_calls_the_echo_tool_of_the_reference_server() {
    let d = start(format!(
        "[[mcp]]\nname = \"everything\"\ncommand = {}\ntools = [\"echo\", \"get-sum\"]\n",
        everything_command()
    ))
    .await;
    let status = d.wait_mcp_up("everything").await;
    assert_eq!(status["tools"], 2, "{status}");
    let session = d.session().await;
    let (s, r) = d
        .chat(&session, say("Please echo: hello from agentd"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["tool_runs"][0]["name"], "everything__echo", "{r}");
    assert_eq!(r["tool_runs"][0]["status"], "ok", "{r}");
    let answer = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        answer.starts_with("Done. everything__echo returned: Echo: "),
        "{answer}"
    );
}

#[tokio::test]
async fn a_changed_tool_list_is_listed_again_and_offered() {
    let state = tempfile::tempdir().unwrap();
    let server = HttpMcpServer::start(None, state.path());
    let d = start(http_entry("py", &server, "")).await;
    let before = d.wait_mcp_up("py").await["tools"].as_u64().unwrap();

    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "py__grow",
        json!({}),
    )]));
    d.mock.push(Reply::text("grown"));
    let (s, r) = d.chat(&session, say("Grow.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    d.wait_mcp("py", |s| s["tools"].as_u64() == Some(before + 1))
        .await;

    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "py__late",
        json!({"x": 21}),
    )]));
    d.mock.push(Reply::text("42"));
    let (s, r) = d.chat(&session, say("Use the new tool.")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let requests = d.mock.requests();
    let asked = &requests[requests.len() - 2];
    assert!(
        offered_names(asked).contains(&"py__late".to_owned()),
        "{:?}",
        offered_names(asked)
    );
    let results = tool_results(requests.last().unwrap());
    assert_eq!(
        serde_json::from_str::<Value>(results.last().unwrap()).unwrap(),
        json!({"result": 42})
    );
}
