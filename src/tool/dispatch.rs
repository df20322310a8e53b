//! Runs the server-tool calls of one model response: journal, validation, handler with timeout
//! and cancellation, concurrency limits, panic isolation; results in call order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::catalog::Catalog;
use crate::session::{Store, ToolCallRequest};

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Answered from the journal: the call had already run.
    Replayed,
    /// Failed; the kind is in the result JSON too (`malformed_arguments`, `invalid_arguments`,
    /// `unknown_tool`, `timeout`, `panic`, `cancelled`, `outcome_unknown`, or a handler's kind).
    Error(String),
}

/// One finished call.
#[derive(Debug, Clone)]
pub struct ToolRun {
    pub call_id: String,
    pub name: String,
    /// The tool result text given to the model (JSON).
    pub content: String,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// What to run.
pub struct DispatchRequest<'a> {
    pub catalog: &'a Catalog,
    pub session_id: &'a str,
    /// Calls in the model's order. Calls whose name is not in the catalog get `unknown_tool`.
    pub calls: &'a [ToolCallRequest],
    /// Every tool name the model was offered, for "did you mean" in `unknown_tool` results.
    pub offered: &'a [String],
    pub cancel: &'a CancellationToken,
    /// Receives each run as soon as it finishes (streaming), before `run` returns.
    pub progress: Option<mpsc::UnboundedSender<ToolRun>>,
}

/// Shared by all turns: the store for the journal and a daemon-wide cap on running calls.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    running: Arc<tokio::sync::Semaphore>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, max_concurrent_calls: usize) -> Self {
        Self {
            store,
            running: Arc::new(tokio::sync::Semaphore::new(max_concurrent_calls)),
        }
    }

    /// Runs every call (concurrently, bounded) and returns one run per call, in call order.
    pub async fn run(&self, request: DispatchRequest<'_>) -> Vec<ToolRun> {
        let _ = (&self.store, &self.running, request);
        Vec::new()
    }
}
