//! Handlers built into the daemon itself: `echo`, which returns its arguments (for demos,
//! tests and benchmarks: a tool whose own cost is negligible).

use std::sync::Arc;

use agentd_sdk::{
    CallContext, HandlerError, HandlerFactory, OptionsError, ToolCall, ToolHandler, ToolOutput,
};
use async_trait::async_trait;
use serde_json::{Value, json};

pub struct EchoFactory;

impl HandlerFactory for EchoFactory {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn options_schema(&self) -> Value {
        json!({ "type": "object", "additionalProperties": false, "properties": {} })
    }

    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        match options {
            Value::Object(map) if map.is_empty() => Ok(Arc::new(Echo)),
            Value::Object(map) => Err(OptionsError(
                map.keys()
                    .map(|k| format!("echo takes no options (unknown option `{k}`)"))
                    .collect(),
            )),
            _ => Err(OptionsError::one("options must be a table")),
        }
    }
}

struct Echo;

#[async_trait]
impl ToolHandler for Echo {
    async fn call(&self, call: ToolCall, _ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        Ok(ToolOutput::new(json!({ "echo": call.arguments })))
    }
}
