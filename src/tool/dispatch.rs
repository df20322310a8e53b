//! Runs the server-tool calls of one model response: journal, validation, handler with timeout
//! and cancellation, concurrency limits, panic isolation, a ceiling on result size; results in
//! call order.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use agentd_sdk::{CallContext, ToolCall, ToolOutput};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, CatalogTool};
use super::failure::{self, DispatchFailure, Failure, FailureKind};
use super::validate::{self, ArgumentError};
use crate::session::{Entry, ToolCallRequest, call_digest};
use crate::store::{
    ApprovalRecord, ApprovalState, CallResult, CallStatus, JournalRecord, StepWrite, Store,
    StoreError,
};

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Answered from the journal: the call had already run.
    Replayed,
    /// Failed; the kind is in the result JSON too.
    Error(FailureKind),
}

impl Outcome {
    /// `ok`, `replayed`, or the error kind.
    pub fn as_str(&self) -> &str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Replayed => "replayed",
            Outcome::Error(kind) => kind.as_str(),
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
    /// Journaled as started by this step and handed to its handler (not answered from the
    /// journal, or refused before running); its finish belongs in the journal.
    pub ran: bool,
    /// The journal's identity of the call's content; empty for a call refused before it was
    /// journaled.
    pub digest: String,
}

/// A call held for a person's approval instead of running: recorded pending, bound to its
/// arguments by `digest`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldCall {
    pub call_id: String,
    pub name: String,
    /// The validated arguments.
    pub arguments: serde_json::Value,
    pub digest: String,
    pub expires_at: OffsetDateTime,
}

/// What a step's dispatch came to.
#[derive(Debug)]
pub struct StepRuns {
    /// One run per call that was not held, in call order.
    pub runs: Vec<ToolRun>,
    /// Calls held for approval, in call order: they have no result yet.
    pub held: Vec<HeldCall>,
    /// The journal finish of the step's only running call, to be committed with its result.
    pub finish: Vec<CallResult>,
}

/// What to run.
pub struct DispatchRequest<'a> {
    pub catalog: &'a Catalog,
    pub session_id: &'a str,
    /// Whether the turn keeps history. A turn that does not journals its calls without their
    /// arguments: the journal keeps what exactly-once needs (id, digest, outcome), not the
    /// conversation the client asked not to store.
    pub keep_arguments: bool,
    /// Calls in the model's order. A call whose name was not offered, or is not in the
    /// catalog, gets `unknown_tool` and never reaches a handler.
    pub calls: &'a [ToolCallRequest],
    /// Every tool name the model was offered in this step: the only names a call may run
    /// (access control, not a hint), and the list an `unknown_tool` result names.
    pub offered: &'a [String],
    pub cancel: &'a CancellationToken,
    /// Called with each run as soon as it finishes (streaming), before `run` returns.
    pub progress: Option<Progress<'a>>,
    /// History entries committed together with the journal starts: the model answer that
    /// made these calls, so both are durable before any call runs.
    pub entries: Vec<Arc<Entry>>,
    /// A person approved these calls: they run even when their tool's policy would hold them.
    pub approved: bool,
}

/// Reports a finished run; the run's call waits for the returned future (a stream's client
/// that reads slowly holds the turn back instead of a buffer growing).
pub type Progress<'a> = &'a (dyn Fn(&ToolRun) -> BoxFuture<'static, ()> + Send + Sync);

/// Shared by all turns: the store for the journal and a daemon-wide cap on running calls.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    running: Arc<tokio::sync::Semaphore>,
    /// Longest result text kept (`limits.max_tool_result_bytes`).
    max_result_bytes: usize,
    /// How long a held call waits for a decision (`turn.approval_timeout`).
    approval_timeout: Duration,
}

