//! Daemon settings: agentd.toml (optional; every value has an embedded default), then
//! `AGENTD_<SECTION>__<KEY>` environment variables, then `--set section.key=value` flags.

pub mod duration;
mod limits;
mod memory;
mod overrides;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentd_sdk::SecretRef;
use serde::Deserialize;

pub use limits::LimitsConfig;
pub use overrides::apply_overrides;

/// Everything the daemon reads at start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub provider: ProviderConfig,
    pub tools: ToolsConfig,
    pub turn: TurnConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Prefix of every API route.
    pub base_path: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long in-flight turns may run after a stop signal.
    #[serde(deserialize_with = "duration::deserialize")]
    pub drain_timeout: Duration,
    /// Serve `/metrics` without a key.
    pub metrics_public: bool,
    /// Distinct values kept per metric label named by clients or the model (model and tool
    /// names, tool error kinds); later ones are counted as `other`.
    pub metrics_max_label_values: usize,
    /// Longest such label value kept (bytes); a longer one is counted as `other`.
    pub metrics_max_label_bytes: usize,
    /// A streamed chat sends a comment line this often while nothing else is sent; a turn
    /// that fails before its first event within this time gets a plain HTTP error instead.
    #[serde(deserialize_with = "duration::deserialize")]
    pub sse_keep_alive: Duration,
    /// A connection must send a request's headers within this time of being accepted or of
    /// finishing its previous request; an idle kept-alive connection is closed after it.
    #[serde(deserialize_with = "duration::deserialize")]
    pub header_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Where API keys come from; every reference that resolves is a valid key. When none
    /// resolves, a key is generated once into `<data_dir>/api-key` (mode 0600).
    pub api_keys: Vec<SecretRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding the SQLite database (and a generated API key).
    pub data_dir: PathBuf,
    /// How hard a commit waits for the disk (SQLite's `synchronous`): `full` (default)
    /// survives a power loss with every acknowledged commit, the journal's "started" record of
    /// a call whose side effect already happened included; `normal` may lose the last commits
    /// on a power loss (not on a crash of agentd alone); `off` leaves it to the OS; `extra`
    /// also syncs the directory.
    pub synchronous: Synchronous,
    /// A PostgreSQL database shared by several agentd instances
    /// (`postgres://user@host:5432/agentd`); without it, SQLite in `data_dir`.
    pub url: Option<String>,
    /// The PostgreSQL password, as a secret reference (never in `url`).
    pub password: Option<agentd_sdk::SecretRef>,
    /// PEM file of CA certificates trusted for the PostgreSQL server on top of the system's
    /// (a private CA): checked under `sslmode=verify-ca` and `verify-full`, and, as in libpq,
    /// under `prefer` and `require` too once given. Read at start.
    pub ca_file: Option<PathBuf>,
    /// Connections in the PostgreSQL pool.
    pub pool_size: usize,
    /// How long an instance's claim on a session's turn lasts unless renewed (it renews every
    /// third of it while the turn runs): a session whose instance died is free again after it.
    #[serde(deserialize_with = "duration::deserialize")]
    pub turn_claim_ttl: Duration,
    /// Bytes the embedded store's in-memory mirror of records and histories may hold (0: none,
    /// every read goes to SQLite). Unset: an eighth of the memory agentd may use (the machine's
    /// or its cgroup's `MemoryMax=`), between 64 MiB and 4 GiB. Not used on PostgreSQL.
    pub mirror_bytes: Option<usize>,
}

/// SQLite's `PRAGMA synchronous` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Off,
    Normal,
    #[default]
    Full,
    Extra,
}

