//! `smtp`: the `send_email` handler. Builds one RFC 5322 message per call (Message-ID derived
//! from the call's idempotency key), checks recipients against the tool's policy, and delivers
//! through an SMTP relay (STARTTLS, TLS or loopback clear text, optional AUTH) or, for offline
//! demos, into a directory of `.eml` files.
//!
//! Options, result shape and error kinds are documented in this crate's README.md.

mod errors;
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod message;
mod options;
mod options_schema;
mod outbox;
mod policy;
mod relay;
mod sent;

#[cfg(all(test, unix))]
mod outbox_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use agentd_sdk::{BuildContext, HandlerFactory, OptionsError, ToolHandler};
use serde_json::Value;

pub use handler::SmtpHandler;

/// Builds `smtp` handlers from `[tool.options]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmtpFactory;

impl HandlerFactory for SmtpFactory {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn options_schema(&self) -> Value {
        options_schema::options_schema()
    }

    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        self.build_with(options, &BuildContext::default())
    }

    /// A relative file-transport `dir` is resolved against the daemon's data directory.
    fn build_with(
        &self,
        options: &Value,
        context: &BuildContext,
    ) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        let options = options::SmtpOptions::parse(options, context.data_dir.as_deref())?;
        Ok(Arc::new(SmtpHandler::new(options)?))
    }
}