/// What a call came to before it is turned into a [`ToolRun`].
enum Ending {
    Success(ToolOutput),
    Failure(Failure),
    /// The stored result of an earlier run of the same call.
    Replayed(String),
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, max_concurrent_calls: usize) -> Self {
        Self {
            store,
            running: Arc::new(tokio::sync::Semaphore::new(max_concurrent_calls)),
            max_result_bytes: crate::config::LimitsConfig::default().max_tool_result_bytes,
            approval_timeout: crate::config::TurnConfig::default().approval_timeout,
        }
    }

    /// How long a held call waits for a decision before it is answered as expired.
    pub fn set_approval_timeout(&mut self, approval_timeout: Duration) {
        self.approval_timeout = approval_timeout;
    }

    /// Results longer than this are replaced by a `result_too_large` error result.
    pub fn set_max_result_bytes(&mut self, max_result_bytes: usize) {
        self.max_result_bytes = max_result_bytes;
    }

    /// Checks every call, journals the runnable ones in one commit together with
    /// `request.entries`, then runs them (concurrently, bounded). Each finished call is
    /// journaled as it ends, except a step's only running call: its finish is handed back in
    /// [`StepRuns::finish`] for the caller to commit with the call's result, one write instead
    /// of two. Fails only when the commit that carried entries fails.
    pub async fn run(&self, request: DispatchRequest<'_>) -> Result<StepRuns, StoreError> {
        let DispatchRequest {
            catalog,
            session_id,
            keep_arguments,
            calls,
            offered,
            cancel,
            progress,
            entries,
            approved,
        } = request;
        let now = OffsetDateTime::now_utc();
        let expires_at = now + self.approval_timeout;
        let mut records = Vec::new();
        let mut holds = Vec::new();
        // Each ready call with whether its tool's policy holds it (asked once per call).
        let checked: Vec<Result<(Ready, bool), Failure>> = calls
            .iter()
            .map(|call| {
                let ready = check(catalog, offered, call)?;
                let hold = !approved && ready.tool.approval.requires(&ready.arguments);
                if hold {
                    if !keep_arguments {
                        return Err(failure::approval_unavailable());
                    }
                    holds.push(approval_record(session_id, call, &ready, now, expires_at));
                } else {
                    records.push(journal_record(session_id, call, &ready, keep_arguments));
                }
                Ok((ready, hold))
            })
            .collect();
        let written = self
            .journal_starts(session_id, entries, records, holds)
            .await?;
        let held_written = written.held;
        let mut journaled = written.started.into_iter();
        let mut held = Vec::new();
        let plans: Vec<Option<Plan>> = calls
            .iter()
            .zip(checked)
            .map(|(call, checked)| match checked {
                Ok((ready, true)) => {
                    if !held_written {
                        return Some(Plan::Answer(failure::journal_unavailable()));
                    }
                    tracing::info!(
                        session_id,
                        tool = %failure::shown(&call.function.name),
                        call_id = %failure::shown(&call.id),
                        digest = %ready.digest,
                        "tool call held for approval"
                    );
                    held.push(HeldCall {
                        call_id: call.id.clone(),
                        name: call.function.name.clone(),
                        arguments: ready.arguments,
                        digest: ready.digest,
                        expires_at,
                    });
                    None
                }
                Ok((ready, false)) => {
                    Some(match journaled.next().unwrap_or(Journaled::Unavailable) {
                        Journaled::Fresh => Plan::Run(ready),
                        Journaled::Before => Plan::Replay(ready.digest),
                        Journaled::Unavailable => Plan::Answer(failure::journal_unavailable()),
                    })
                }
                Err(error) => Some(Plan::Answer(error)),
            })
            .collect();
        let (calls, plans): (Vec<&ToolCallRequest>, Vec<Plan>) = calls
            .iter()
            .zip(plans)
            .filter_map(|(call, plan)| plan.map(|plan| (call, plan)))
            .unzip();
        let running = plans.iter().filter(|p| matches!(p, Plan::Run(_))).count();
        let finish_here = running != 1;
        let runs = calls.into_iter().zip(plans).map(|(call, plan)| async move {
            let run = self
                .run_one(session_id, call, plan, cancel, finish_here)
                .await;
            log_run(session_id, &run);
            // A name the model made up is not a label value.
            let made_up = matches!(
                run.outcome,
                Outcome::Error(FailureKind::Dispatch(DispatchFailure::UnknownTool))
            );
            let tool = (!made_up).then_some(run.name.as_str());
            crate::telemetry::metrics().record_tool_call(tool, run.outcome.as_str(), run.duration);
            if let Some(progress) = progress {
                progress(&run).await;
            }
            run
        });
        let runs = futures_util::future::join_all(runs).await;
        let finish = if finish_here {
            Vec::new()
        } else {
            runs.iter()
                .filter(|run| run.ran)
                .map(|run| CallResult {
                    session_id: session_id.to_owned(),
                    call_id: run.call_id.clone(),
                    digest: run.digest.clone(),
                    result: run.content.clone(),
                })
                .collect()
        };
        Ok(StepRuns { runs, held, finish })
    }

    /// Journals the runnable calls as started, in one commit with `entries`. If that commit
    /// fails and carried entries, the step fails (the model's answer was not stored); if it
    /// carried only the journal, the calls are answered `journal_unavailable` and never run.
    async fn journal_starts(
        &self,
        session_id: &str,
        entries: Vec<Arc<Entry>>,
        records: Vec<JournalRecord>,
        hold: Vec<ApprovalRecord>,
    ) -> Result<Written, StoreError> {
        let count = records.len();
        let carried = !entries.is_empty();
        let step = StepWrite {
            entries,
            start: records,
            hold,
            ..StepWrite::default()
        };
        match self.store.write_step(step).await {
            Ok(fresh) => Ok(Written {
                started: fresh
                    .into_iter()
                    .map(|fresh| {
                        if fresh {
                            Journaled::Fresh
                        } else {
                            Journaled::Before
                        }
                    })
                    .collect(),
                held: true,
            }),
            Err(error) if carried => Err(error),
            Err(error) => {
                tracing::warn!(session_id, %error, "journal start failed");
                Ok(Written {
                    started: vec![Journaled::Unavailable; count],
                    held: false,
                })
            }
        }
    }

    async fn run_one(
        &self,
        session_id: &str,
        call: &ToolCallRequest,
        plan: Plan,
        cancel: &CancellationToken,
        finish_here: bool,
    ) -> ToolRun {
        let started = Instant::now();
        let name = call.function.name.as_str();
        let ran = matches!(plan, Plan::Run(_));
        let (ending, digest) = match plan {
            Plan::Answer(error) => (Ending::Failure(error), String::new()),
            Plan::Replay(digest) => (
                self.earlier_run(session_id, name, call, &digest).await,
                digest,
            ),
            Plan::Run(ready) => {
                let digest = ready.digest.clone();
                (
                    self.invoke(ready, session_id, &call.id, cancel).await,
                    digest,
                )
            }
        };
        let (content, outcome) = match ending {
            Ending::Success(output) => (output.into_text(), Outcome::Ok),
            Ending::Failure(failure) => (
                failure.error.to_result_json().to_string(),
                Outcome::Error(failure.kind),
            ),
            Ending::Replayed(content) => (content, Outcome::Replayed),
        };
        let (content, outcome) = self.limit_result(session_id, call, content, outcome);
        if ran
            && finish_here
            && let Err(error) = self
                .store
                .journal_finish(session_id, &call.id, &digest, &content)
                .await
        {
            tracing::warn!(session_id, tool = name, call_id = %failure::shown(&call.id), %error, "journal finish failed");
        }
        ToolRun {
            call_id: call.id.clone(),
            name: call.function.name.clone(),
            content,
            outcome,
            duration: started.elapsed(),
            ran,
            digest,
        }
    }

    /// A result over `max_result_bytes` is replaced, before it is journaled, stored or sent, by
    /// an error result telling the model the call ran and to ask for less.
    fn limit_result(
        &self,
        session_id: &str,
        call: &ToolCallRequest,
        content: String,
        outcome: Outcome,
    ) -> (String, Outcome) {
        if content.len() <= self.max_result_bytes {
            return (content, outcome);
        }
        tracing::warn!(
            session_id,
            tool = %failure::shown(&call.function.name),
            call_id = %failure::shown(&call.id),
            bytes = content.len(),
            limit = self.max_result_bytes,
            "tool result over limits.max_tool_result_bytes; replaced by an error result"
        );
        let failure = failure::result_too_large(content.len(), self.max_result_bytes);
        (
            failure.error.to_result_json().to_string(),
            Outcome::Error(failure.kind),
        )
    }

    /// The answer for a call the journal already holds: its result if it finished, otherwise
    /// `outcome_unknown` (it may have had its effect; it is never run twice).
    async fn earlier_run(
        &self,
        session_id: &str,
        name: &str,
        call: &ToolCallRequest,
        digest: &str,
    ) -> Ending {
        match self.store.journal_get(session_id, &call.id, digest).await {
            Ok(Some(record)) => match (record.status, record.result) {
                (CallStatus::Finished, Some(result)) => Ending::Replayed(result),
                _ => Ending::Failure(failure::outcome_unknown()),
            },
            Ok(None) => Ending::Failure(failure::outcome_unknown()),
            Err(error) => {
                tracing::warn!(session_id, tool = name, call_id = %failure::shown(&call.id), %error, "journal lookup failed");
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
        ready: Ready,
        session_id: &str,
        call_id: &str,
        cancel: &CancellationToken,
    ) -> Ending {
        let Ready {
            tool,
            arguments,
            digest,
        } = ready;
        let permits = tokio::select! {
            permits = acquire(&tool.concurrency, &self.running) => permits,
            () = cancel.cancelled() => return Ending::Failure(failure::cancelled()),
        };
        let Some(permits) = permits else {
            return Ending::Failure(failure::cancelled());
        };
        let child = cancel.child_token();
        let ctx = CallContext::new(session_id, call_id, tool.timeout, child.clone())
            .with_content_digest(&digest);
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
                Ok(Ok(Err(error))) => Ending::Failure(Failure::from_handler(error)),
                Ok(Err(payload)) => Ending::Failure(failure::panicked(&panic_message(payload))),
                Err(_elapsed) => {
                    child.cancel();
                    Ending::Failure(failure::timeout(tool.timeout))
                }
            },
        }
    }
}

