//! Runs the server-tool calls of one model response: journal, validation, handler with timeout
//! and cancellation, concurrency limits, panic isolation; results in call order.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use agentd_sdk::{CallContext, HandlerError, ToolCall, ToolOutput};
use futures_util::FutureExt;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, CatalogTool};
use super::failure;
use super::validate::{self, ArgumentError};
use crate::session::{CallStatus, JournalRecord, Store, StoreError, ToolCallRequest};

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

impl Outcome {
    /// `ok`, `replayed`, or the error kind.
    pub fn as_str(&self) -> &str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Replayed => "replayed",
            Outcome::Error(kind) => kind,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Called with each run as soon as it finishes (streaming), before `run` returns.
    pub progress: Option<&'a (dyn Fn(&ToolRun) + Send + Sync)>,
}

/// Shared by all turns: the store for the journal and a daemon-wide cap on running calls.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    running: Arc<tokio::sync::Semaphore>,
}

/// What a call came to before it is turned into a [`ToolRun`].
enum Ending {
    Success(ToolOutput),
    Failure(HandlerError),
    /// The stored result of an earlier run of the same call.
    Replayed(String),
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
        let request = &request;
        let runs = request.calls.iter().map(|call| async move {
            let run = self.run_one(request, call).await;
            log_run(request.session_id, &run);
            crate::metrics::tool_call(&run.name, run.outcome.as_str(), run.duration);
            if let Some(progress) = request.progress {
                progress(&run);
            }
            run
        });
        futures_util::future::join_all(runs).await
    }

    async fn run_one(&self, request: &DispatchRequest<'_>, call: &ToolCallRequest) -> ToolRun {
        let started = Instant::now();
        let ending = self.execute(request, call).await;
        let (content, outcome) = match ending {
            Ending::Success(output) => (output.content.to_string(), Outcome::Ok),
            Ending::Failure(error) => (
                error.to_result_json().to_string(),
                Outcome::Error(error.kind),
            ),
            Ending::Replayed(content) => (content, Outcome::Replayed),
        };
        ToolRun {
            call_id: call.id.clone(),
            name: call.function.name.clone(),
            content,
            outcome,
            duration: started.elapsed(),
        }
    }

    async fn execute(&self, request: &DispatchRequest<'_>, call: &ToolCallRequest) -> Ending {
        let session_id = request.session_id;
        let name = call.function.name.as_str();
        let Some(tool) = request.catalog.get(name) else {
            return Ending::Failure(failure::unknown_tool(name, request.offered));
        };
        let arguments = match validate::check(tool, &call.function.arguments) {
            Ok(arguments) => arguments,
            Err(ArgumentError::Malformed(reason)) => {
                return Ending::Failure(failure::malformed_arguments(&reason));
            }
            Err(ArgumentError::Invalid(violations)) => {
                return Ending::Failure(failure::invalid_arguments(&violations));
            }
        };
        let record = JournalRecord {
            session_id: session_id.to_owned(),
            call_id: call.id.clone(),
            tool: name.to_owned(),
            arguments: call.function.arguments.clone(),
            status: CallStatus::Started,
            result: None,
            started_at: OffsetDateTime::now_utc(),
            finished_at: None,
        };
        // Journaling is the check that the call never ran: a call id already journaled (a
        // replay after a crash, or the same id twice) is answered from the journal instead.
        match self.store.journal_start(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return self.earlier_run(session_id, name, call).await,
            Err(error) => {
                tracing::warn!(session_id, tool = name, call_id = %call.id, %error, "journal start failed");
                return Ending::Failure(failure::journal_unavailable());
            }
        }
        let ending = self
            .invoke(tool, session_id, &call.id, arguments, request.cancel)
            .await;
        let content = match &ending {
            Ending::Success(output) => output.content.to_string(),
            Ending::Failure(error) => error.to_result_json().to_string(),
            Ending::Replayed(content) => content.clone(),
        };
        if let Err(error) = self
            .store
            .journal_finish(session_id, &call.id, &content)
            .await
        {
            tracing::warn!(session_id, tool = name, call_id = %call.id, %error, "journal finish failed");
        }
        ending
    }

    /// The answer for a call the journal already holds: its result if it finished, otherwise
    /// `outcome_unknown` (it may have had its effect; it is never run twice).
    async fn earlier_run(&self, session_id: &str, name: &str, call: &ToolCallRequest) -> Ending {
        match self.store.journal_get(session_id, &call.id).await {
            Ok(Some(record)) => match (record.status, record.result) {
                (CallStatus::Finished, Some(result)) => Ending::Replayed(result),
                _ => Ending::Failure(failure::outcome_unknown()),
            },
            Ok(None) => Ending::Failure(failure::outcome_unknown()),
            Err(error) => {
                tracing::warn!(session_id, tool = name, call_id = %call.id, %error, "journal lookup failed");
                Ending::Failure(failure::journal_unavailable())
            }
        }
    }

    /// Waits for permits, then runs the handler with the tool's timeout, stopping early when
    /// the turn is cancelled. Handlers run on the turn's task (calls of one step concurrently,
    /// not in parallel): they are I/O-bound, and a CPU-heavy one moves its work to
    /// `spawn_blocking` itself.
    async fn invoke(
        &self,
        tool: &Arc<CatalogTool>,
        session_id: &str,
        call_id: &str,
        arguments: serde_json::Value,
        cancel: &CancellationToken,
    ) -> Ending {
        let permits = tokio::select! {
            permits = acquire(&tool.concurrency, &self.running) => permits,
            () = cancel.cancelled() => return Ending::Failure(failure::cancelled()),
        };
        let Some(permits) = permits else {
            return Ending::Failure(failure::cancelled());
        };
        let child = cancel.child_token();
        let ctx = CallContext::new(session_id, call_id, tool.timeout, child.clone());
        let handler = Arc::clone(&tool.handler);
        let call = ToolCall {
            tool: tool.name.clone(),
            arguments,
        };
        // The handler runs inside this future, so giving up on it (timeout, cancel, the turn
        // dropped) drops it and its permits at once; a panic is caught at its poll.
        let run = AssertUnwindSafe(async move {
            let _permits = permits;
            handler.call(call, ctx).await
        })
        .catch_unwind();
        // Cancellation is looked at first, so a turn already cancelled never starts a handler.
        tokio::select! {
            biased;
            () = cancel.cancelled() => Ending::Failure(failure::cancelled()),
            finished = tokio::time::timeout(tool.timeout, run) => match finished {
                Ok(Ok(Ok(output))) => Ending::Success(output),
                Ok(Ok(Err(error))) => Ending::Failure(error),
                Ok(Err(payload)) => Ending::Failure(failure::panicked(&panic_message(payload))),
                Err(_elapsed) => {
                    child.cancel();
                    Ending::Failure(failure::timeout(tool.timeout))
                }
            },
        }
    }
}

type Permits = (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
);

/// The tool's permit, then the daemon-wide one (always in that order). `None` if a semaphore
/// was closed.
async fn acquire(
    tool: &Arc<tokio::sync::Semaphore>,
    running: &Arc<tokio::sync::Semaphore>,
) -> Option<Permits> {
    let tool_permit = Arc::clone(tool).acquire_owned().await.ok()?;
    let running_permit = Arc::clone(running).acquire_owned().await.ok()?;
    Some((tool_permit, running_permit))
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

/// One event per run; argument values are never logged.
fn log_run(session_id: &str, run: &ToolRun) {
    let duration_ms = u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX);
    match &run.outcome {
        Outcome::Error(kind) if kind == "panic" => tracing::warn!(
            session_id,
            tool = %run.name,
            call_id = %run.call_id,
            outcome = %run.outcome,
            duration_ms,
            "tool call panicked"
        ),
        _ => tracing::info!(
            session_id,
            tool = %run.name,
            call_id = %run.call_id,
            outcome = %run.outcome,
            duration_ms,
            "tool call finished"
        ),
    }
}