impl Synchronous {
    /// The pragma's value.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// OpenAI-compatible base URL; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Optional bearer key (Ollama, vLLM and llama.cpp need none).
    pub api_key: Option<SecretRef>,
    /// Model used when neither agent nor request names one.
    pub model: String,
    /// PEM file of root certificates trusted for an https base_url on top of the system's (a
    /// private CA in front of vLLM or LiteLLM, say).
    pub ca_file: Option<PathBuf>,
    #[serde(deserialize_with = "duration::deserialize")]
    pub connect_timeout: Duration,
    /// Longest wait for a whole non-streamed answer, or between two streamed chunks.
    #[serde(deserialize_with = "duration::deserialize")]
    pub read_timeout: Duration,
    /// Attempts per model call, the first included (429, 5xx and connect errors retry).
    pub max_attempts: u32,
    #[serde(deserialize_with = "duration::deserialize")]
    pub backoff_base: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// The tool catalog; no file means no server tools.
    pub catalog: Option<PathBuf>,
    /// Server-tool calls running at once across the daemon.
    pub max_concurrent_calls: usize,
    /// Tools one chat request, or one agent, may declare.
    pub max_declared_tools: usize,
    /// Largest `parameters` schema of a declared tool (its JSON text).
    pub max_schema_bytes: usize,
    /// Most `pattern` and `patternProperties` regular expressions in one declared schema.
    pub max_schema_patterns: usize,
    /// A declared schema must compile within this (waiting for a compile slot included).
    #[serde(deserialize_with = "duration::deserialize")]
    pub schema_compile_timeout: Duration,
    /// Declared schemas compiled at once, each on a blocking thread.
    pub max_concurrent_schema_compiles: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Model calls per turn before the final `tool_choice: "none"` call (request `max_steps`
    /// overrides, up to `max_steps_limit`).
    pub max_steps: u32,
    pub max_steps_limit: u32,
    /// Largest system prompt (template rendered, or agent and session text); agent and session
    /// text larger than this is refused when stored.
    pub max_system_prompt_bytes: usize,
    /// How long a call held for approval waits for a decision; then it is answered to the
    /// model as denied (`expired`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub approval_timeout: Duration,
    /// A catalog tool (for example an `http` webhook) called with
    /// `{"event": "approval_requested", "data": {...}}` when a call is held for approval.
    pub approval_webhook: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_path: "/api".into(),
            max_body_bytes: 2 * 1024 * 1024,
            drain_timeout: Duration::from_secs(30),
            metrics_public: false,
            metrics_max_label_values: 100,
            metrics_max_label_bytes: 100,
            sse_keep_alive: Duration::from_secs(10),
            header_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_keys: vec![
                SecretRef {
                    credential: Some("api_key".into()),
                    ..Default::default()
                },
                SecretRef {
                    env: Some("AGENTD_API_KEY".into()),
                    ..Default::default()
                },
            ],
        }
    }
}