/// A call that passed the catalog and its schema.
struct Ready {
    tool: Arc<CatalogTool>,
    arguments: serde_json::Value,
    /// Tool name and canonical arguments, hashed: what makes two calls with one id the same.
    digest: String,
}

/// What the commit before the calls run came to.
struct Written {
    /// For each journaled call, in order.
    started: Vec<Journaled>,
    /// The held calls were recorded.
    held: bool,
}

/// What journaling a ready call found.
#[derive(Debug, Clone, Copy)]
enum Journaled {
    Fresh,
    /// The same call (id and content) was journaled before: the client repeated a turn, or
    /// a provider sent the same call again.
    Before,
    Unavailable,
}

/// How a call of the step is answered.
enum Plan {
    Run(Ready),
    /// From the journal (the call's digest): the call must not run again.
    Replay(String),
    /// Without running: unknown tool, bad arguments, no journal.
    Answer(Failure),
}

/// Looks the call's tool up among those offered and checks its arguments. A catalog tool the
/// step did not offer is refused exactly like a name that does not exist, so a model cannot
/// learn of, or run, a tool kept from it (`offer = false` and not declared for the turn).
fn check(catalog: &Catalog, offered: &[String], call: &ToolCallRequest) -> Result<Ready, Failure> {
    let name = call.function.name.as_str();
    let tool = offered
        .iter()
        .any(|offered| offered == name)
        .then(|| catalog.get(name))
        .flatten();
    let Some(tool) = tool else {
        return Err(failure::unknown_tool(name, offered));
    };
    match validate::check(tool, &call.function.arguments) {
        Ok(arguments) => Ok(Ready {
            digest: call_digest(&tool.name, &arguments),
            tool: Arc::clone(tool),
            arguments,
        }),
        Err(ArgumentError::Malformed(reason)) => Err(failure::malformed_arguments(&reason)),
        Err(ArgumentError::Invalid(violations)) => Err(failure::invalid_arguments(&violations)),
    }
}

