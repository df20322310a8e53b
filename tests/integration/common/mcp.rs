//! The real MCP servers the tool-source tests talk to (`tests/mcp/`): the reference
//! `server-everything` over stdio (installed by `npm ci --prefix tests/mcp`), and a server on
//! the official Python SDK over streamable HTTP, started per test; plus waiting on `/readyz`
//! for a server's state.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{TestDaemon, toml_str};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The reference server's entry point, checked to exist.
pub(crate) fn everything_script() -> PathBuf {
    let script =
        repo().join("tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        script.exists(),
        "{} is missing: run `npm ci --prefix tests/mcp` (the README's test command does)",
        script.display()
    );
    script
}

/// `command = [...]` starting the reference server over stdio.
pub(crate) fn everything_command() -> String {
    let script = everything_script().display().to_string();
    format!("[\"node\", {}, \"stdio\"]", toml_str(&script))
}

/// `command = [...]` starting the reference server through a shell that first writes its pid
/// (the server's, as the shell execs it) to `pid_file`.
pub(crate) fn everything_command_with_pid(pid_file: &Path) -> String {
    let script = everything_script().display().to_string();
    let shell = format!(
        "echo $$ > '{}'; exec node '{}' stdio",
        pid_file.display(),
        script
    );
    format!("[\"sh\", \"-c\", {}]", toml_str(&shell))
}

/// The pid written by [`everything_command_with_pid`]'s shell.
pub(crate) fn read_pid(pid_file: &Path) -> i32 {
    std::fs::read_to_string(pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

/// SIGKILL to a process group.
pub(crate) fn kill_group(pid: i32) {
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -KILL -{pid}");
}

/// The Python SDK server over streamable HTTP; killed when dropped.
pub(crate) struct HttpMcpServer {
    child: Child,
    pub port: u16,
    pub state_dir: PathBuf,
}

impl HttpMcpServer {
    /// Starts it on `port` (one the system picks when `None`) and waits until it says it
    /// listens.
    pub(crate) fn start(port: Option<u16>, state_dir: &Path) -> Self {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/mcp/http_server.py"))
            .args(["--port", &port.unwrap_or(0).to_string(), "--state-dir"])
            .arg(state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 tests/mcp/http_server.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server output");
        assert!(
            line.starts_with("listening on"),
            "the MCP test server did not start (is `mcp` installed? pip install -r \
             .ci/requirements.txt): {line:?}"
        );
        let port = line
            .trim_end()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self {
            child,
            port,
            state_dir: state_dir.to_path_buf(),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Lines the server wrote to its `cancelled` file (one per cancelled `slow` call).
    pub(crate) fn cancelled(&self) -> usize {
        std::fs::read_to_string(self.state_dir.join("cancelled"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    /// Waits for the process to end (after `exit_now`).
    pub(crate) fn wait_exit(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for HttpMcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestDaemon {
    /// `/readyz`'s entry for the MCP server `name`.
    pub(crate) async fn mcp_status(&self, name: &str) -> Value {
        let root = self.base.trim_end_matches("/api");
        let ready: Value = self
            .http
            .get(format!("{root}/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz json");
        ready["mcp"][name].clone()
    }

    /// Waits (up to 60 s) until the MCP server's `/readyz` entry satisfies `ok`; returns it.
    pub(crate) async fn wait_mcp(&self, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.mcp_status(name).await;
            if ok(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "MCP server {name} never reached the expected state; last: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the MCP server is up.
    pub(crate) async fn wait_mcp_up(&self, name: &str) -> Value {
        self.wait_mcp(name, |s| s["state"] == "up").await
    }
}
