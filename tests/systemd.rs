//! The real binary under a stand-in service manager: readiness and watchdog datagrams on
//! `NOTIFY_SOCKET`, SIGHUP catalog reloads (good and bad), SIGTERM during a tool call that
//! never answers, and the `/metrics` series.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd::mock_model::{MockConfig, MockModel, Reply, ScriptedCall};
use common::{KEY, assert_history_valid, say, toml_str};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::UnixDatagram;

const AGENTD: &str = env!("CARGO_BIN_EXE_agentd");

fn catalog(tools: &[&str]) -> String {
    tools
        .iter()
        .map(|name| {
            format!(
                "[[tool]]\nname = \"{name}\"\ndescription = \"Returns its arguments\"\nhandler = \"echo\"\n\
                 parameters = {{ type = \"object\", properties = {{ text = {{ type = \"string\" }} }} }}\n\n"
            )
        })
        .collect()
}

/// A running `agentd serve` with its notify socket; killed when dropped.
struct Daemon {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
    notify: UnixDatagram,
    http: reqwest::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup<'a> {
    dir: &'a Path,
    tools: &'a Path,
    mock: &'a MockModel,
    sets: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
}

impl Daemon {
    async fn start(setup: Setup<'_>) -> Daemon {
        agentd::app::install_crypto_provider();
        let socket_path = setup.dir.join(format!(
            "notify-{}",
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("x")
        ));
        let notify = UnixDatagram::bind(&socket_path).expect("bind notify socket");
        let mut command = Command::new(AGENTD);
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(setup.dir.join("data"))
            .arg("--tools")
            .arg(setup.tools)
            .arg("--set")
            .arg(format!(
                "provider.base_url={}",
                toml_str(&setup.mock.base_url())
            ))
            .args(["--set", "provider.max_attempts=1"]);
        for set in setup.sets {
            command.args(["--set", set]);
        }
        command
            .arg("serve")
            .env_remove("AGENTD_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("AGENTD_API_KEY", KEY)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in setup.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn agentd");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        // Read stderr for the whole run, as a journal would.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut daemon = Daemon {
            child,
            addr: String::new(),
            stderr: log,
            notify,
            http: reqwest::Client::new(),
        };
        daemon.addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("agentd reports its address: {}", daemon.log()));
        daemon
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The next datagram, or `None` after `wait`.
    async fn datagram(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(wait, self.notify.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// Reads datagrams until one contains `needle`; returns it and everything before it.
    async fn expect(&self, needle: &str) -> (String, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(msg) = self.datagram(Duration::from_millis(500)).await {
                if msg.lines().any(|l| l == needle) {
                    return (msg, seen);
                }
                seen.push(msg);
            }
        }
        panic!("no `{needle}` datagram; got {seen:?}\nlog:\n{}", self.log());
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn session(&self) -> String {
        let (s, agent) = self
            .call(
                reqwest::Method::POST,
                "/api/agents",
                Some(json!({"name": "Helper"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{agent}");
        let (s, session) = self
            .call(
                reqwest::Method::POST,
                "/api/sessions",
                Some(json!({"agent_id": agent["id"]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{session}");
        session["id"].as_str().unwrap().to_owned()
    }

    async fn chat(&self, session: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/sessions/{session}/chat"),
            Some(body),
        )
        .await
    }

    /// Waits for the process to end; panics after `limit`.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "agentd still running after {limit:?}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn offered_tools(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The model request of the latest chat (the mock calls an offered tool first, then answers).
fn last(mock: &MockModel) -> Value {
    mock.last_request().expect("the model was called")
}

fn write_tools(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tools.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_the_port_answers_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha", "beta"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let mut daemon = Daemon::start(Setup {
        dir: dir.path(),
        tools: &tools,
        mock: &mock,
        sets: &[],
        env: &[("WATCHDOG_USEC", "200000")],
    })
    .await;
    let (ready, before) = daemon.expect("READY=1").await;
    assert!(
        before.iter().all(|m| !m.contains("WATCHDOG=1")),
        "no watchdog ping before readiness: {before:?}"
    );
    // READY=1 means the port already answers.
    let health = reqwest::get(daemon.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        ready.contains(&format!("STATUS=listening on {}, 2 tools", daemon.addr)),
        "{ready}"
    );

    let started = Instant::now();
    let mut pings = 0;
    while pings < 4 && started.elapsed() < Duration::from_secs(5) {
        if let Some(msg) = daemon.datagram(Duration::from_millis(500)).await
            && msg == "WATCHDOG=1"
        {
            pings += 1;
        }
    }
    assert_eq!(pings, 4, "watchdog pings every 100ms");

    daemon.signal("TERM");
    daemon.expect("STOPPING=1").await;
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_for_another_pid_is_ignored_and_no_socket_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(Setup {
        dir: dir.path(),
        tools: &tools,
        mock: &mock,
        sets: &[],
        env: &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")],
    })
    .await;
    daemon.expect("READY=1").await;
    let mut extra = Vec::new();
    while let Some(msg) = daemon.datagram(Duration::from_millis(400)).await {
        extra.push(msg);
    }
    assert!(extra.is_empty(), "watchdog meant for pid 1: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_a_good_catalog_and_keeps_the_old_one_when_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(Setup {
        dir: dir.path(),
        tools: &tools,
        mock: &mock,
        sets: &[],
        env: &[],
    })
    .await;
    daemon.expect("READY=1").await;
    let session = daemon.session().await;
    let (s, body) = daemon.chat(&session, say("hi")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(offered_tools(&last(&mock)), ["alpha"]);

    write_tools(dir.path(), &catalog(&["gamma", "delta"]));
    daemon.signal("HUP");
    let (reloading, _) = daemon.expect("RELOADING=1").await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let (ready, _) = daemon.expect("READY=1").await;
    assert!(ready.contains("2 tools"), "{ready}");
    let (s, body) = daemon.chat(&session, say("again")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(offered_tools(&last(&mock)), ["gamma", "delta"]);

    write_tools(
        dir.path(),
        "[[tool]]\nname = \"broken\"\ndescription = \"x\"\nhandler = \"carrier_pigeon\"\nparameters = { type = \"object\" }\n",
    );
    daemon.signal("HUP");
    daemon.expect("RELOADING=1").await;
    let (ready, _) = daemon.expect("READY=1").await;
    assert!(ready.contains("failed"), "{ready}");
    assert!(ready.contains("2 tools kept"), "{ready}");
    let (s, body) = daemon.chat(&session, say("still there?")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(offered_tools(&last(&mock)), ["gamma", "delta"]);
    let log = daemon.log();
    assert!(log.contains("carrier_pigeon"), "problem logged:\n{log}");
    assert!(log.contains("keeping the previous one"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hung_tool_call_drains_cancels_and_history_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    // A webhook that accepts and never answers.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let (accepted_tx, accepted_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hook.incoming().map_while(Result::ok) {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    let tools = write_tools(
        dir.path(),
        &format!(
            "[[tool]]\nname = \"hook\"\ndescription = \"Calls the hook\"\nhandler = \"http\"\ntimeout = \"30s\"\n\
             parameters = {{ type = \"object\", properties = {{ text = {{ type = \"string\" }} }} }}\n\
             [tool.options]\nurl = \"http://{hook_addr}/hook\"\nallowed_hosts = [\"127.0.0.1\"]\ntimeout = \"30s\"\n"
        ),
    );
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let mut daemon = Daemon::start(Setup {
        dir: dir.path(),
        tools: &tools,
        mock: &mock,
        sets: &["server.drain_timeout=\"1s\""],
        env: &[],
    })
    .await;
    daemon.expect("READY=1").await;
    let session = daemon.session().await;
    mock.push(Reply::tool_calls(vec![
        ScriptedCall::new("hook", json!({"text": "ping"})).with_id("call_hung"),
    ]));
    let url = daemon.url(&format!("/api/sessions/{session}/chat"));
    let chat = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(KEY)
            .json(&say("call the hook"))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::task::spawn_blocking(move || accepted_rx.recv_timeout(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("the tool call reaches the hook");

    let signalled = Instant::now();
    daemon.signal("TERM");
    daemon.expect("STOPPING=1").await;
    let status = daemon.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(signalled.elapsed() < Duration::from_secs(8));
    let _ = tokio::time::timeout(Duration::from_secs(5), chat).await;
    drop(daemon);

    let daemon = Daemon::start(Setup {
        dir: dir.path(),
        tools: &tools,
        mock: &mock,
        sets: &[],
        env: &[],
    })
    .await;
    daemon.expect("READY=1").await;
    let (s, history) = daemon
        .call(
            reqwest::Method::GET,
            &format!("/api/sessions/{session}/history?limit=1000"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let entries = history["entries"].as_array().cloned().unwrap_or_default();
    assert_history_valid(&entries);
    let result = entries
        .iter()
        .find(|e| e["role"] == "tool" && e["tool_call_id"] == "call_hung")
        .unwrap_or_else(|| panic!("a result for the hung call: {entries:?}"));
    assert!(
        result["content"].to_string().contains("cancelled"),
        "{result}"
    );
    mock.push(Reply::text("Back."));
    let (s, body) = daemon.chat(&session, say("are you back?")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_key_and_expose_every_series() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), &catalog(&["alpha"]));
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let daemon = Daemon::start(Setup {
        dir: dir.path(),
        tools: &tools,
        mock: &mock,
        sets: &[],
        env: &[],
    })
    .await;
    daemon.expect("READY=1").await;
    let session = daemon.session().await;
    mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "alpha",
        json!({"text": "x"}),
    )]));
    let (s, body) = daemon.chat(&session, say("use alpha")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    mock.push(Reply::text("Streamed."));
    let streamed = daemon
        .http
        .post(daemon.url(&format!("/api/sessions/{session}/chat")))
        .bearer_auth(KEY)
        .json(&json!({"messages": [{"role": "user", "content": "stream it"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    let events = streamed.text().await.unwrap();
    assert!(events.contains("Streamed."), "{events}");

    let anonymous = reqwest::get(daemon.url("/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (s, text) = daemon.call(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().expect("text body").to_owned();
    for needle in [
        "agentd_http_requests_total{route=\"/api/sessions/{id}/chat\",method=\"POST\",status=\"201\"} 1",
        "agentd_http_request_duration_seconds_bucket{route=\"/api/sessions/{id}/chat\"",
        "agentd_model_calls_total{provider=",
        "outcome=\"ok\"} 3",
        "agentd_model_call_duration_seconds_count",
        "agentd_tool_calls_total{tool=\"alpha\",outcome=\"ok\"} 1",
        "agentd_tool_call_duration_seconds_sum{tool=\"alpha\",outcome=\"ok\"}",
        "agentd_turn_overhead_seconds_count 2",
        "agentd_active_turns 0",
        "agentd_active_streams 0",
        "agentd_http_requests_total{route=\"/api/sessions/{id}/chat\",method=\"POST\",status=\"200\"} 1",
        "agentd_turn_steps_count 2",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(!text.contains(&session), "raw ids never become labels");
}
