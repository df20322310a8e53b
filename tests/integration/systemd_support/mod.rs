//! The real `agentd serve` under a stand-in service manager: a notify socket, signals, stderr
//! kept as a journal would, and a small HTTP client with the test key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentd_mock::MockModel;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::UnixDatagram;

use crate::common::binary::{self, AGENTD, BinaryStore};
use crate::common::{KEY, toml_str};

pub(crate) fn catalog(tools: &[&str]) -> String {
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
pub(crate) struct Daemon {
    pub process: binary::Daemon,
    pub addr: String,
    pub notify: UnixDatagram,
    pub http: reqwest::Client,
    /// The store this daemon made for itself when its setup named none.
    _own_store: Option<BinaryStore>,
}

pub(crate) struct Setup<'a> {
    pub dir: &'a Path,
    pub tools: &'a Path,
    pub mock: &'a MockModel,
    pub sets: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// The store, when a test restarts the daemon on it; otherwise each daemon gets its own.
    pub store: Option<&'a BinaryStore>,
}

impl<'a> Setup<'a> {
    /// A daemon on `dir` with `tools` against `mock`, no overrides, no extra environment.
    pub(crate) fn new(dir: &'a Path, tools: &'a Path, mock: &'a MockModel) -> Self {
        Self {
            dir,
            tools,
            mock,
            sets: &[],
            env: &[],
            store: None,
        }
    }

    /// `--set` overrides.
    pub(crate) fn sets(self, sets: &'a [&'a str]) -> Self {
        Self { sets, ..self }
    }

    /// A store kept across restarts.
    pub(crate) fn store(self, store: &'a BinaryStore) -> Self {
        Self {
            store: Some(store),
            ..self
        }
    }

    /// Extra environment variables.
    pub(crate) fn env(self, env: &'a [(&'a str, &'a str)]) -> Self {
        Self { env, ..self }
    }
}

impl Daemon {
    pub(crate) async fn start(setup: Setup<'_>) -> Daemon {
        crate::common::install_crypto_provider();
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
        let names_its_store = setup.sets.iter().any(|set| set.starts_with("storage.url"));
        let own_store = match setup.store {
            _ if names_its_store => None,
            Some(store) => {
                store.configure(&mut command);
                None
            }
            None => {
                let store = BinaryStore::new().await;
                store.configure(&mut command);
                Some(store)
            }
        };
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
            .stdout(Stdio::null());
        for (k, v) in setup.env {
            command.env(k, v);
        }
        let process = tokio::task::spawn_blocking(move || binary::spawn(command))
            .await
            .expect("spawn agentd");
        Daemon {
            addr: process.addr.clone(),
            process,
            notify,
            http: reqwest::Client::new(),
            _own_store: own_store,
        }
    }

    pub(crate) fn log(&self) -> String {
        self.process.log()
    }

    pub(crate) fn log_once_it_has(&self, needle: &str) -> String {
        self.process.log_once_it_has(needle)
    }

    pub(crate) fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// The next datagram, or `None` after `wait`.
    pub(crate) async fn datagram(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(wait, self.notify.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// Reads datagrams until one contains `needle`; returns it and everything before it.
    pub(crate) async fn expect(&self, needle: &str) -> (String, Vec<String>) {
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        crate::common::request(&self.http, method, self.url(path), body).await
    }

    pub(crate) async fn session(&self) -> String {
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

    pub(crate) async fn chat(&self, session: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/sessions/{session}/chat"),
            Some(body),
        )
        .await
    }

    /// Waits for the process to end; panics after `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.process.wait_exit(limit)
    }
}

pub(crate) fn offered_tools(request: &Value) -> Vec<String> {
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
pub(crate) fn last(mock: &MockModel) -> Value {
    mock.last_request().expect("the model was called")
}

pub(crate) fn write_tools(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tools.toml");
    std::fs::write(&path, text).unwrap();
    path
}
