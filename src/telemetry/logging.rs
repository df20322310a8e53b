//! Logging, the tracing subscriber: human-readable lines on stderr by default (journald keeps
//! them), JSON with `log.format = "json"`; `RUST_LOG` overrides the configured filter.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the process's subscriber once; a second call keeps the first.
pub(crate) fn init(format: LogFormat, filter: &str) {
    let filter = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .and_then(|from_env| EnvFilter::try_new(quiet_dependencies(&from_env)).ok())
        .or_else(|| EnvFilter::try_new(quiet_dependencies(filter)).ok())
        .unwrap_or_else(|| EnvFilter::new(quiet_dependencies("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr must not turn logging into a panic (fmt reports its own write
        // errors with eprintln!, which panics when stderr is gone).
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// The MCP client library logs every handshake and notification at `info`, with whole server
/// descriptions; its warnings are kept unless the filter names it.
fn quiet_dependencies(filter: &str) -> String {
    if filter.contains("rmcp") {
        filter.to_owned()
    } else {
        format!("{filter},rmcp=warn")
    }
}
