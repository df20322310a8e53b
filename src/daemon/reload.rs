//! What SIGHUP does: tools.toml compiled again and swapped in (MCP servers whose entry changed
//! restarted, the others kept), API keys resolved again; a new catalog or key set with problems
//! is refused and the previous one kept, every problem logged.

use std::sync::Arc;

use crate::daemon::App;

pub(crate) struct Reloader {
    config: crate::config::Config,
    registry: crate::tool::Registry,
    engine: Arc<crate::turn::Engine>,
    mcp: crate::mcp::McpHub,
    keys: Arc<crate::daemon::keys::ApiKeys>,
}

impl Reloader {
    pub(crate) fn of(app: &App) -> Self {
        Self {
            config: app.config.clone(),
            registry: app.registry.clone(),
            engine: app.state.engine.clone(),
            mcp: app.state.mcp.clone(),
            keys: app.state.keys.clone(),
        }
    }

    /// Reloads the catalog and the API keys; returns a one-line status.
    pub(crate) fn reload(&self) -> String {
        format!("{}; {}", self.reload_catalog(), self.reload_keys())
    }

    /// Resolves `auth.api_keys` again (a key file may have been rotated); returns a status.
    fn reload_keys(&self) -> String {
        match crate::daemon::keys::resolve(&self.config) {
            Ok(keys) => {
                let count = keys.len();
                self.keys.replace(keys);
                tracing::info!(keys = count, "SIGHUP: API keys reloaded");
                format!("{count} API keys")
            }
            Err(problem) => {
                tracing::error!(%problem, "SIGHUP: API keys not reloaded; keeping the previous ones");
                format!("API keys not reloaded ({problem})")
            }
        }
    }

    /// Reloads tools.toml; returns a one-line status for the service manager.
    fn reload_catalog(&self) -> String {
        let Some(path) = &self.config.tools.catalog else {
            tracing::info!("SIGHUP: no tool catalog configured; nothing to reload");
            return "reload: no tool catalog configured".into();
        };
        match crate::tool::Catalog::load(path, &self.registry) {
            Ok(catalog) => {
                let count = catalog.len();
                let servers = self.mcp.reload(catalog);
                tracing::info!(tools = count, path = %path.display(), %servers, "SIGHUP: tool catalog reloaded");
                format!("reloaded {}: {count} tools; {servers}", path.display())
            }
            Err(e) => {
                for problem in &e.problems {
                    tracing::error!(%problem, "SIGHUP: tool catalog rejected; keeping the previous one");
                }
                format!(
                    "reload of {} failed ({} problems); {} tools kept",
                    path.display(),
                    e.problems.len(),
                    self.engine.catalog().len()
                )
            }
        }
    }
}
