//! The steps of a turn, in the order [`Engine::run`] takes them: [`Engine::begin`] reads the
//! session and settles what every step uses, [`Engine::ask_model`] makes one model call,
//! [`Engine::take_answer`] puts the answer in history and sorts its calls by who runs them,
//! [`Engine::run_server_calls`] runs agentd's calls and records their results, and
//! [`Turn::end`] makes the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::provider::{ModelRequest, ModelResponse, Usage};
use crate::session::{ChatMessage, EntrySource, FunctionCall, PromptMessage, ToolCallRequest};
use crate::tool::{Catalog, DispatchRequest, HeldCall, Progress, ToolRun};
use crate::turn::model_call::emit;
use crate::turn::prompt::{self, Offer};
use crate::turn::transcript::Transcript;
use crate::turn::{
    Engine, StopReason, TurnContext, TurnError, TurnEvent, TurnOutcome, TurnRequest, limits,
    pending,
};

/// Room in a model request's first allocation for what is not the conversation: the system
/// prompt, tools and settings (a larger request grows its buffer once more).
const REQUEST_FRAME_BYTES: usize = 8 * 1024;

/// What a turn settles before its first model call and every step then uses.
struct Plan {
    catalog: Arc<Catalog>,
    offer: Offer,
    auto_run: bool,
    max_steps: u32,
    settings: Map<String, Value>,
    model: String,
    system: Option<ChatMessage>,
    tool_choice: Option<Value>,
    /// `tool_choice: "none"`, for the last call when `max_steps` is reached.
    no_tools: Value,
}

/// A turn in progress: its plan, its conversation and its running totals.
pub(super) struct Turn<'a> {
    ctx: &'a TurnContext,
    cancel: &'a CancellationToken,
    events: Option<mpsc::Sender<TurnEvent>>,
    plan: Plan,
    transcript: Transcript<'a>,
    save: bool,
    /// Model calls made so far.
    pub(super) step: u32,
    usage: Usage,
    runs: Vec<ToolRun>,
    /// Calls held for approval in the last step: the turn ends after it.
    pub(super) held: Vec<HeldCall>,
    model_time: Duration,
    tool_time: Duration,
    timer: crate::telemetry::TurnTimer,
}

/// The calls of one model answer, sorted by who runs them.
pub(super) struct Calls {
    pub(super) all: Vec<ToolCallRequest>,
    /// The calls agentd runs now.
    pub(super) server: Vec<ToolCallRequest>,
    /// Some call is the client's to run (or `auto_run_tools` is false): the turn ends after
    /// this step.
    pub(super) for_client: bool,
}

impl Turn<'_> {
    /// Whether this step is the extra call made after `max_steps`, with tools turned off.
    pub(super) fn is_last_call(&self) -> bool {
        self.step > self.plan.max_steps
    }

    /// Reports the calls of an answer to a streaming client.
    pub(super) async fn announce(&self, calls: Vec<ToolCallRequest>) {
        if let Some(events) = &self.events {
            // Waits while the client is slow; fails at once when it has gone.
            emit(events, TurnEvent::ToolCalls(calls), self.cancel).await;
        }
    }

    /// The outcome of a turn that ends with `message`.
    pub(super) fn end(
        self,
        message: ChatMessage,
        finish_reason: String,
        stop: StopReason,
    ) -> TurnOutcome {
        crate::telemetry::metrics().turn_finished(
            &self.timer,
            self.step,
            self.model_time,
            self.tool_time,
        );
        TurnOutcome {
            message,
            finish_reason,
            usage: self.usage,
            runs: self.runs,
            held: self.held,
            steps: self.step,
            stop,
        }
    }
}

