//! Handlers that exist only for tests: one that sleeps (timeouts, cancellation, drains), one
//! that panics, one that always fails, and one that counts its calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use agentd::tool::Registry;
use agentd_sdk::{
    CallContext, HandlerError, HandlerFactory, OptionsError, ToolCall, ToolHandler, ToolOutput,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Calls that reached the `sleep` handler, across the process.
pub(crate) static SLEEP_CALLS: AtomicUsize = AtomicUsize::new(0);

/// One signal per call id, raised when the `sleep` handler starts that call.
static SLEEP_STARTED: LazyLock<Mutex<HashMap<String, Arc<Notify>>>> =
    LazyLock::new(Default::default);

fn sleep_signal(call_id: &str) -> Arc<Notify> {
    let mut signals = SLEEP_STARTED.lock().unwrap();
    Arc::clone(signals.entry(call_id.to_owned()).or_default())
}

/// Waits until the `sleep` handler has started the call with this id (give each test's call
/// an id of its own: tests of one binary run at once). Fails the test after 10 s.
pub(crate) async fn sleep_started(call_id: &str) {
    tokio::time::timeout(Duration::from_secs(10), sleep_signal(call_id).notified())
        .await
        .unwrap_or_else(|_| panic!("the sleep handler never started call `{call_id}`"));
}

pub(crate) fn register(registry: &mut Registry) {
    registry.register(Arc::new(Simple("sleep", || Arc::new(Sleep))));
    registry.register(Arc::new(Simple("panic", || Arc::new(Panic))));
    registry.register(Arc::new(Simple("fail", || Arc::new(Fail))));
}

struct Simple(&'static str, fn() -> Arc<dyn ToolHandler>);

impl HandlerFactory for Simple {
    fn name(&self) -> &'static str {
        self.0
    }
    fn build(&self, _options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        Ok((self.1)())
    }
}

struct Sleep;

#[async_trait]
impl ToolHandler for Sleep {
    async fn call(&self, call: ToolCall, ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        SLEEP_CALLS.fetch_add(1, Ordering::SeqCst);
        // A stored permit: a waiter that comes later still wakes.
        sleep_signal(&ctx.call_id).notify_one();
        let ms = call.arguments["ms"].as_u64().unwrap_or(0);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(ToolOutput::new(json!({"slept_ms": ms}))),
            () = ctx.cancel.cancelled() => Err(HandlerError::new("cancelled", "stopped early")),
        }
    }
}

struct Panic;

#[async_trait]
impl ToolHandler for Panic {
    async fn call(&self, _call: ToolCall, _ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        panic!("handler blew up on purpose");
    }
}

struct Fail;

#[async_trait]
impl ToolHandler for Fail {
    async fn call(&self, _call: ToolCall, _ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        Err(HandlerError::new("upstream_down", "the service behind this tool is down").retryable())
    }
}
