//! The daemon's MCP servers together: started from the catalog's `[[mcp]]` entries, their
//! running tools joined to the catalog turns start with (republished whenever one comes up,
//! goes down or lists new tools), reconciled on reload (only servers whose entry changed are
//! restarted), stopped on shutdown, and reported to `/readyz`, the service status and
//! `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::server::{Phase, Publish, Server, ServerStatus, supervise};
use crate::daemon::notify::Notifier;
use crate::tool::{Catalog, McpServerSpec};
use crate::turn::Engine;

/// Owns the MCP servers; cheap to clone.
#[derive(Clone)]
pub(crate) struct McpHub {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<Engine>,
    state: Mutex<State>,
    /// Set once the service manager is known; status changes are sent to it.
    notifier: OnceLock<Notifier>,
}

struct State {
    /// The catalog as compiled from tools.toml; running servers' tools are added to it.
    base: Arc<Catalog>,
    servers: BTreeMap<String, Running>,
}

struct Running {
    server: Arc<Server>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The publisher handed to supervisors: weak, so a dropped daemon's servers stop publishing.
struct Publisher(std::sync::Weak<Inner>);

impl Publish for Publisher {
    fn publish(&self, server: &Server) {
        if let Some(inner) = self.0.upgrade() {
            let status = server.status();
            crate::telemetry::metrics().record_mcp_server(
                &status.name,
                status.phase == Phase::Up,
                status.tools,
                status.failures,
            );
            inner.publish();
        }
    }
}

impl McpHub {
    /// Gives `engine` the catalog and starts every server it declares. Must run inside the
    /// tokio runtime.
    pub(crate) fn start(engine: Arc<Engine>, catalog: Catalog) -> Self {
        let catalog = Arc::new(catalog);
        let inner = Arc::new(Inner {
            engine,
            state: Mutex::new(State {
                base: Arc::clone(&catalog),
                servers: BTreeMap::new(),
            }),
            notifier: OnceLock::new(),
        });
        let hub = Self { inner };
        hub.reconcile(catalog);
        hub
    }

    /// Reports status changes to the service manager from now on.
    pub(crate) fn set_notifier(&self, notifier: Notifier) {
        let _ = self.inner.notifier.set(notifier);
    }

    /// Takes a reloaded catalog: servers whose entry is unchanged keep running, the others
    /// are stopped, started or restarted. Returns a one-line summary.
    pub(crate) fn reload(&self, catalog: Catalog) -> String {
        let (kept, restarted) = self.reconcile(Arc::new(catalog));
        format!("MCP servers: {kept} kept, {restarted} started or restarted")
    }

    fn reconcile(&self, catalog: Arc<Catalog>) -> (usize, usize) {
        let wanted: BTreeMap<&str, &McpServerSpec> = catalog
            .mcp_servers()
            .iter()
            .map(|spec| (spec.name.as_str(), spec))
            .collect();
        let (mut kept, mut started) = (0, 0);
        {
            let mut state = self.inner.state();
            state.base = Arc::clone(&catalog);
            let names: Vec<String> = state.servers.keys().cloned().collect();
            for name in names {
                let unchanged = wanted
                    .get(name.as_str())
                    .is_some_and(|spec| **spec == state.servers[&name].server.spec);
                if unchanged {
                    kept += 1;
                } else if let Some(old) = state.servers.remove(&name) {
                    tracing::info!(mcp_server = %name, "MCP server entry changed or removed; stopping it");
                    old.stop.cancel();
                    if !wanted.contains_key(name.as_str()) {
                        crate::telemetry::metrics().forget_mcp_server(&name);
                    }
                }
            }
            for (name, spec) in wanted {
                if state.servers.contains_key(name) {
                    continue;
                }
                let server = Server::new(spec.clone());
                let stop = CancellationToken::new();
                let publisher: Arc<dyn Publish> = Arc::new(Publisher(Arc::downgrade(&self.inner)));
                let task = tokio::spawn(supervise(Arc::clone(&server), publisher, stop.clone()));
                state
                    .servers
                    .insert(name.to_owned(), Running { server, stop, task });
                started += 1;
            }
        }
        self.inner.publish();
        (kept, started)
    }

    /// Every server's state, by name.
    pub(crate) fn statuses(&self) -> Vec<ServerStatus> {
        self.inner
            .state()
            .servers
            .values()
            .map(|running| running.server.status())
            .collect()
    }

    /// Waits (at most `within`) until every server's first start came to something, so the
    /// daemon announces itself ready with the tools of the servers that start.
    pub(crate) async fn settled(&self, within: Duration) {
        let servers: Vec<Arc<Server>> = self
            .inner
            .state()
            .servers
            .values()
            .map(|running| Arc::clone(&running.server))
            .collect();
        let all = futures_util::future::join_all(servers.iter().map(|s| s.tried()));
        let _ = tokio::time::timeout(within, all).await;
    }

    /// Stops every server and waits (at most `within`) for them to exit.
    pub(crate) async fn shutdown(&self, within: Duration) {
        let running: Vec<Running> = std::mem::take(&mut self.inner.state().servers)
            .into_values()
            .collect();
        for server in &running {
            server.stop.cancel();
        }
        let tasks = futures_util::future::join_all(running.into_iter().map(|r| r.task));
        let _ = tokio::time::timeout(within, tasks).await;
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the engine the catalog with the tools of every server that is up, and tells the
    /// service manager which servers are down.
    fn publish(&self) {
        let (catalog, summary) = {
            let state = self.state();
            let tools = state.servers.values().flat_map(|r| r.server.tools());
            let catalog = state.base.with_tools(tools);
            let statuses: Vec<ServerStatus> =
                state.servers.values().map(|r| r.server.status()).collect();
            (catalog, summary(&statuses))
        };
        self.engine.set_catalog(catalog);
        if let (Some(notifier), Some(summary)) = (self.notifier.get(), summary) {
            notifier.send(&format!("STATUS={summary}"));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for running in self.state().servers.values() {
            running.stop.cancel();
        }
    }
}

/// One line for `systemctl status`: how many MCP servers are up, and which are not.
pub(crate) fn summary(statuses: &[ServerStatus]) -> Option<String> {
    if statuses.is_empty() {
        return None;
    }
    let up = statuses.iter().filter(|s| s.phase == Phase::Up).count();
    let not_up: Vec<String> = statuses
        .iter()
        .filter(|s| s.phase != Phase::Up)
        .map(|s| format!("{} {}", s.name, s.phase.as_str()))
        .collect();
    Some(if not_up.is_empty() {
        format!("MCP servers: {up} of {} up", statuses.len())
    } else {
        format!(
            "MCP servers: {up} of {} up; {}",
            statuses.len(),
            not_up.join(", ")
        )
    })
}
