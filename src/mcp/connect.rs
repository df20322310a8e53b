//! Reaching one MCP server: a child process over stdio (its own process group, a small
//! inherited environment, stderr to the log line by line) or a streamable HTTP endpoint; then
//! the MCP handshake, with agentd as the client. Notifications the server sends come back
//! through [`Events`].

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::Notify;

use crate::tool::{McpServerSpec, McpTransport};

/// A connected server.
pub(super) type Connection = RunningService<RoleClient, Events>;

/// Variables a child inherits from agentd's environment; everything else it gets is named in
/// its entry's `env`, so agentd's own settings and secrets never reach it.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];
/// Longest stderr line logged as one event; longer lines are logged in pieces.
const MAX_STDERR_LINE: u64 = 4096;
/// For connecting to an HTTP server (each request; the stream of a call has the call's timeout).
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What agentd does with a server's notifications: a changed tool list wakes the supervisor
/// to list again; progress goes to the log (debug) under the server's name.
#[derive(Clone)]
pub(super) struct Events {
    server: Arc<str>,
    tools_changed: Arc<Notify>,
}

impl Events {
    pub(super) fn new(server: &str, tools_changed: Arc<Notify>) -> Self {
        Self {
            server: server.into(),
            tools_changed,
        }
    }
}

impl ClientHandler for Events {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("agentd", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(mcp_server = %self.server, "tool list changed; listing again");
        self.tools_changed.notify_one();
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        tracing::debug!(
            mcp_server = %self.server,
            progress = params.progress,
            total = params.total,
            "tool call progress"
        );
    }
}

/// Starts (or connects to) the server and completes the MCP handshake.
pub(super) async fn connect(spec: &McpServerSpec, events: Events) -> Result<Connection, String> {
    match &spec.transport {
        McpTransport::Stdio { command, env } => {
            let mut child = tokio::process::Command::new(&command[0]);
            child.args(&command[1..]).env_clear();
            for name in INHERITED_ENV {
                if let Some(value) = std::env::var_os(name) {
                    child.env(name, value);
                }
            }
            for (name, value) in env {
                let value = value.resolve().map_err(|e| format!("env.{name}: {e}"))?;
                child.env(name, value);
            }
            let mut wrapped = CommandWrap::from(child);
            // Its own process group, killed as a whole: `npx` and shells start the real
            // server as a grandchild.
            wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
            let (transport, stderr) = TokioChildProcess::builder(wrapped)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start `{}`: {e}", command[0]))?;
            if let Some(stderr) = stderr {
                tokio::spawn(log_stderr(spec.name.clone(), stderr));
            }
            events
                .serve(transport)
                .await
                .map_err(|e| format!("MCP handshake failed: {e}"))
        }
        McpTransport::Http { url, headers } => {
            let mut custom = HashMap::new();
            for (name, value) in headers {
                let value = value
                    .resolve()
                    .map_err(|e| format!("headers.{name}: {e}"))?;
                let value = reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| format!("headers.{name}: not a valid header value"))?;
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("headers: invalid name `{name}`"))?;
                custom.insert(name, value);
            }
            let client = http_client(url.starts_with("https:"))?;
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
            let transport = StreamableHttpClientTransport::with_client(client, config);
            events
                .serve(transport)
                .await
                .map_err(|e| format!("MCP handshake failed: {e}"))
        }
    }
}

/// A client that does not follow redirects and ignores proxy variables (the server is named
/// by the operator, usually on loopback); CA roots only for https.
fn http_client(https: bool) -> Result<reqwest::Client, String> {
    crate::daemon::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(HTTP_CONNECT_TIMEOUT);
    let builder = if https {
        builder
    } else {
        builder.tls_certs_only(Vec::new())
    };
    builder
        .build()
        .map_err(|e| format!("cannot create the HTTP client: {e}"))
}

/// Logs the child's stderr, one event per line (long lines in pieces), until it closes.
async fn log_stderr(server: String, stderr: tokio::process::ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_STDERR_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if !text.is_empty() {
                    tracing::info!(mcp_server = %server, "stderr: {text}");
                }
            }
        }
    }
}
