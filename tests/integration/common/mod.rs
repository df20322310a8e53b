//! Shared harness for the integration tests: the daemon in-process on 127.0.0.1:0 against the
//! mock model, a real SQLite file in a temp directory, test handlers, and a small HTTP client.

pub(crate) mod binary;
pub(crate) mod contract;
pub(crate) mod handlers;
pub(crate) mod hook;
pub(crate) mod mcp;
pub(crate) mod sse;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentd::config::Config;
use agentd::daemon::App;
use agentd::tool::Registry;
use agentd_mock::{MockConfig, MockModel};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) const KEY: &str = "test-key-0123456789";

/// The catalog most tests use: an echo tool and the test handlers, none offered by default
/// (a request offers one by naming it in `tools`).
pub(crate) const TEST_TOOLS: &str = r#"
[[tool]]
name = "echo"
description = "Returns its arguments"
handler = "echo"
offer = false
parameters = { type = "object", properties = { text = { type = "string" }, n = { type = "integer", minimum = 0 } }, required = ["text"] }

[[tool]]
name = "slow"
description = "Sleeps for ms milliseconds, then answers"
handler = "sleep"
offer = false
timeout = "300ms"
parameters = { type = "object", properties = { ms = { type = "integer" } }, required = ["ms"] }

[[tool]]
name = "slow_long"
description = "Sleeps for ms milliseconds, then answers; waits up to 10s"
handler = "sleep"
offer = false
timeout = "10s"
parameters = { type = "object", properties = { ms = { type = "integer" } }, required = ["ms"] }

[[tool]]
name = "explode"
description = "Panics"
handler = "panic"
offer = false
parameters = { type = "object", properties = {} }

[[tool]]
name = "fail"
description = "Always fails"
handler = "fail"
offer = false
parameters = { type = "object", properties = {} }
"#;

/// How to start a daemon.
pub(crate) struct Options {
    pub tools_toml: Option<String>,
    pub sets: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub mock: Option<MockModel>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tools_toml: Some(TEST_TOOLS.to_owned()),
            sets: Vec::new(),
            data_dir: None,
            mock: None,
        }
    }
}

pub(crate) struct TestDaemon {
    pub base: String,
    pub mock: MockModel,
    pub data_dir: PathBuf,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    _tmp: Option<Arc<tempfile::TempDir>>,
    options_tools: Option<String>,
    options_sets: Vec<String>,
    /// The test's PostgreSQL database when the suite runs on PostgreSQL.
    _postgres: Option<Arc<agentd_testpg::TestDatabase>>,
}

