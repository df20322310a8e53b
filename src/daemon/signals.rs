//! Signals: SIGTERM and SIGINT tell systemd `STOPPING=1` and start the drain; SIGHUP reloads
//! the tool catalog (restarting only the MCP servers whose entry changed) and resolves the API
//! keys again, between `RELOADING=1` and `READY=1` (the old catalog or keys stay when the new
//! ones have problems, and every problem is logged).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::daemon::App;
use crate::daemon::notify::Notifier;
use crate::daemon::reload::Reloader;

/// Installs the handlers; call before announcing readiness.
pub(crate) fn install(
    app: &App,
    shutdown: CancellationToken,
    notifier: Notifier,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let reloader = Reloader::of(app);
    tokio::spawn(async move {
        let signal = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => {
                    notifier.reloading();
                    let status = reloader.reload();
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
