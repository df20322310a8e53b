//! The real binary killed with SIGKILL while a tool call is in flight: after a restart the call
//! is reported to the model as "outcome unknown", never run again, and the session goes on.

use crate::common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentd_mock::{MockConfig, MockModel, Reply, ScriptedCall};
use common::binary::{self, AGENTD, BinaryStore, Daemon};
use common::hook::hanging_hook;
use common::{assert_history_valid, toml_str};
use serde_json::{Value, json};

const KEY: &str = "crash-test-key";

fn start(
    data: &std::path::Path,
    tools: &std::path::Path,
    mock: &MockModel,
    store: &BinaryStore,
) -> Daemon {
    let mut command = Command::new(AGENTD);
    store.configure(&mut command);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--tools")
        .arg(tools)
        .args([
            "--set",
            &format!("provider.base_url={}", toml_str(&mock.base_url())),
        ])
        .arg("serve")
        .env("AGENTD_API_KEY", KEY);
    binary::spawn(command)
}

fn api(daemon: &Daemon) -> String {
    format!("http://{}/api", daemon.addr)
}

/// POSTs `body` and returns the successful answer. A 409 is retried for a while: on a shared
/// store the killed process's claim on the session outlives it until its lease lapses.
async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = http
            .post(&url)
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("request");
        if response.status() == reqwest::StatusCode::CONFLICT && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert!(response.status().is_success(), "{}", response.status());
        return response.json().await.expect("json");
    }
}

/// SIGKILLs the daemon while `in_flight` waits on it; the request dies with it.
async fn kill_mid_request(
    mut daemon: Daemon,
    in_flight: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the request died with the daemon"
    );
}

/// A catalog with the `hook` tool posting to `port` (and `approval` as given).
fn hook_tools(dir: &std::path::Path, port: u16, approval: &str) -> std::path::PathBuf {
    let tools = dir.join("tools.toml");
    std::fs::write(
        &tools,
        format!(
            "[[tool]]\nname = \"hook\"\ndescription = \"Posts to the hook\"\nhandler = \"http\"\noffer = false\ntimeout = \"60s\"\napproval = \"{approval}\"\nparameters = {{ type = \"object\" }}\n[tool.options]\nurl = \"http://127.0.0.1:{port}/hook\"\ntimeout = \"60s\"\n"
        ),
    )
    .unwrap();
    tools
}

/// The result the model was last sent for `call_id`, parsed.
fn last_result_for(mock: &MockModel, call_id: &str) -> Value {
    let sent = mock.requests().last().cloned().unwrap();
    let result = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .cloned()
        .expect("the cut-off call has a result");
    serde_json::from_str(result["content"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_call_cut_off_by_sigkill_is_reported_outcome_unknown_and_not_rerun() {
    let (hook_port, connections, accepted_rx) = hanging_hook();
    let dir = tempfile::tempdir().unwrap();
    let tools = hook_tools(dir.path(), hook_port, "never");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    crate::common::install_crypto_provider();
    let http = reqwest::Client::new();
    let store = BinaryStore::new().await;

    let daemon = start(&data, &tools, &mock, &store);
    let session = daemon.new_session(&http, KEY).await;
    mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("hook", json!({"event": "deploy"})).with_id("call_hook"),
    ]));
    let chat_url = format!("{}/sessions/{session}/chat", api(&daemon));
    let in_flight = {
        let (http, url) = (http.clone(), chat_url.clone());
        tokio::spawn(async move {
            let body = json!({"messages": [{"role": "user", "content": "deploy"}], "tools": [{"type": "function", "function": {"name": "hook"}}]});
            http.post(url).bearer_auth(KEY).json(&body).send().await
        })
    };
    tokio::task::spawn_blocking(move || accepted_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the handler reached the hook");
    kill_mid_request(daemon, in_flight).await;

    let daemon = start(&data, &tools, &mock, &store);
    mock.push(Reply::text("the deploy may or may not have happened"));
    let body = json!({"messages": [{"role": "user", "content": "did it work?"}], "tools": [{"type": "function", "function": {"name": "hook"}}]});
    let answer = post(
        &http,
        format!("{}/sessions/{session}/chat", api(&daemon)),
        body,
    )
    .await;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let result = last_result_for(&mock, "call_hook");
    assert_eq!(result["error"]["kind"], "outcome_unknown", "{result}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the call was not run again"
    );

    let history: Value = http
        .get(format!("{}/sessions/{session}/history", api(&daemon)))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_history_valid(history["entries"].as_array().unwrap());
}

#[tokio::test]
async fn an_mcp_call_cut_off_by_sigkill_is_reported_outcome_unknown_and_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let server = common::mcp::HttpMcpServer::start(None, &state);
    let tools = dir.path().join("tools.toml");
    std::fs::write(
        &tools,
        format!(
            "[[mcp]]\nname = \"py\"\nurl = {}\ntimeout = \"60s\"\n",
            toml_str(&server.url())
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    crate::common::install_crypto_provider();
    let http = reqwest::Client::new();
    let store = BinaryStore::new().await;

    let daemon = start(&data, &tools, &mock, &store);
    daemon.log_once_it_has("MCP server up");
    let session = daemon.new_session(&http, KEY).await;
    mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("py__slow", json!({"seconds": 30})).with_id("call_slow"),
    ]));
    let in_flight = {
        let (http, url) = (
            http.clone(),
            format!("{}/sessions/{session}/chat", api(&daemon)),
        );
        tokio::spawn(async move {
            let body = json!({"messages": [{"role": "user", "content": "wait"}]});
            http.post(url).bearer_auth(KEY).json(&body).send().await
        })
    };
    while mock.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The call is journaled before it is sent; give it time to reach the server.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    kill_mid_request(daemon, in_flight).await;

    let daemon = start(&data, &tools, &mock, &store);
    daemon.log_once_it_has("MCP server up");
    mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "py__count",
        json!({}),
    )]));
    mock.push(Reply::text("it may or may not have waited"));
    let answer = post(
        &http,
        format!("{}/sessions/{session}/chat", api(&daemon)),
        json!({"messages": [{"role": "user", "content": "did it wait?"}]}),
    )
    .await;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let requests = mock.requests();
    let sent = &requests[requests.len() - 2];
    let result = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == "call_slow")
        .cloned()
        .expect("the cut-off call has a result");
    let result: Value = serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["error"]["kind"], "outcome_unknown", "{result}");
    let last = requests.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(last["content"].as_str().unwrap()).unwrap(),
        json!({"result": 1}),
        "the server saw the cut-off call once and no second run: {last}"
    );
}

