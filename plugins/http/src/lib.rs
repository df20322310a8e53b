//! `http`: a webhook handler. POSTs a call's validated arguments as JSON to a configured URL
//! whose host is on an allowlist, with a timeout and a response size cap.

use std::sync::Arc;

use agentd_sdk::{HandlerFactory, OptionsError, ToolHandler};
use serde_json::Value;

pub struct HttpFactory;

impl HandlerFactory for HttpFactory {
    fn name(&self) -> &'static str {
        "http"
    }

    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        let _ = options;
        Err(OptionsError::one("http handler not implemented"))
    }
}
