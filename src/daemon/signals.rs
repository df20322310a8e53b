//! Signals: SIGTERM and SIGINT tell systemd `STOPPING=1` and start the drain; SIGHUP reloads
//! the tool catalog and resolves the API keys again, between `RELOADING=1` and `READY=1` (the
//! old catalog or keys stay when the new ones have problems, and every problem is logged).

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::daemon::App;
use crate::daemon::notify::Notifier;

/// Installs the handlers; call before announcing readiness.
pub(crate) fn install(
    app: &App,
    shutdown: CancellationToken,
    notifier: Notifier,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let reloader = Arc::new(Reloader {
        config: app.config.clone(),
        registry: app.registry.clone(),
        engine: app.state.engine.clone(),
        keys: app.state.keys.clone(),
    });
    tokio::spawn(async move {
        let signal = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => {
                    notifier.reloading();
                    let status = format!("{}; {}", reloader.reload_catalog(), reloader.reload_keys());
                    notifier.ready(&status);
                }
            }
        };
        notifier.stopping();
        shutdown.cancel();
        tracing::info!("{signal}: draining");
    });
    Ok(())
}

struct Reloader {
    config: crate::config::Config,
    registry: crate::tool::Registry,
    engine: Arc<crate::turn::Engine>,
    keys: Arc<crate::daemon::keys::ApiKeys>,
}

impl Reloader {
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
                self.engine.set_catalog(catalog);
                tracing::info!(tools = count, path = %path.display(), "SIGHUP: tool catalog reloaded");
                format!("reloaded {}: {count} tools", path.display())
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
