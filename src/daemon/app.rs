//! Wiring: config → store, provider, catalog, engine, router; serving with a graceful drain.
//!
//! [`App::build`] does everything that can fail before the socket is bound, so a caller (the
//! binary, a test, the demo) knows the daemon is ready when [`App::serve`] starts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Shared};
use crate::config::Config;
use crate::mcp::McpHub;
use crate::provider::ModelProvider;
use crate::provider::openai::OpenAiProvider;
use crate::session::lock::TurnLocks;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::tool::{Catalog, Registry};
use crate::turn::Engine;

/// How long a stopping daemon waits for its MCP servers to exit (stdio servers get their stdin
/// closed, then SIGTERM, then SIGKILL).
const MCP_STOP_WAIT: Duration = Duration::from_secs(10);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("tool catalog:\n{0}")]
    Catalog(String),
    #[error("storage: {0}")]
    Store(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
}

/// A built daemon, ready to serve.
pub struct App {
    pub(crate) config: Config,
    pub(crate) state: AppState,
    pub(crate) registry: Registry,
}

/// Installs the TLS crypto provider once per process (ring; no other provider is compiled in).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl App {
    /// The store the daemon serves from (for tools that inspect it in-process, such as tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.state.store
    }

    /// Opens the store, builds the provider, compiles the catalog, resolves API keys and starts
    /// the MCP servers (so it must run inside the tokio runtime).
    pub async fn build(config: Config, mut registry: Registry) -> Result<Self, StartError> {
        install_crypto_provider();
        crate::telemetry::metrics().configure(
            crate::telemetry::LabelLimits {
                max_values: config.server.metrics_max_label_values,
                max_bytes: config.server.metrics_max_label_bytes,
            },
            &config.provider.model,
        );
        std::fs::create_dir_all(&config.storage.data_dir).map_err(|e| {
            StartError::Store(format!(
                "cannot create {}: {e}",
                config.storage.data_dir.display()
            ))
        })?;
        let store = open_store(&config).await?;
        registry.set_data_dir(config.storage.data_dir.clone());
        let catalog = load_catalog(config.tools.catalog.as_deref(), &registry)?;
        let api_key = match &config.provider.api_key {
            Some(reference) => Some(
                agentd_sdk::resolve_secret(reference)
                    .map_err(|e| StartError::Config(format!("provider.api_key: {e}")))?,
            ),
            None => None,
        };
        let provider: Arc<dyn ModelProvider> = Arc::new(
            OpenAiProvider::new(&config.provider, api_key)
                .map_err(StartError::Config)?
                .with_limits(&config.limits),
        );
        let engine = Arc::new(
            Engine::new(
                store.clone(),
                provider,
                Catalog::default(),
                config.turn.clone(),
                config.provider.model.clone(),
                config.tools.max_concurrent_calls,
            )
            .with_limits(&config.limits),
        );
        let keys = crate::daemon::keys::resolve(&config).map_err(StartError::Config)?;
        // Starts the `[[mcp]]` servers; their tools join the catalog as they come up.
        let mcp = McpHub::start(engine.clone(), catalog);
        let state = AppState::new(Shared {
            store,
            engine,
            mcp,
            keys: Arc::new(crate::daemon::keys::ApiKeys::new(keys)),
            locks: Arc::new(TurnLocks::default()),
            draining: Arc::new(AtomicBool::new(false)),
            abort: CancellationToken::new(),
            sse_keep_alive: config.server.sse_keep_alive,
            tool_schemas: api::tool_schemas::ToolSchemas::new(&config.tools),
            max_system_prompt_bytes: config.turn.max_system_prompt_bytes,
            limits: config.limits,
            approval_webhook: config.turn.approval_webhook.clone(),
            instance_id: crate::ids::new_v7().to_string(),
            turn_claim_ttl: config.storage.turn_claim_ttl,
        });
        Ok(Self {
            config,
            state,
            registry,
        })
    }

    /// Waits (at most `within`) until every MCP server's first start came to something, so the
    /// daemon starts serving with the tools of those that start.
    pub async fn mcp_settled(&self, within: Duration) {
        self.state.mcp.settled(within).await;
    }

    /// Does what SIGHUP does (tools.toml and API keys read again); returns the status line.
    pub fn reload(&self) -> String {
        crate::daemon::reload::Reloader::of(self).reload()
    }

    /// Binds the configured address.
    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let addr = self.config.server.listen;
        TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Listen {
                addr,
                reason: e.to_string(),
            })
    }

    /// Serves until `shutdown` is cancelled, then drains: new turns are refused (503), turns
    /// in flight get `drain_timeout` to finish, the rest are cancelled with valid history.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let router = api::router(
            self.state.clone(),
            &self.config.server.base_path,
            self.config.server.max_body_bytes,
            self.config.server.metrics_public,
        );
        let gauge = api::approvals::keep_pending_gauge(&self.state, shutdown.clone());
        let drain = self.config.server.drain_timeout;
        let server = tokio::spawn(crate::daemon::server::serve(
            listener,
            router,
            shutdown.clone(),
            self.config.server.header_timeout,
            self.config.limits.max_connections,
        ));
        shutdown.cancelled().await;
        self.state.draining.store(true, Ordering::SeqCst);
        let abort = self.state.abort.clone();
        let deadline = tokio::time::sleep(drain);
        tokio::pin!(deadline);
        let mut server = server;
        tokio::select! {
            result = &mut server => {
                self.state.mcp.shutdown(MCP_STOP_WAIT).await;
                let _ = gauge.await;
                return result.map_err(std::io::Error::other);
            }
            () = &mut deadline => {
                tracing::warn!(drain_ms = drain.as_millis() as u64, "drain deadline reached; cancelling the turns still running");
                abort.cancel();
            }
        }
        // Cancelled turns write their results and close their streams quickly.
        let served = match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(result) => result.map_err(std::io::Error::other),
            Err(_) => {
                tracing::error!("connections still open after cancelling; exiting anyway");
                Ok(())
            }
        };
        self.state.mcp.shutdown(MCP_STOP_WAIT).await;
        let _ = gauge.await;
        served
    }
}

/// The store the configuration names: PostgreSQL with `storage.url`, else SQLite in the data
/// directory.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    if let Some(url) = &config.storage.url {
        let password = match &config.storage.password {
            Some(reference) => Some(
                agentd_sdk::resolve_secret(reference)
                    .map_err(|e| StartError::Config(format!("storage.password: {e}")))?,
            ),
            None => None,
        };
        let store = crate::store::postgres::PostgresStore::connect_trusting(
            url,
            password,
            config.storage.pool_size,
            config.storage.ca_file.as_deref(),
        )
        .await
        .map_err(|e| StartError::Store(e.to_string()))?;
        return Ok(Arc::new(store));
    }
    Ok(Arc::new(
        SqliteStore::open_with(&config.database_path(), config.sqlite_options())
            .map_err(|e| StartError::Store(e.to_string()))?,
    ))
}

pub(super) fn load_catalog(
    path: Option<&Path>,
    registry: &Registry,
) -> Result<Catalog, StartError> {
    match path {
        Some(path) => Catalog::load(path, registry).map_err(|e| StartError::Catalog(e.to_string())),
        None => Ok(Catalog::default()),
    }
}
