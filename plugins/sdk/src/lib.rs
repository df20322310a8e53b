//! The contract between agentd and the handlers that run its tools.
//!
//! A handler crate depends on this crate only, so it cannot reach the session store or the
//! model provider. agentd builds each handler once, from the `[tool.options]` table of its
//! catalog entry, through a [`HandlerFactory`]; it then calls [`ToolHandler::call`] with
//! arguments that have already been validated against the tool's JSON Schema.

mod context;
mod duration;
mod error;
mod json_kind;
pub mod redact;
mod schema;
mod secret;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub use context::CallContext;
pub use duration::{DurationError, PositiveDuration, deserialize_duration, parse_duration};
pub use error::{HandlerError, OptionsError};
pub use json_kind::json_kind;
pub use redact::{redact_url, redact_url_credentials, scrub, userinfo_secrets};
pub use schema::{duration_schema, secret_ref_schema};
pub use secret::{SecretError, SecretRef, resolve_secret};
pub use tokio_util::sync::CancellationToken;

/// One call of a tool, as the model asked for it, after schema validation.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The catalog name of the tool.
    pub tool: String,
    /// The parsed, schema-valid arguments.
    pub arguments: Value,
}

/// What a handler returns on success: the tool result message, a string as it is and any other
/// JSON value serialized ([`ToolOutput::into_text`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub content: Value,
}

impl ToolOutput {
    pub fn new(content: Value) -> Self {
        Self { content }
    }

    /// The tool result text the model reads: a string as it is, any other value as JSON.
    pub fn into_text(self) -> String {
        match self.content {
            Value::String(text) => text,
            other => other.to_string(),
        }
    }
}

/// A tool implementation. Built once per catalog entry and shared by every call.
///
/// Implementations must honour `ctx.cancel` and `ctx.deadline` where they wait on I/O; agentd
/// also enforces the deadline from outside, but a handler that stops early can clean up.
#[async_trait]
pub trait ToolHandler: Send + Sync + 'static {
    async fn call(&self, call: ToolCall, ctx: CallContext) -> Result<ToolOutput, HandlerError>;
}

/// Builds handlers of one kind (the `handler = "..."` name in tools.toml) from their options.
pub trait HandlerFactory: Send + Sync + 'static {
    /// The name used in tools.toml's `handler` field.
    fn name(&self) -> &'static str;

    /// The JSON Schema of the `[tool.options]` table this factory accepts, for people writing
    /// tools.toml (`agentd handlers` prints it). It documents; [`HandlerFactory::build`] still
    /// checks. The default says only that the options are a table.
    fn options_schema(&self) -> Value {
        serde_json::json!({ "type": "object" })
    }

    /// Builds a handler for one catalog entry. `options` is the entry's `[tool.options]` table
    /// as JSON (an empty object when absent). Every problem found is returned, not just the first.
    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError>;

    /// Builds a handler knowing where the daemon keeps its files. A handler whose options name
    /// a place it writes to resolves a relative path against [`BuildContext::data_dir`]; the
    /// default ignores the context and calls [`HandlerFactory::build`].
    fn build_with(
        &self,
        options: &Value,
        context: &BuildContext,
    ) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        let _ = context;
        self.build(options)
    }
}

/// What agentd tells a factory about where it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildContext {
    /// The daemon's data directory (`storage.data_dir`, `$STATE_DIRECTORY` under systemd): a
    /// directory only the service can write. `None` outside a daemon (relative paths then
    /// stay relative to the working directory).
    pub data_dir: Option<PathBuf>,
}