impl Engine {
    /// Reads the session's history, pairs calls it left unanswered with results, adds the
    /// request's messages (stored with the model's first answer: a turn whose model call fails
    /// leaves no trace, so a client's retry does not repeat its input), checks the history's
    /// size, and settles the model, settings, tools and system prompt.
    pub(super) async fn begin<'a>(
        &self,
        ctx: &'a TurnContext,
        request: TurnRequest,
        events: Option<mpsc::Sender<TurnEvent>>,
        cancel: &'a CancellationToken,
    ) -> Result<Turn<'a>, TurnError> {
        let timer = crate::telemetry::metrics().turn_started();
        let catalog = self.catalog();
        let sid = ctx.session_id.as_str();
        let TurnRequest {
            messages,
            tools,
            tool_choice,
            settings: requested_settings,
            model,
            save,
            auto_run_tools,
            max_steps,
        } = request;
        // Checked before anything runs: a choice no provider would take is the client's 422.
        let offer = prompt::offer(&catalog, &ctx.agent_tools, &tools);
        let tool_choice = super::tool_choice::settle(tool_choice, &offer)?;
        let history = self.store.full_history(sid).await?;
        let slots = pending::reconcile(self.store.as_ref(), sid, &history, messages).await?;
        let (incoming, runs) = self
            .run_approved(sid, &catalog, save, slots, cancel)
            .await?;
        let mut transcript = Transcript::new(sid, save, history);
        transcript.add(incoming);
        if save {
            limits::check_history(sid, &transcript, self.limits)?;
        }

        let mut settings = ctx.default_settings.clone();
        settings.extend(requested_settings);
        let plan = Plan {
            offer,
            auto_run: auto_run_tools.or(ctx.auto_run_tools).unwrap_or(true),
            max_steps: max_steps
                .unwrap_or(self.config.max_steps)
                .clamp(1, self.config.max_steps_limit),
            settings,
            model: model
                .or_else(|| ctx.model.clone().filter(|m| !m.is_empty()))
                .unwrap_or_else(|| self.default_model.clone()),
            system: prompt::system_message(ctx, self.config.max_system_prompt_bytes)?,
            tool_choice,
            no_tools: json!("none"),
            catalog,
        };
        Ok(Turn {
            ctx,
            cancel,
            events,
            plan,
            transcript,
            save,
            step: 0,
            usage: Usage::default(),
            runs,
            held: Vec::new(),
            model_time: Duration::ZERO,
            tool_time: Duration::ZERO,
            timer,
        })
    }

    /// Runs the calls a person approved since the turn that held them (journaled, exactly
    /// once: a call already journaled is answered from the journal), and puts each result in
    /// its call's place. Their journal finishes are committed at once; the results go into
    /// history with the turn's input.
    async fn run_approved(
        &self,
        session_id: &str,
        catalog: &Catalog,
        save: bool,
        slots: Vec<pending::Slot>,
        cancel: &CancellationToken,
    ) -> Result<(Vec<(ChatMessage, EntrySource)>, Vec<ToolRun>), TurnError> {
        let approved: Vec<ToolCallRequest> = slots
            .iter()
            .filter_map(|slot| match slot {
                pending::Slot::Approved(call) => Some(ToolCallRequest {
                    id: call.id.clone(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    },
                }),
                pending::Slot::Message(..) => None,
            })
            .collect();
        let mut runs = Vec::new();
        if !approved.is_empty() {
            // A person approved exactly these calls: they are what is on offer.
            let offered: Vec<String> = approved.iter().map(|c| c.function.name.clone()).collect();
            let step_runs = self
                .dispatcher
                .run(DispatchRequest {
                    catalog,
                    session_id,
                    keep_arguments: save,
                    calls: &approved,
                    offered: &offered,
                    cancel,
                    progress: None,
                    entries: Vec::new(),
                    approved: true,
                })
                .await?;
            if !step_runs.finish.is_empty() {
                self.store
                    .write_step(crate::store::StepWrite {
                        finish: step_runs.finish,
                        ..Default::default()
                    })
                    .await?;
            }
            runs = step_runs.runs;
        }
        let messages = slots
            .into_iter()
            .map(|slot| match slot {
                pending::Slot::Message(message, source) => (message, source),
                pending::Slot::Approved(call) => {
                    let content = runs
                        .iter()
                        .find(|run| run.call_id == call.id)
                        .map(|run| run.content.clone())
                        .unwrap_or_default();
                    (
                        ChatMessage::tool_result(&call.id, &call.name, content),
                        EntrySource::ToolResponse,
                    )
                }
            })
            .collect();
        if cancel.is_cancelled() {
            return Err(TurnError::Cancelled);
        }
        Ok((messages, runs))
    }

    /// Sends the system prompt and the conversation (truncated to the session's token budget)
    /// to the model, and counts the call's time and usage.
    pub(super) async fn ask_model(&self, turn: &mut Turn<'_>) -> Result<ModelResponse, TurnError> {
        let last_call = turn.is_last_call();
        let conversation: Vec<PromptMessage> = turn.transcript.prompt().collect();
        let window = match turn.ctx.token_budget {
            Some(budget) => prompt::truncate(&conversation, budget),
            None => &conversation[..],
        };
        let plan = &turn.plan;
        let request = ModelRequest {
            model: &plan.model,
            messages: plan
                .system
                .iter()
                .map(PromptMessage::Built)
                .chain(window.iter().copied())
                .collect(),
            tools: &plan.offer.definitions,
            tool_choice: if plan.offer.definitions.is_empty() {
                None
            } else if last_call {
                Some(&plan.no_tools)
            } else {
                plan.tool_choice.as_ref()
            },
            settings: &plan.settings,
            size_hint: turn.transcript.json_bytes() + REQUEST_FRAME_BYTES,
        };
        let started = Instant::now();
        let response = self
            .call_model_within_limit(request, turn.ctx, turn.events.as_ref(), turn.cancel)
            .await;
        let elapsed = started.elapsed();
        turn.model_time += elapsed;
        crate::telemetry::metrics().record_model_call(
            self.provider.name(),
            &plan.model,
            model_outcome(&response),
            elapsed,
        );
        let response = response?;
        turn.usage += response.usage;
        Ok(response)
    }

    /// Adds the model's answer to the conversation and sorts its calls by who runs them. An
    /// answer without calls for agentd is stored now; one with such calls is stored by the
    /// dispatcher, in one commit with the journal starts of its calls.
    pub(super) async fn take_answer(
        &self,
        turn: &mut Turn<'_>,
        answer: &mut ModelResponse,
    ) -> Result<Calls, TurnError> {
        if turn.is_last_call() && !answer.message.calls().is_empty() {
            // The model ignored tool_choice "none": its calls are dropped so history stays
            // valid, and the answer is whatever text came with them.
            answer.message.tool_calls = None;
        }
        turn.transcript.fresh_call_ids(&mut answer.message);
        let all = answer.message.calls().to_vec();
        turn.transcript
            .add(vec![(answer.message.clone(), EntrySource::ApiResponse)]);
        let plan = &turn.plan;
        let by_client = |call: &ToolCallRequest| plan.offer.client.contains(&call.function.name);
        let for_client = !plan.auto_run || all.iter().any(by_client);
        let server: Vec<ToolCallRequest> = if plan.auto_run {
            all.iter().filter(|c| !by_client(c)).cloned().collect()
        } else {
            Vec::new()
        };
        if server.is_empty() {
            turn.transcript.save(self.store.as_ref()).await?;
        }
        Ok(Calls {
            all,
            server,
            for_client,
        })
    }

    /// Runs agentd's calls of one answer through the dispatcher (each result streamed as it
    /// finishes), then stores their results and journal finishes in one commit.
    pub(super) async fn run_server_calls(
        &self,
        turn: &mut Turn<'_>,
        calls: &[ToolCallRequest],
    ) -> Result<(), TurnError> {
        let started = Instant::now();
        let cancel = turn.cancel;
        // Each result goes out as it finishes, before anything the next model call streams; a
        // closed receiver only means nobody is listening any more.
        let report = turn.events.as_ref().map(|tx| {
            move |run: &ToolRun| -> BoxFuture<'static, ()> {
                let tx = tx.clone();
                let cancel = cancel.clone();
                let event = TurnEvent::ToolResult(Box::new(run.clone()));
                Box::pin(async move { emit(&tx, event, &cancel).await })
            }
        });
        let step_runs = self
            .dispatcher
            .run(DispatchRequest {
                catalog: &turn.plan.catalog,
                session_id: &turn.ctx.session_id,
                keep_arguments: turn.save,
                calls,
                offered: &turn.plan.offer.names,
                cancel,
                progress: report.as_ref().map(|f| f as Progress<'_>),
                entries: turn.transcript.take_unsaved(),
                approved: false,
            })
            .await?;
        turn.held.extend(step_runs.held);
        turn.tool_time += started.elapsed();
        let results = step_runs
            .runs
            .iter()
            .map(|run| {
                let message =
                    ChatMessage::tool_result(&run.call_id, &run.name, run.content.clone());
                (message, EntrySource::ToolResponse)
            })
            .collect();
        turn.transcript.add(results);
        turn.transcript
            .save_finishing(self.store.as_ref(), step_runs.finish)
            .await?;
        turn.runs.extend(step_runs.runs);
        if cancel.is_cancelled() {
            return Err(TurnError::Cancelled);
        }
        Ok(())
    }
}

/// How a model call ended, as the metrics count it.
fn model_outcome<T>(result: &Result<T, TurnError>) -> crate::telemetry::ModelOutcome {
    use crate::telemetry::ModelOutcome;
    match result {
        Ok(_) => ModelOutcome::Ok,
        Err(TurnError::Cancelled) => ModelOutcome::Cancelled,
        Err(_) => ModelOutcome::Error,
    }
}
