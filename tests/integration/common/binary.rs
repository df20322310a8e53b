//! The real `agentd` binary as a child process: its stderr drained for the whole run (as a
//! journal would), its bound address read from the `agentd ready addr=...` line, and killed
//! when the test lets go of it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) const AGENTD: &str = env!("CARGO_BIN_EXE_agentd");

pub(crate) struct Daemon {
    pub child: Child,
    /// `host:port` the daemon listens on.
    pub addr: String,
    log: Arc<Log>,
}

/// The lines the daemon wrote to stderr, and a signal for each new one.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// Starts `command` (an `agentd ... serve` invocation) and waits until it reports its address.
pub(crate) fn spawn(mut command: Command) -> Daemon {
    let mut child = command
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentd");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Log::default());
    let (tx, rx) = mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                log.lines.lock().unwrap().push(line);
                log.grew.notify_all();
            }
        });
    }
    let mut daemon = Daemon {
        child,
        addr: String::new(),
        log,
    };
    daemon.addr = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("agentd did not report its address:\n{}", daemon.log()));
    daemon
}

impl Daemon {
    /// The daemon's API URL for `path` (`/sessions`, say).
    pub(crate) fn api_url(&self, path: &str) -> String {
        format!("http://{}/api{path}", self.addr)
    }

    /// POSTs `body` to the API's `path` with the API key `key`; returns the status and the
    /// JSON answer (`null` when the answer is not JSON).
    pub(crate) async fn post(
        &self,
        http: &reqwest::Client,
        key: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = http
            .post(self.api_url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new agent and a session on it, made with the API key `key`; returns the session id.
    pub(crate) async fn new_session(&self, http: &reqwest::Client, key: &str) -> String {
        let (status, agent) = self.post(http, key, "/agents", json!({"name": "a"})).await;
        assert_eq!(status, StatusCode::CREATED, "{agent}");
        let (status, session) = self
            .post(http, key, "/sessions", json!({"agent_id": agent["id"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        session["id"].as_str().expect("session id").to_owned()
    }

    /// Everything the daemon logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lines.lock().unwrap().join("\n")
    }

    /// Everything the daemon logged, once it has logged a line containing `needle` (a line
    /// can reach the log after the notify message sent after it). Fails the test after 10 s.
    pub(crate) fn log_once_it_has(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut lines = self.log.lines.lock().unwrap();
        while !lines.iter().any(|line| line.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "agentd never logged `{needle}`:\n{}",
                lines.join("\n")
            );
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
        lines.join("\n")
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "agentd still running after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store a test's `agentd` processes share across restarts: SQLite in their data
/// directory, or, when the suite runs on PostgreSQL (`AGENTD_TEST_STORE=postgres`), one fresh
/// database whose password is read from a file.
pub(crate) struct BinaryStore {
    postgres: Option<(agentd_testpg::TestDatabase, tempfile::TempDir)>,
}

impl BinaryStore {
    pub(crate) async fn new() -> Self {
        if !super::on_postgres() {
            return Self { postgres: None };
        }
        let db = agentd_testpg::TestDatabase::create().await;
        let dir = tempfile::tempdir().expect("password dir");
        std::fs::write(
            dir.path().join("password"),
            db.password().unwrap_or_default(),
        )
        .expect("password file");
        Self {
            postgres: Some((db, dir)),
        }
    }

    /// Adds the store's settings to an `agentd` invocation. On PostgreSQL a killed process's
    /// claim on a session lapses after 2 s rather than the default 30 s.
    pub(crate) fn configure(&self, command: &mut Command) {
        let Some((db, dir)) = &self.postgres else {
            return;
        };
        let password = dir.path().join("password").display().to_string();
        command.args([
            "--set",
            &format!("storage.url={}", super::toml_str(&db.url())),
            "--set",
            &format!(
                "storage.password={{ file = {} }}",
                super::toml_str(&password)
            ),
            "--set",
            "storage.turn_claim_ttl=\"2s\"",
        ]);
    }
}