/// Whether the suite runs its daemons on PostgreSQL (`AGENTD_TEST_STORE=postgres`) rather than
/// SQLite: one store-neutral suite, run once per store.
pub(crate) fn on_postgres() -> bool {
    std::env::var("AGENTD_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// The TLS crypto provider the test's own HTTP clients use (ring, as in the daemon).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn registry() -> Registry {
    let mut registry = Registry::builtin();
    handlers::register(&mut registry);
    registry
}

impl TestDaemon {
    pub(crate) async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub(crate) async fn start_with(options: Options) -> Self {
        let (tmp, data_dir) = match options.data_dir {
            Some(dir) => (None, dir),
            None => {
                let tmp = Arc::new(tempfile::tempdir().expect("temp dir"));
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let mock = match options.mock {
            Some(mock) => mock,
            None => MockModel::start(MockConfig::default())
                .await
                .expect("mock model"),
        };
        std::fs::write(data_dir.join("test-key"), KEY).expect("key file");
        let mut sets = vec![
            "server.listen=\"127.0.0.1:0\"".to_owned(),
            format!(
                "storage.data_dir={}",
                toml_str(&data_dir.display().to_string())
            ),
            format!("provider.base_url={}", toml_str(&mock.base_url())),
            "provider.model=\"mock-model\"".to_owned(),
            "provider.max_attempts=3".to_owned(),
            "provider.backoff_base=\"10ms\"".to_owned(),
            format!(
                "auth.api_keys=[{{ file = {} }}]",
                toml_str(&data_dir.join("test-key").display().to_string())
            ),
        ];
        if let Some(tools) = &options.tools_toml {
            let path = data_dir.join("tools.toml");
            std::fs::write(&path, tools).expect("tools file");
            sets.push(format!(
                "tools.catalog={}",
                toml_str(&path.display().to_string())
            ));
        }
        let mut options_sets = options.sets.clone();
        let postgres = if on_postgres()
            && !options_sets.iter().any(|s| s.starts_with("storage.url"))
        {
            let db = Arc::new(agentd_testpg::TestDatabase::create().await);
            let password = data_dir.join("postgres-password");
            std::fs::write(&password, db.password().unwrap_or_default()).expect("password file");
            options_sets.push(format!("storage.url={}", toml_str(&db.url())));
            options_sets.push(format!(
                "storage.password={{ file = {} }}",
                toml_str(&password.display().to_string())
            ));
            Some(db)
        } else {
            None
        };
        sets.extend(options_sets.iter().cloned());
        let config = Config::load(None, &sets).expect("config");
        let app = Arc::new(App::build(config, registry()).await.expect("app builds"));
        let listener = app.bind().await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server = {
            let (app, shutdown) = (app.clone(), shutdown.clone());
            tokio::spawn(async move { app.serve(listener, shutdown).await })
        };
        Self {
            base: format!("http://{addr}/api"),
            mock,
            data_dir,
            app,
            http: reqwest::Client::new(),
            shutdown,
            server,
            _tmp: tmp,
            options_tools: options.tools_toml,
            options_sets,
            _postgres: postgres,
        }
    }

    /// Stops the daemon gracefully and starts a new one on the same data and mock model.
    pub(crate) async fn restart(self) -> Self {
        let tmp = self._tmp.clone();
        let postgres = self._postgres.clone();
        let options = Options {
            tools_toml: self.options_tools.clone(),
            sets: self.options_sets.clone(),
            data_dir: Some(self.data_dir.clone()),
            mock: None,
        };
        let mock = self.stop().await;
        let mut next = Self::start_with(Options {
            mock: Some(mock),
            ..options
        })
        .await;
        next._tmp = tmp;
        next._postgres = postgres;
        next
    }

    /// Stops the daemon; returns the mock model for reuse.
    pub(crate) async fn stop(self) -> MockModel {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        self.mock
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        request(&self.http, method, self.url(path), body).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Creates an agent, a user and a session the way Julep's guide does; returns the session id.
    pub(crate) async fn session(&self) -> String {
        let (s, agent) = self
            .post(
                "/agents",
                json!({"name": "Helper", "instructions": "Be brief."}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{agent}");
        let (s, user) = self.post("/users", json!({"name": "Ada"})).await;
        assert_eq!(s, StatusCode::CREATED, "{user}");
        let (s, session) = self
            .post(
                "/sessions",
                json!({"agent_id": agent["id"], "user_id": user["id"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{session}");
        session["id"].as_str().expect("session id").to_owned()
    }

    pub(crate) async fn chat(&self, session: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/sessions/{session}/chat"), body).await
    }

    /// The `/metrics` text (it is served at the root, outside the API's base path).
    pub(crate) async fn metrics(&self) -> String {
        let root = self.base.trim_end_matches("/api");
        let (_, metrics) = request(
            &self.http,
            reqwest::Method::GET,
            format!("{root}/metrics"),
            None,
        )
        .await;
        metrics.as_str().unwrap_or_default().to_owned()
    }

    /// The stored history entries of a session.
    pub(crate) async fn history(&self, session: &str) -> Vec<Value> {
        let (s, h) = self
            .get(&format!("/sessions/{session}/history?limit=1000"))
            .await;
        assert_eq!(s, StatusCode::OK, "{h}");
        h["entries"].as_array().cloned().unwrap_or_default()
    }
}

/// One authorized request; the body comes back as JSON (or as a string when it is not JSON).
pub(crate) async fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url).bearer_auth(KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

pub(crate) fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A request tool entry naming a tool (a catalog tool when the name is in the catalog).
pub(crate) fn tool(name: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "description": name, "parameters": {"type": "object", "properties": {}}}})
}

/// A user message body.
pub(crate) fn say(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// Asserts that every tool call in a history has exactly one result after it.
pub(crate) fn assert_history_valid(entries: &[Value]) {
    let mut pending: Vec<String> = Vec::new();
    for e in entries {
        if let Some(calls) = e["tool_calls"].as_array() {
            assert!(
                pending.is_empty(),
                "new tool calls while {pending:?} still pending"
            );
            pending.extend(
                calls
                    .iter()
                    .map(|c| c["id"].as_str().unwrap_or_default().to_owned()),
            );
        } else if e["role"] == "tool" {
            let id = e["tool_call_id"].as_str().unwrap_or_default();
            let at = pending
                .iter()
                .position(|p| p == id)
                .unwrap_or_else(|| panic!("result for unknown call {id}"));
            pending.remove(at);
        } else {
            assert!(
                pending.is_empty(),
                "{} message while {pending:?} still pending",
                e["role"]
            );
        }
    }
}
