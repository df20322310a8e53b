//! One MCP server's life: started with the daemon, its tools listed (again when it says they
//! changed), watched until it exits, restarted with exponential backoff; stopped when a reload
//! drops or changes its entry, or the daemon stops. Its state is what `/readyz`, the service
//! status and `/metrics` show.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::service::Peer;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connect::{Connection, Events, connect};
use super::listing;
use crate::tool::{CatalogTool, McpServerSpec};

/// First wait before a restart; doubled after each failed start, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A server that ran this long before exiting is restarted after [`MIN_BACKOFF`] again.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// How often a connected server is pinged: an HTTP server that went away, or a stdio server
/// that hangs, is noticed by a ping (or a call failing on the connection) going unanswered.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Starting,
    Up,
    Down,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Up => "up",
            Phase::Down => "down",
        }
    }
}

/// A server's state as shown to operators.
#[derive(Debug, Clone)]
pub(crate) struct ServerStatus {
    pub(crate) name: String,
    pub(crate) phase: Phase,
    pub(crate) tools: usize,
    /// Times it exited or failed to start since the daemon started it.
    pub(crate) failures: u64,
}

/// A server's shared state: read by its tools' handlers and by status readers, changed by its
/// supervisor. The lock is never held across an `.await`.
pub(crate) struct Server {
    pub(crate) spec: McpServerSpec,
    state: Mutex<State>,
    tools_changed: Arc<Notify>,
    /// Woken when a call failed on the connection: the supervisor pings at once.
    suspect: Notify,
    /// `true` once the first start has come to something (up or failed).
    tried: watch::Sender<bool>,
}

struct State {
    peer: Option<Peer<RoleClient>>,
    phase: Phase,
    tools: Vec<Arc<CatalogTool>>,
    failures: u64,
    /// Each tool's concurrency limit, kept across listings and restarts so a re-listing does
    /// not reset how many calls are running.
    permits: HashMap<String, Arc<Semaphore>>,
}

impl Server {
    pub(crate) fn new(spec: McpServerSpec) -> Arc<Self> {
        Arc::new(Self {
            spec,
            state: Mutex::new(State {
                peer: None,
                phase: Phase::Starting,
                tools: Vec::new(),
                failures: 0,
                permits: HashMap::new(),
            }),
            tools_changed: Arc::new(Notify::new()),
            suspect: Notify::new(),
            tried: watch::Sender::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection calls go out on; `None` while the server is not up.
    pub(crate) fn peer(&self) -> Option<Peer<RoleClient>> {
        let state = self.state();
        (state.phase == Phase::Up)
            .then(|| state.peer.clone())
            .flatten()
    }

    /// The tools to offer: those of its last listing while it is up, none otherwise.
    pub(crate) fn tools(&self) -> Vec<Arc<CatalogTool>> {
        let state = self.state();
        if state.phase == Phase::Up {
            state.tools.clone()
        } else {
            Vec::new()
        }
    }

    pub(crate) fn status(&self) -> ServerStatus {
        let state = self.state();
        ServerStatus {
            name: self.spec.name.clone(),
            phase: state.phase,
            tools: if state.phase == Phase::Up {
                state.tools.len()
            } else {
                0
            },
            failures: state.failures,
        }
    }

    /// Waits until the first start came to something.
    pub(crate) async fn tried(&self) {
        let mut tried = self.tried.subscribe();
        let _ = tried.wait_for(|tried| *tried).await;
    }

    /// A call failed on the connection: check the server is still there.
    pub(crate) fn suspect(&self) {
        self.suspect.notify_one();
    }

    pub(crate) fn permit_for(&self, tool: &str) -> Arc<Semaphore> {
        let mut state = self.state();
        Arc::clone(
            state
                .permits
                .entry(tool.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.spec.concurrency))),
        )
    }

    fn set_up(&self, peer: Peer<RoleClient>, tools: Vec<Arc<CatalogTool>>) {
        let mut state = self.state();
        state.peer = Some(peer);
        state.phase = Phase::Up;
        state.tools = tools;
    }

    fn set_tools(&self, tools: Vec<Arc<CatalogTool>>) {
        self.state().tools = tools;
    }

    fn set_down(&self, failed: bool) {
        let mut state = self.state();
        state.peer = None;
        state.phase = Phase::Down;
        state.tools.clear();
        if failed {
            state.failures += 1;
        }
    }
}

/// Tells the daemon a server's tools or state changed.
pub(crate) trait Publish: Send + Sync + 'static {
    fn publish(&self, server: &Server);
}

