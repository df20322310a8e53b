//! `agentd migrate`: the configuration and the two stores around
//! [`crate::store::migrate::copy_store`], its failures as messages and exit codes.
//!
//! Exit codes: 0 copied; 64 configuration (no `storage.url`, an unresolvable
//! `storage.password`, no `agentd.db` in the source directory); 1 anything else (the source
//! in use by a running agentd, the target unreachable or already holding data, a failed copy).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Cli, EXIT_CONFIG};
use crate::config::{Config, LogFormat};
use crate::store::migrate::{MigrateError, copy_store};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;

/// A failure and the exit code it ends the command with.
struct Failed {
    message: String,
    code: ExitCode,
}

impl Failed {
    fn config(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: ExitCode::from(EXIT_CONFIG),
        }
    }

    fn run(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: ExitCode::FAILURE,
        }
    }
}

/// Copies `<from>/agentd.db` (default: `storage.data_dir`) into the PostgreSQL database of
/// `storage.url`; prints what it copied.
pub(super) fn run(cli: &Cli, from: Option<&Path>) -> ExitCode {
    crate::telemetry::init(LogFormat::Text, "warn");
    match migrate(cli, from) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(failed) => {
            // Driver errors may quote a connection URL; its user-info never reaches the output.
            eprintln!(
                "agentd migrate: {}",
                agentd_sdk::redact_url_credentials(&failed.message)
            );
            failed.code
        }
    }
}

fn migrate(cli: &Cli, from: Option<&Path>) -> Result<String, Failed> {
    let config = cli.load_config().map_err(Failed::config)?;
    let Some(url) = config.storage.url.clone() else {
        return Err(Failed::config(
            "storage.url is not set: it names the PostgreSQL database to copy into (its \
             password goes in storage.password)",
        ));
    };
    let password = match &config.storage.password {
        Some(reference) => Some(
            agentd_sdk::resolve_secret(reference)
                .map_err(|e| Failed::config(format!("storage.password: {e}")))?,
        ),
        None => None,
    };
    let dir = from.map_or_else(|| config.storage.data_dir.clone(), Path::to_path_buf);
    let source = open_source(&config, &dir)?;
    let shown_url = agentd_sdk::redact_url(&url).into_owned();
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failed::run(format!("cannot start the runtime: {e}")))?;
    let copied = runtime.block_on(async {
        let target = PostgresStore::connect(&url, password, config.storage.pool_size)
            .await
            .map_err(|e| Failed::run(format!("cannot open {shown_url}: {e}")))?;
        copy_store(&source, &target).await.map_err(|e| match e {
            MigrateError::TargetNotEmpty => Failed::run(format!("{shown_url}: {e}")),
            other => Failed::run(format!("copying into {shown_url}: {other}")),
        })
    })?;
    Ok(format!(
        "copied {} into {shown_url}:\n{copied}",
        source.path().display()
    ))
}

/// The source store, locked for the copy: it must exist, and no agentd may be running on it.
fn open_source(config: &Config, dir: &Path) -> Result<SqliteStore, Failed> {
    let path: PathBuf = dir.join("agentd.db");
    if !path.is_file() {
        return Err(Failed::config(format!(
            "no agentd database in {} ({} does not exist)",
            dir.display(),
            path.display()
        )));
    }
    SqliteStore::open_with(&path, config.sqlite_options()).map_err(|e| {
        if SqliteStore::is_locked_elsewhere(&e) {
            Failed::run(format!(
                "{e}: stop the agentd using {} before migrating it",
                dir.display()
            ))
        } else {
            Failed::run(format!("cannot open {}: {e}", path.display()))
        }
    })
}
