//! The real binary killed with SIGKILL while a tool call is in flight: after a restart the call
//! is reported to the model as "outcome unknown", never run again, and the session goes on.

use crate::common;

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use agentd_mock::{MockConfig, MockModel, Reply, ScriptedCall};
use common::binary::{self, AGENTD, Daemon};
use common::{assert_history_valid, toml_str};
use serde_json::{Value, json};

const KEY: &str = "crash-test-key";

fn start(data: &std::path::Path, tools: &std::path::Path, mock: &MockModel) -> Daemon {
    let mut command = Command::new(AGENTD);
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

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let response = http
        .post(url)
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
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

/// An agent and a session on it; returns the session id.
async fn new_session(http: &reqwest::Client, daemon: &Daemon) -> String {
    let agent = post(
        http,
        format!("{}/agents", api(daemon)),
        json!({"name": "a"}),
    )
    .await;
    let session = post(
        http,
        format!("{}/sessions", api(daemon)),
        json!({"agent_id": agent["id"]}),
    )
    .await;
    session["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_call_cut_off_by_sigkill_is_reported_outcome_unknown_and_not_rerun() {
    // A webhook target that accepts connections and never answers: the call stays in flight.
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let (accepted_tx, accepted_rx) = mpsc::channel();
    {
        let connections = connections.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in hook.incoming().map_while(Result::ok) {
                connections.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
                let _ = accepted_tx.send(());
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools.toml");
    std::fs::write(
        &tools,
        format!(
            "[[tool]]\nname = \"hook\"\ndescription = \"Posts to the hook\"\nhandler = \"http\"\noffer = false\ntimeout = \"60s\"\nparameters = {{ type = \"object\" }}\n[tool.options]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\ntimeout = \"60s\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    crate::common::install_crypto_provider();
    let http = reqwest::Client::new();

    let daemon = start(&data, &tools, &mock);
    let session = new_session(&http, &daemon).await;
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

    let daemon = start(&data, &tools, &mock);
    mock.push(Reply::text("the deploy may or may not have happened"));
    let body = json!({"messages": [{"role": "user", "content": "did it work?"}], "tools": [{"type": "function", "function": {"name": "hook"}}]});
    let answer = post(
        &http,
        format!("{}/sessions/{session}/chat", api(&daemon)),
        body,
    )
    .await;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let sent = mock.requests().last().cloned().unwrap();
    let result = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == "call_hook")
        .cloned()
        .expect("the cut-off call has a result");
    let result: Value = serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
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

    let daemon = start(&data, &tools, &mock);
    daemon.log_once_it_has("MCP server up");
    let session = new_session(&http, &daemon).await;
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

    let daemon = start(&data, &tools, &mock);
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