impl StorageConfig {
    /// What is wrong with the PostgreSQL settings, if they are used.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.url {
            let shown = agentd_sdk::redact_url(url);
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") => {
                    if parsed.password().is_some() {
                        problems.push(format!(
                            "storage.url `{shown}` holds a password: give it as storage.password \
                             = {{ credential = \"...\" }} instead"
                        ));
                    }
                }
                _ => problems.push(format!(
                    "storage.url `{shown}` must be a postgres:// URL (postgres://user@host:5432/db)"
                )),
            }
        }
        if let Some(path) = &self.ca_file
            && let Err(e) = std::fs::read(path)
        {
            problems.push(format!(
                "storage.ca_file {} cannot be read: {e}",
                path.display()
            ));
        }
        if self.pool_size == 0 {
            problems.push("storage.pool_size must be at least 1".into());
        }
        if self.turn_claim_ttl < Duration::from_secs(1) {
            problems.push("storage.turn_claim_ttl must be at least 1s".into());
        }
        problems
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let data_dir = std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("agentd-data"));
        Self {
            data_dir,
            synchronous: Synchronous::default(),
            url: None,
            password: None,
            ca_file: None,
            pool_size: 16,
            turn_claim_ttl: Duration::from_secs(30),
            mirror_bytes: None,
        }
    }
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434/v1".into(),
            api_key: None,
            model: "llama3.2".into(),
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(120),
            max_attempts: 3,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
        }
    }
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            catalog: None,
            max_concurrent_calls: 256,
            max_declared_tools: 128,
            max_schema_bytes: 64 * 1024,
            max_schema_patterns: 64,
            schema_compile_timeout: Duration::from_secs(2),
            max_concurrent_schema_compiles: 2,
        }
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            max_steps: 10,
            max_steps_limit: 100,
            max_system_prompt_bytes: 64 * 1024,
            approval_timeout: Duration::from_secs(24 * 60 * 60),
            approval_webhook: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// A configuration problem, with the file position when known.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads the file (if any), applies environment and `--set` overrides, and checks values.
    /// Relative paths in the file are resolved against the file's directory.
    pub fn load(path: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| ConfigError(position_message(p, &text, &e)))?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "embedded defaults".to_owned()),
        };
        apply_overrides(&mut table, std::env::vars(), sets)?;
        let mut config: Config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("{origin}: {}", e.message())))?;
        if let Some(dir) = path.and_then(Path::parent) {
            config.resolve_relative_paths(dir);
        }
        config.check()?;
        Ok(config)
    }

    fn resolve_relative_paths(&mut self, dir: &Path) {
        if let Some(catalog) = &self.tools.catalog
            && catalog.is_relative()
        {
            self.tools.catalog = Some(dir.join(catalog));
        }
        if self.storage.data_dir.is_relative() && std::env::var_os("STATE_DIRECTORY").is_none() {
            self.storage.data_dir = dir.join(&self.storage.data_dir);
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !self.server.base_path.is_empty()
            && (!self.server.base_path.starts_with('/') || self.server.base_path.ends_with('/'))
        {
            problems.push(format!(
                "server.base_path `{}` must start with `/` and not end with one (or be empty)",
                self.server.base_path
            ));
        }
        if !(self.provider.base_url.starts_with("http://")
            || self.provider.base_url.starts_with("https://"))
        {
            problems.push(format!(
                "provider.base_url `{}` must be an http:// or https:// URL",
                agentd_sdk::redact_url(&self.provider.base_url)
            ));
        }
        if self.server.sse_keep_alive.is_zero() {
            problems.push("server.sse_keep_alive must be longer than 0".into());
        }
        if self.server.header_timeout.is_zero() {
            problems.push("server.header_timeout must be longer than 0".into());
        }
        if self.provider.max_attempts == 0 {
            problems.push("provider.max_attempts must be at least 1".into());
        }
        if self.turn.max_steps == 0 || self.turn.max_steps > self.turn.max_steps_limit {
            problems.push("turn.max_steps must be between 1 and turn.max_steps_limit".into());
        }
        if self.tools.max_concurrent_calls == 0 {
            problems.push("tools.max_concurrent_calls must be at least 1".into());
        }
        if self.tools.max_concurrent_schema_compiles == 0
            || self.tools.schema_compile_timeout.is_zero()
        {
            problems.push("tools.max_concurrent_schema_compiles and tools.schema_compile_timeout must be above 0".into());
        }
        problems.extend(self.storage.problems());
        problems.extend(self.limits.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems.join("\n")))
        }
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("agentd.db")
    }

    /// How the embedded store is opened: `storage.synchronous` and the mirror's budget.
    pub fn sqlite_options(&self) -> crate::store::sqlite::SqliteOptions {
        crate::store::sqlite::SqliteOptions {
            synchronous: self.storage.synchronous,
            mirror_bytes: self
                .storage
                .mirror_bytes
                .unwrap_or_else(memory::default_mirror_bytes),
        }
    }
}

/// `file:line:col: message` for a TOML error.
pub fn position_message(path: &Path, text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("{}:{line}:{col}: {}", path.display(), error.message())
        }
        None => format!("{}: {}", path.display(), error.message()),
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