#[tokio::test]
async fn an_approved_call_cut_off_by_sigkill_is_never_sent_twice() {
    let (hook_port, connections, accepted_rx) = hanging_hook();
    let dir = tempfile::tempdir().unwrap();
    let tools = hook_tools(dir.path(), hook_port, "always");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    crate::common::install_crypto_provider();
    let http = reqwest::Client::new();
    let store = BinaryStore::new().await;

    let daemon = start(&data, &tools, &mock, &store);
    let session = daemon.new_session(&http, KEY).await;
    mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("hook", json!({"event": "deploy"})).with_id("call_held"),
    ]));
    let hook_tool = json!([{"type": "function", "function": {"name": "hook"}}]);
    let held = post(
        &http,
        format!("{}/sessions/{session}/chat", api(&daemon)),
        json!({"messages": [{"role": "user", "content": "deploy"}], "tools": hook_tool}),
    )
    .await;
    assert_eq!(held["stop_reason"], "approval_required", "{held}");
    let digest = held["approvals"][0]["digest"].as_str().unwrap().to_owned();
    let decision_url = format!("{}/sessions/{session}/approvals/call_held", api(&daemon));
    let in_flight = {
        let (http, url, digest) = (http.clone(), decision_url.clone(), digest.clone());
        tokio::spawn(async move {
            let body = json!({"decision": "approve", "digest": digest});
            http.post(url).bearer_auth(KEY).json(&body).send().await
        })
    };
    tokio::task::spawn_blocking(move || accepted_rx.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the approved call reached the hook");
    kill_mid_request(daemon, in_flight).await;

    let daemon = start(&data, &tools, &mock, &store);
    // On a shared store the killed process's claim on the session is waited out first.
    let deadline = Instant::now() + Duration::from_secs(15);
    let again = loop {
        let response = http
            .post(format!(
                "{}/sessions/{session}/approvals/call_held",
                api(&daemon)
            ))
            .bearer_auth(KEY)
            .json(&json!({"decision": "approve", "digest": digest}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CONFLICT);
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap().to_owned();
        if !message.contains("another agentd instance") || Instant::now() > deadline {
            break message;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(again.contains("already decided"), "{again}");
    mock.push(Reply::text("the deploy may or may not have happened"));
    let answer = post(
        &http,
        format!("{}/sessions/{session}/chat", api(&daemon)),
        json!({"messages": [{"role": "user", "content": "did it work?"}], "tools": hook_tool}),
    )
    .await;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let result = last_result_for(&mock, "call_held");
    assert_eq!(result["error"]["kind"], "outcome_unknown", "{result}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the approved call was sent once"
    );
}