/// Runs `server` until `stop` is cancelled.
pub(crate) async fn supervise(
    server: Arc<Server>,
    publisher: Arc<dyn Publish>,
    stop: CancellationToken,
) {
    let name = server.spec.name.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            attempt = start(&server) => attempt,
        };
        server.tried.send_replace(true);
        match attempt {
            Ok(connection) => {
                tracing::info!(mcp_server = %name, tools = server.status().tools, "MCP server up");
                publisher.publish(&server);
                let ending = watch_until_exit(&server, connection, &*publisher, &stop).await;
                let Some(reason) = ending else {
                    server.set_down(false);
                    publisher.publish(&server);
                    return;
                };
                tracing::warn!(mcp_server = %name, %reason, "MCP server exited; restarting");
                server.set_down(true);
                if started.elapsed() >= STABLE_RUN {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(error) => {
                tracing::error!(mcp_server = %name, %error, retry_in_s = backoff.as_secs(), "MCP server did not start; its tools are not offered");
                server.set_down(true);
            }
        }
        publisher.publish(&server);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects and lists the tools, within the entry's `start_timeout`.
async fn start(server: &Arc<Server>) -> Result<Connection, String> {
    let spec = &server.spec;
    let events = Events::new(&spec.name, Arc::clone(&server.tools_changed));
    let started = tokio::time::timeout(spec.start_timeout, async {
        let connection = connect(spec, events).await?;
        let tools = listing::list(server, connection.peer()).await?;
        Ok::<_, String>((connection, tools))
    })
    .await;
    match started {
        Ok(Ok((connection, tools))) => {
            server.set_up(connection.peer().clone(), tools);
            Ok(connection)
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(format!(
            "not started and listed within start_timeout ({}s)",
            spec.start_timeout.as_secs_f64()
        )),
    }
}

/// Serves the connection: lists again when told the tools changed, returns why it ended
/// (`None`: stopped on purpose, the connection closed).
async fn watch_until_exit(
    server: &Arc<Server>,
    connection: Connection,
    publisher: &dyn Publish,
    stop: &CancellationToken,
) -> Option<String> {
    let peer = connection.peer().clone();
    let closer = connection.cancellation_token();
    let ended = connection.waiting();
    tokio::pin!(ended);
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let check = tokio::select! {
            _ = ping.tick() => true,
            () = server.suspect.notified() => true,
            () = stop.cancelled() => {
                closer.cancel();
                let _ = ended.await;
                return None;
            }
            () = server.tools_changed.notified() => {
                match tokio::time::timeout(server.spec.start_timeout, listing::list(server, &peer)).await {
                    Ok(Ok(tools)) => {
                        server.set_tools(tools);
                        publisher.publish(server);
                    }
                    Ok(Err(error)) => tracing::warn!(mcp_server = %server.spec.name, %error, "listing tools again failed; keeping the previous list"),
                    Err(_) => tracing::warn!(mcp_server = %server.spec.name, "listing tools again timed out; keeping the previous list"),
                }
                false
            }
            quit = &mut ended => {
                return Some(match quit {
                    Ok(reason) => format!("connection ended ({})", quit_reason(&reason)),
                    Err(error) => format!("connection task failed: {error}"),
                });
            }
        };
        if check && !answers_ping(&peer).await {
            closer.cancel();
            let _ = ended.await;
            return Some(format!(
                "did not answer a ping within {}s",
                PING_TIMEOUT.as_secs()
            ));
        }
    }
}

async fn answers_ping(peer: &rmcp::service::Peer<RoleClient>) -> bool {
    let ping = peer.send_request(rmcp::model::PingRequest::default().into());
    matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)))
}

fn quit_reason(reason: &rmcp::service::QuitReason) -> String {
    match reason {
        rmcp::service::QuitReason::Cancelled => "cancelled".into(),
        rmcp::service::QuitReason::Closed => "the server closed it".into(),
        rmcp::service::QuitReason::JoinError(error) => format!("its task failed: {error}"),
        other => format!("{other:?}"),
    }
}
