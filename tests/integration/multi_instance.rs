//! Two real `agentd serve` processes on one PostgreSQL database: chats alternating between
//! them see one history; a turn running on one makes a chat on the other answer 409; an
//! instance SIGKILLed mid tool call leaves the call `outcome_unknown` on the other, never run
//! twice, once its claim on the session lapses; the other serves meanwhile.

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentd_mock::{MockConfig, MockModel, Reply, ScriptedCall};
use agentd_testpg::TestDatabase;
use common::binary::{self, AGENTD, Daemon};
use common::hook::hanging_hook;
use common::{assert_history_valid, toml_str};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "multi-instance-key";

/// One database, the files both instances read, and the mock model they share.
struct Shared {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: TestDatabase,
    tools: PathBuf,
    mock: MockModel,
    http: reqwest::Client,
}

impl Shared {
    async fn new(tools: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let db = TestDatabase::create().await;
        std::fs::write(root.join("pg-password"), db.password().unwrap_or_default()).unwrap();
        let tools_path = root.join("tools.toml");
        std::fs::write(&tools_path, tools).unwrap();
        common::install_crypto_provider();
        Self {
            _dir: dir,
            root,
            db,
            tools: tools_path,
            mock: MockModel::start(MockConfig::default()).await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    /// Starts instance `name` (its own data directory, the shared database).
    fn start(&self, name: &str) -> Daemon {
        let data = self.root.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let password = self.root.join("pg-password").display().to_string();
        let mut command = Command::new(AGENTD);
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--tools")
            .arg(&self.tools)
            .args([
                "--set",
                &format!("provider.base_url={}", toml_str(&self.mock.base_url())),
                "--set",
                &format!("storage.url={}", toml_str(&self.db.url())),
                "--set",
                &format!("storage.password={{ file = {} }}", toml_str(&password)),
                "--set",
                "storage.turn_claim_ttl=\"2s\"",
            ])
            .arg("serve")
            .env("AGENTD_API_KEY", KEY);
        binary::spawn(command)
    }

    async fn call(
        &self,
        daemon: &Daemon,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}/api{path}", daemon.addr))
            .bearer_auth(KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn session(&self, daemon: &Daemon) -> String {
        daemon.new_session(&self.http, KEY).await
    }

    async fn chat(&self, daemon: &Daemon, session: &str, text: &str) -> (StatusCode, Value) {
        self.call(
            daemon,
            reqwest::Method::POST,
            &format!("/sessions/{session}/chat"),
            Some(json!({"messages": [{"role": "user", "content": text}]})),
        )
        .await
    }

    async fn history(&self, daemon: &Daemon, session: &str) -> Vec<Value> {
        let (s, history) = self
            .call(
                daemon,
                reqwest::Method::GET,
                &format!("/sessions/{session}/history?limit=1000"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{history}");
        history["entries"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn chats_alternating_between_instances_see_one_history() {
    let shared = Shared::new("").await;
    let (a, b) = (shared.start("a"), shared.start("b"));
    let session = shared.session(&a).await;
    for (daemon, text) in [(&a, "one"), (&b, "two"), (&a, "three")] {
        shared.mock.push(Reply::text(format!("heard {text}")));
        let (s, r) = shared.chat(daemon, &session, text).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let last = shared.mock.last_request().unwrap();
    let sent: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        sent.ends_with(&["one", "heard one", "two", "heard two", "three"]),
        "the third chat, on A, was sent what B stored: {sent:?}"
    );
    let history = shared.history(&b, &session).await;
    assert_eq!(history.len(), 6, "{history:?}");
    assert_history_valid(&history);
}

#[tokio::test]
async fn a_turn_on_one_instance_makes_a_chat_on_the_other_answer_409() {
    let shared = Shared::new("").await;
    let (a, b) = (shared.start("a"), shared.start("b"));
    let session = shared.session(&a).await;
    shared
        .mock
        .push(Reply::text("slow answer").with_delay(Duration::from_millis(1500)));
    let running = {
        let (http, url) = (
            shared.http.clone(),
            format!("http://{}/api/sessions/{session}/chat", a.addr),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(KEY)
                .json(&json!({"messages": [{"role": "user", "content": "wait"}]}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    while shared.mock.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, r) = shared.chat(&b, &session, "me too").await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(r.to_string().contains("another agentd instance"), "{r}");
    assert_eq!(running.await.unwrap().unwrap(), StatusCode::CREATED);
    shared.mock.push(Reply::text("now"));
    let (s, r) = shared.chat(&b, &session, "me now").await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the claim is released when the turn ends: {r}"
    );
}

fn hook_tools(port: u16) -> String {
    format!(
        "[[tool]]\nname = \"hook\"\ndescription = \"Posts to the hook\"\nhandler = \"http\"\ntimeout = \"60s\"\nparameters = {{ type = \"object\" }}\n[tool.options]\nurl = \"http://127.0.0.1:{port}/hook\"\ntimeout = \"60s\"\n"
    )
}

#[tokio::test]
async fn a_call_cut_off_by_sigkill_on_one_instance_is_outcome_unknown_on_the_other() {
    let (port, connections, accepted) = hanging_hook();
    let shared = Shared::new(&hook_tools(port)).await;
    let (mut a, b) = (shared.start("a"), shared.start("b"));
    let session = shared.session(&a).await;
    shared.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("hook", json!({"event": "deploy"})).with_id("call_cut"),
    ]));
    let in_flight = {
        let (http, url) = (
            shared.http.clone(),
            format!("http://{}/api/sessions/{session}/chat", a.addr),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(KEY)
                .json(&json!({"messages": [{"role": "user", "content": "deploy"}]}))
                .send()
                .await
        })
    };
    tokio::task::spawn_blocking(move || accepted.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the call reached the hook");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(in_flight.await.unwrap().is_err(), "the request died with A");

    // B serves other sessions at once, and this one once A's claim has lapsed.
    let other = shared.session(&b).await;
    shared.mock.push(Reply::text("fine"));
    let (s, r) = shared.chat(&b, &other, "hello").await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    shared
        .mock
        .push(Reply::text("it may or may not have happened"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        let (s, r) = shared.chat(&b, &session, "did it work?").await;
        if s == StatusCode::CREATED {
            break r;
        }
        assert_eq!(s, StatusCode::CONFLICT, "{r}");
        assert!(Instant::now() < deadline, "A's claim never lapsed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let sent = shared.mock.last_request().unwrap();
    let result = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == "call_cut")
        .cloned()
        .expect("the cut-off call has a result");
    let result: Value = serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["error"]["kind"], "outcome_unknown", "{result}");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "never run twice");

    let a = shared.start("a");
    let history = shared.history(&a, &session).await;
    assert_history_valid(&history);
    assert!(
        history.len() >= 5,
        "A, restarted, reads what B wrote: {history:?}"
    );
}
