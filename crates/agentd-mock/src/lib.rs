//! agentd-mock: an OpenAI-compatible mock model server for tests, the offline demo and
//! benchmarks. It depends on nothing of agentd.
//!
//! It speaks the chat-completions wire format on its own terms (plain JSON, no agentd types),
//! so it catches serialization mistakes: requests are checked as strictly as OpenAI checks them
//! (unknown fields, tool calls without results, malformed tools are answered with 400).
//!
//! Each request takes the next scripted [`Reply`] if one is queued, else gets the default
//! behaviour: echo the user's text, call one fitting tool with arguments made from its schema
//! (or exactly the calls named by `!call NAME {json}` lines), and summarize tool results.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use agentd_mock::{MockConfig, MockModel, Reply, ScriptedCall};
//! let mock = MockModel::start(MockConfig::default()).await?;
//! mock.push(Reply::tool_calls(vec![ScriptedCall::raw("send_email", "{not json")]));
//! mock.push(Reply::text("Sent."));
//! // ... point the provider at mock.base_url(), run a turn ...
//! assert_eq!(mock.request_count(), 2);
//! mock.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Out of process (`mock-model` binary), the same is reachable under `/_mock/`: `POST script`,
//! `GET|DELETE requests`, `GET recorded`, `GET stats`, `POST reset`, `POST config`.

mod arguments;
mod behaviour;
mod completion;
mod control;
mod conversation;
mod json_view;
mod message;
mod request_body;
mod script;
mod script_json;
mod serve;
mod server;
mod state;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use script::{Reply, ScriptedCall};
pub use state::{MockStats, RecordedRequest};

use state::Shared;

/// How long a connection may take to send a request's headers (or stay idle between requests).
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`MockModel::shutdown`] waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Added before every answer.
    pub latency: Duration,
    /// Keep every request body (turn off for benchmarks).
    pub record: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            record: true,
        }
    }
}

/// A running mock server. Dropping it (or [`MockModel::shutdown`]) stops the server.
pub struct MockModel {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MockModel {
    /// Serves on a fresh port of 127.0.0.1.
    pub async fn start(config: MockConfig) -> std::io::Result<MockModel> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, config).await
    }

    /// Serves on `listener` (in the background, on the current runtime).
    pub async fn start_on(listener: TcpListener, config: MockConfig) -> std::io::Result<MockModel> {
        let addr = listener.local_addr()?;
        let shared = Shared::new(config.latency, config.record);
        let app = server::router(Arc::clone(&shared));
        // Cancelled by a stop request or by the handle being dropped.
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve::serve(listener, app, stop.clone(), HEADER_TIMEOUT));
        Ok(MockModel {
            shared,
            addr,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`, the base URL an OpenAI client appends `/chat/completions` to.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a reply for the next request without one.
    pub fn push(&self, reply: Reply) {
        self.shared.push([reply]);
    }

    /// Queues several replies in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.push(replies);
    }

    /// Scripted replies not yet used.
    pub fn pending_replies(&self) -> usize {
        self.shared.pending_replies()
    }

    /// Recorded request bodies, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.bodies()
    }

    /// The most recent recorded request body.
    pub fn last_request(&self) -> Option<Value> {
        self.shared.last_body()
    }

    /// Recorded requests with arrival time, path and headers.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.recorded()
    }

    /// Chat-completions requests received since start or [`MockModel::reset`], recorded or not.
    pub fn request_count(&self) -> usize {
        usize::try_from(self.shared.request_count()).unwrap_or(usize::MAX)
    }

    /// Forgets recorded requests (counters stay).
    pub fn clear_requests(&self) {
        self.shared.clear_recorded();
    }

    /// Forgets the script, recorded requests and counters.
    pub fn reset(&self) {
        self.shared.reset();
    }

    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    pub fn set_recording(&self, on: bool) {
        self.shared.set_recording(on);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.set_latency(latency);
    }

    /// Stops accepting, lets open responses finish (at most 5 s), then returns.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for MockModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockModel")
            .field("addr", &self.addr)
            .field("stats", &self.shared.stats())
            .finish()
    }
}