/// The journal record of a call about to run. Journaling is the check that the call never
/// ran: the same call (id and digest) already journaled is answered from the journal instead.
fn journal_record(
    session_id: &str,
    call: &ToolCallRequest,
    ready: &Ready,
    keep_arguments: bool,
) -> JournalRecord {
    JournalRecord {
        session_id: session_id.to_owned(),
        call_id: call.id.clone(),
        digest: ready.digest.clone(),
        tool: call.function.name.clone(),
        arguments: if keep_arguments {
            call.function.arguments.clone()
        } else {
            String::new()
        },
        status: CallStatus::Started,
        result: None,
        started_at: OffsetDateTime::now_utc(),
        finished_at: None,
    }
}

/// The pending-approval record of a call held instead of run.
fn approval_record(
    session_id: &str,
    call: &ToolCallRequest,
    ready: &Ready,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> ApprovalRecord {
    ApprovalRecord {
        session_id: session_id.to_owned(),
        call_id: call.id.clone(),
        digest: ready.digest.clone(),
        tool: call.function.name.clone(),
        arguments: ready.arguments.to_string(),
        requested_at: now,
        expires_at,
        state: ApprovalState::Pending,
        reason: None,
        decided_at: None,
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
        Outcome::Error(FailureKind::Dispatch(DispatchFailure::Panic)) => tracing::warn!(
            session_id,
            tool = %failure::shown(&run.name),
            call_id = %failure::shown(&run.call_id),
            outcome = %run.outcome,
            duration_ms,
            "tool call panicked"
        ),
        _ => tracing::info!(
            session_id,
            tool = %failure::shown(&run.name),
            call_id = %failure::shown(&run.call_id),
            outcome = %run.outcome,
            duration_ms,
            "tool call finished"
        ),
    }
}
