//! Signals: SIGTERM and SIGINT start the drain; SIGHUP reloads the tool catalog (the old one
//! stays when the new one has problems, and every problem is logged).

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Installs the handlers; call before announcing readiness.
pub fn install(app: &App, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let reloader = Arc::new(Reloader {
        config: app.config.clone(),
        registry: app.registry.clone(),
        engine: app.state.engine.clone(),
    });
    tokio::spawn(async move {
        let signal = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => reloader.reload(),
            }
        };
        shutdown.cancel();
        tracing::info!("{signal}: draining");
    });
    Ok(())
}

struct Reloader {
    config: crate::config::Config,
    registry: crate::tool::Registry,
    engine: Arc<crate::turn::Engine>,
}

impl Reloader {
    fn reload(&self) {
        let Some(path) = &self.config.tools.catalog else {
            tracing::info!("SIGHUP: no tool catalog configured; nothing to reload");
            return;
        };
        match crate::tool::Catalog::load(path, &self.registry) {
            Ok(catalog) => {
                let count = catalog.len();
                self.engine.set_catalog(catalog);
                tracing::info!(tools = count, path = %path.display(), "SIGHUP: tool catalog reloaded");
            }
            Err(e) => {
                for problem in &e.problems {
                    tracing::error!(%problem, "SIGHUP: tool catalog rejected; keeping the previous one");
                }
            }
        }
    }
}
