//! The commands of the `agentd` binary: `serve` (the daemon), `validate` (check agentd.toml and
//! tools.toml, exit 64 when bad), `handlers` (the registered handlers and their options),
//! `migrate` (an SQLite data directory copied into PostgreSQL) and `demo` (an offline
//! end-to-end run against the mock model, built with the default `demo` feature).

#[cfg(feature = "demo")]
mod demo;
mod handlers;
mod migrate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};
use crate::daemon::notify::Notifier;
use crate::daemon::{App, StartError};
use crate::tool::{Catalog, Registry};

/// Exit status for a configuration error (EX_USAGE); systemd's unit does not restart on it.
pub const EXIT_CONFIG: u8 = 64;

/// Longest wait for the MCP servers' first start before announcing readiness (each start is
/// bounded by its entry's `start_timeout` too); a server still starting joins when it is up.
const MCP_START_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    name = "agentd",
    version,
    about = "Tool-execution agent runtime serving the Julep sessions/chat API"
)]
pub struct Cli {
    /// agentd.toml; without it every setting has its embedded default.
    #[arg(long, short, global = true, env = "AGENTD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override one setting: `--set provider.model=llama3.2` (repeatable).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    /// Shortcut for `--set server.listen=ADDR`.
    #[arg(long, global = true, env = "AGENTD_LISTEN")]
    pub listen: Option<String>,
    /// Shortcut for `--set tools.catalog=PATH`.
    #[arg(long, global = true, env = "AGENTD_TOOLS")]
    pub tools: Option<PathBuf>,
    /// Shortcut for `--set storage.data_dir=PATH`.
    #[arg(long, global = true, env = "AGENTD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Check agentd.toml and tools.toml; print every problem; exit 64 when any.
    Validate,
    /// List the handlers tools.toml can name, with the JSON Schema of their options.
    Handlers {
        /// Print one JSON object, handler name to options schema.
        #[arg(long)]
        json: bool,
    },
    /// Copy an SQLite data directory into the empty PostgreSQL database of storage.url (the
    /// agentd using the directory must be stopped first).
    Migrate {
        /// The data directory holding agentd.db; storage.data_dir when not given.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
    },
    /// Run the main job offline: mock model + daemon + a chat whose tool call sends an email.
    Demo,
}

impl Cli {
    /// `--set` entries including the shortcut flags.
    fn all_sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(listen) = &self.listen {
            sets.push(format!("server.listen={listen}"));
        }
        if let Some(tools) = &self.tools {
            sets.push(format!(
                "tools.catalog={}",
                toml_string(&tools.display().to_string())
            ));
        }
        if let Some(dir) = &self.data_dir {
            sets.push(format!(
                "storage.data_dir={}",
                toml_string(&dir.display().to_string())
            ));
        }
        if self.log_json {
            sets.push("log.format=json".into());
        }
        sets
    }

    fn load_config(&self) -> Result<Config, String> {
        Config::load(self.config.as_deref(), &self.all_sets()).map_err(|e| e.to_string())
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Runs the parsed command; returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Validate) => validate(&cli),
        Some(Command::Handlers { json }) => handlers::run(json),
        Some(Command::Migrate { ref from }) => migrate::run(&cli, from.as_deref()),
        Some(Command::Demo) => demo(),
        Some(Command::Serve) | None => serve(&cli),
    }
}

#[cfg(feature = "demo")]
fn demo() -> ExitCode {
    demo::run()
}

#[cfg(not(feature = "demo"))]
fn demo() -> ExitCode {
    eprintln!("agentd demo: this agentd was built without the `demo` feature (cargo's default)");
    ExitCode::FAILURE
}

fn validate(cli: &Cli) -> ExitCode {
    crate::telemetry::init(LogFormat::Text, "warn");
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentd.toml: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::daemon::install_crypto_provider();
    if let Err(e) = crate::provider::openai::OpenAiProvider::new(&config.provider, None) {
        eprintln!("agentd.toml: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let Some(path) = &config.tools.catalog else {
        println!("configuration ok; no tool catalog configured (tools.catalog)");
        return ExitCode::SUCCESS;
    };
    let mut registry = Registry::builtin();
    registry.set_data_dir(config.storage.data_dir.clone());
    match Catalog::load(path, &registry) {
        Ok(catalog) => {
            let servers = catalog.mcp_servers().len();
            if servers == 0 {
                println!(
                    "configuration ok; {} tools in {}",
                    catalog.len(),
                    path.display()
                );
            } else {
                println!(
                    "configuration ok; {} tools and {servers} MCP servers in {} (MCP servers \
                     are not started by validate)",
                    catalog.len(),
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{} problem(s) in {}:", e.problems.len(), path.display());
            for problem in &e.problems {
                eprintln!("  {problem}");
            }
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn serve(cli: &Cli) -> ExitCode {
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::telemetry::init(config.log.format, &config.log.filter);
    let open_files = crate::daemon::rlimit::raise_open_files();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let app = match App::build(config, Registry::builtin()).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("{e}");
                // Only a configuration problem is final; storage may recover on a restart.
                return match e {
                    StartError::Store(_) | StartError::Listen { .. } => ExitCode::FAILURE,
                    StartError::Config(_) | StartError::Catalog(_) => ExitCode::from(EXIT_CONFIG),
                };
            }
        };
        let notifier = Notifier::from_env();
        let shutdown = CancellationToken::new();
        if let Err(e) = crate::daemon::signals::install(&app, shutdown.clone(), notifier.clone()) {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
        let listener = match app.bind().await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        app.mcp_settled(MCP_START_WAIT).await;
        app.state.mcp.set_notifier(notifier.clone());
        let tools = app.state.engine.catalog().len();
        let mcp = crate::mcp::summary(&app.state.mcp.statuses());
        tracing::info!(%addr, tools, open_files, mcp = mcp.as_deref().unwrap_or("none"), "agentd ready");
        let mut status = format!("listening on {addr}, {tools} tools");
        if let Some(mcp) = mcp {
            status = format!("{status}; {mcp}");
        }
        notifier.ready(&status);
        let watchdog = notifier.spawn_watchdog(app.state.store.clone());
        let served = app.serve(listener, shutdown).await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        match served {
            Ok(()) => {
                tracing::info!("agentd stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
