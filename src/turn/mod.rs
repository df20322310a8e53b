//! The loop of one chat call ("turn"): model call, server tools run and fed back, until the
//! model answers without tool calls, hands calls to the client, or `max_steps` is reached
//! (then one last call with `tool_choice: "none"`). History is written as the turn goes, so it
//! is valid at every point: a tool call is never stored without its result following it.

mod limits;
mod pending;
pub mod prompt;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TurnConfig;
use crate::provider::{
    ModelProvider, ModelRequest, ModelResponse, ProviderError, StreamEvent, Usage,
};
use crate::session::{
    CallResult, ChatMessage, Entry, EntrySource, MessageJson, PromptMessage, StepWrite, Store,
    StoreError, ToolCallRequest,
};
use crate::tool::{Catalog, DispatchRequest, Dispatcher, Progress, ToolRun};

pub use limits::TurnLimits;
pub use pending::unanswered;

/// The session, agent and settings a turn runs with (loaded by the API layer).
#[derive(Debug, Clone, Default)]
pub struct TurnContext {
    pub session_id: String,
    pub agent_name: String,
    pub agent_about: String,
    pub instructions: Vec<String>,
    pub situation: Option<String>,
    pub system_template: Option<String>,
    /// The agent's model, if it names one.
    pub model: Option<String>,
    /// The agent's default settings; the request's settings win.
    pub default_settings: Map<String, Value>,
    /// Tools declared on the agent (normalized bodies).
    pub agent_tools: Vec<Value>,
    /// Keep only the newest history that fits this many tokens.
    pub token_budget: Option<u64>,
    /// The session's `auto_run_tools` default.
    pub auto_run_tools: Option<bool>,
    /// The session's `context_overflow` is `truncate`: a model request over
    /// `limits.max_prompt_bytes` drops its oldest messages instead of failing the turn.
    pub truncate_on_overflow: bool,
}

/// What the caller asked for in this chat call.
#[derive(Debug, Clone, Default)]
pub struct TurnRequest {
    pub messages: Vec<ChatMessage>,
    /// Request tools (normalized bodies).
    pub tools: Vec<Value>,
    pub tool_choice: Option<Value>,
    /// Sampling settings passed to the model (`max_tokens`, `temperature`, ...).
    pub settings: Map<String, Value>,
    pub model: Option<String>,
    pub save: bool,
    pub auto_run_tools: Option<bool>,
    pub max_steps: Option<u32>,
}

/// Why the turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model answered without tool calls.
    Finished,
    /// The model called tools the client runs (or `auto_run_tools` is false).
    ClientTools,
    /// `max_steps` model calls were made; the last answer was forced without tools.
    MaxSteps,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Finished => "finished",
            StopReason::ClientTools => "client_tools",
            StopReason::MaxSteps => "max_steps",
        }
    }
}

/// Something that happened during a turn, for streaming.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// Assistant text as the model produces it.
    Text(String),
    /// The model asked for these calls.
    ToolCalls(Vec<ToolCallRequest>),
    /// A server tool finished (boxed: events wait in a channel, sized by the largest).
    ToolResult(Box<ToolRun>),
}

/// The end of a turn.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub message: ChatMessage,
    pub finish_reason: String,
    pub usage: Usage,
    pub runs: Vec<ToolRun>,
    pub steps: u32,
    pub stop: StopReason,
    /// Time spent waiting on the model and on handlers (the rest is agentd's own cost).
    pub model_time: Duration,
    pub tool_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{loc}: {msg}")]
    Invalid { loc: String, msg: String },
    /// Over a `[limits]` ceiling (`history_full`, `prompt_too_large`).
    #[error("{message}")]
    Limit { code: &'static str, message: String },
    #[error("turn cancelled")]
    Cancelled,
}

impl TurnError {
    pub fn invalid(loc: impl Into<String>, msg: impl Into<String>) -> Self {
        TurnError::Invalid {
            loc: loc.into(),
            msg: msg.into(),
        }
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

/// Runs turns. Shared by all requests.
pub struct Engine {
    store: Arc<dyn Store>,
    provider: Arc<dyn ModelProvider>,
    catalog: RwLock<Arc<Catalog>>,
    dispatcher: Dispatcher,
    config: TurnConfig,
    default_model: String,
    limits: TurnLimits,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        provider: Arc<dyn ModelProvider>,
        catalog: Catalog,
        config: TurnConfig,
        default_model: String,
        max_concurrent_calls: usize,
    ) -> Self {
        Self {
            dispatcher: Dispatcher::new(store.clone(), max_concurrent_calls),
            store,
            provider,
            catalog: RwLock::new(Arc::new(catalog)),
            config,
            default_model,
            limits: TurnLimits::default(),
        }
    }

    /// Applies `[limits]`: session history size, system prompt size and tool result size.
    pub fn with_limits(mut self, limits: &crate::config::LimitsConfig) -> Self {
        self.limits = TurnLimits::from(limits);
        self.dispatcher
            .set_max_result_bytes(limits.max_tool_result_bytes);
        self
    }

    /// The catalog new turns start with.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps the catalog; turns in flight keep the one they started with.
    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
    }

    pub fn max_steps_limit(&self) -> u32 {
        self.config.max_steps_limit
    }

    pub fn provider(&self) -> &dyn ModelProvider {
        self.provider.as_ref()
    }

    /// Runs one turn. With `events`, the model is streamed and progress is reported as it
    /// happens. `cancel` abandons the turn (client gone, shutdown); history stays valid.
    pub async fn run(
        &self,
        ctx: &TurnContext,
        request: TurnRequest,
        events: Option<mpsc::Sender<TurnEvent>>,
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, TurnError> {
        let turn_timer = crate::telemetry::metrics().turn_started();
        let catalog = self.catalog();
        let sid = ctx.session_id.as_str();
        let save = request.save;
        let history = self.store.full_history(sid).await?;
        let incoming =
            pending::reconcile(self.store.as_ref(), sid, &history, request.messages).await?;
        let mut transcript = Transcript::new(sid, save, history);
        // The input is stored together with the model's first answer: a turn whose model
        // call fails leaves no trace, so the client's retry does not repeat the input.
        transcript.add(incoming);
        if save {
            limits::check_history(sid, &transcript.conversation, self.limits)?;
        }

        let offer = prompt::offer(&catalog, &ctx.agent_tools, &request.tools);
        let auto_run = request
            .auto_run_tools
            .or(ctx.auto_run_tools)
            .unwrap_or(true);
        let max_steps = request
            .max_steps
            .unwrap_or(self.config.max_steps)
            .clamp(1, self.config.max_steps_limit);
        let mut settings = ctx.default_settings.clone();
        settings.extend(request.settings);
        let model = request
            .model
            .or_else(|| ctx.model.clone().filter(|m| !m.is_empty()))
            .unwrap_or_else(|| self.default_model.clone());
        let system = prompt::system_message(ctx, self.config.max_system_prompt_bytes)?;
        let no_tools = json!("none");

        let mut usage = Usage::default();
        let mut runs = Vec::new();
        let (mut model_time, mut tool_time) = (Duration::ZERO, Duration::ZERO);
        let mut step = 0;
        loop {
            step += 1;
            let last_call = step > max_steps;
            let conversation: Vec<PromptMessage> = transcript.prompt().collect();
            let window = match ctx.token_budget {
                Some(budget) => prompt::truncate(&conversation, budget),
                None => &conversation[..],
            };
            let model_request = ModelRequest {
                model: &model,
                messages: system
                    .iter()
                    .map(PromptMessage::Built)
                    .chain(window.iter().copied())
                    .collect(),
                tools: &offer.definitions,
                tool_choice: if last_call {
                    Some(&no_tools)
                } else {
                    request.tool_choice.as_ref()
                },
                settings: &settings,
            };
            let started = Instant::now();
            let response = self
                .call_model_within_limit(model_request, ctx, events.as_ref(), cancel)
                .await;
            model_time += started.elapsed();
            crate::telemetry::metrics().record_model_call(
                self.provider.name(),
                &model,
                model_outcome(&response),
                started.elapsed(),
            );
            let mut response = response?;
            usage += response.usage;

            if last_call && !response.message.calls().is_empty() {
                // The model ignored tool_choice "none": its calls are dropped so history stays
                // valid, and the answer is whatever text came with them.
                response.message.tool_calls = None;
            }
            transcript.fresh_call_ids(&mut response.message);
            let calls = response.message.calls().to_vec();
            let message = response.message.clone();
            transcript.add(vec![(message, EntrySource::ApiResponse)]);
            let client_calls = !auto_run
                || calls
                    .iter()
                    .any(|c| offer.client.contains(&c.function.name));
            let server_calls: Vec<ToolCallRequest> = if auto_run {
                calls
                    .iter()
                    .filter(|c| !offer.client.contains(&c.function.name))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            // An answer with server calls is stored by the dispatcher, in one commit with the
            // journal starts of its calls.
            if server_calls.is_empty() {
                transcript.save(self.store.as_ref()).await?;
            }
            if calls.is_empty() {
                let stop = if last_call {
                    StopReason::MaxSteps
                } else {
                    StopReason::Finished
                };
                let finish = match response.finish_reason.as_deref() {
                    Some("tool_calls") | None => "stop".to_owned(),
                    Some(other) => other.to_owned(),
                };
                crate::telemetry::metrics().turn_finished(&turn_timer, step, model_time, tool_time);
                return Ok(TurnOutcome {
                    message: response.message,
                    finish_reason: finish,
                    usage,
                    runs,
                    steps: step,
                    stop,
                    model_time,
                    tool_time,
                });
            }
            if let Some(events) = &events {
                // Waits while the client is slow; fails at once when it has gone.
                emit(events, TurnEvent::ToolCalls(calls.clone()), cancel).await;
            }
            if !server_calls.is_empty() {
                let started = Instant::now();
                // Each result goes out as it finishes, before anything the next model call
                // streams; a closed receiver only means nobody is listening any more.
                let report = events.as_ref().map(|tx| {
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
                        catalog: &catalog,
                        session_id: sid,
                        keep_arguments: save,
                        calls: &server_calls,
                        offered: &offer.names,
                        cancel,
                        progress: report.as_ref().map(|f| f as Progress<'_>),
                        entries: transcript.take_unsaved(),
                    })
                    .await?;
                tool_time += started.elapsed();
                let results = step_runs
                    .runs
                    .iter()
                    .map(|run| {
                        let message =
                            ChatMessage::tool_result(&run.call_id, &run.name, run.content.clone());
                        (message, EntrySource::ToolResponse)
                    })
                    .collect();
                transcript.add(results);
                transcript
                    .save_finishing(self.store.as_ref(), step_runs.finish)
                    .await?;
                runs.extend(step_runs.runs);
                if cancel.is_cancelled() {
                    return Err(TurnError::Cancelled);
                }
            }
            if client_calls {
                crate::telemetry::metrics().turn_finished(&turn_timer, step, model_time, tool_time);
                return Ok(TurnOutcome {
                    message: response.message,
                    finish_reason: "tool_calls".into(),
                    usage,
                    runs,
                    steps: step,
                    stop: StopReason::ClientTools,
                    model_time,
                    tool_time,
                });
            }
        }
    }

    async fn call_model(
        &self,
        request: &ModelRequest<'_>,
        events: Option<&mpsc::Sender<TurnEvent>>,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, TurnError> {
        let call = async {
            let Some(events) = events else {
                return self.provider.complete(request).await;
            };
            let mut stream = self.provider.stream(request).await?;
            use futures_util::StreamExt;
            while let Some(event) = stream.next().await {
                match event? {
                    StreamEvent::Text(text) => {
                        // A slow client holds the model's stream here, not in a buffer.
                        let _ = events.send(TurnEvent::Text(text)).await;
                    }
                    StreamEvent::Done(response) => return Ok(response),
                }
            }
            Err(ProviderError::Protocol(
                "stream ended without an answer".into(),
            ))
        };
        let most = self.limits.max_answer_time;
        tokio::select! {
            result = tokio::time::timeout(most, call) => match result {
                Ok(answer) => Ok(answer?),
                Err(_elapsed) => {
                    tracing::warn!(limit = ?most, "model answer took longer than limits.max_answer_time");
                    Err(ProviderError::Timeout(most).into())
                }
            },
            () = cancel.cancelled() => Err(TurnError::Cancelled),
        }
    }
}

/// Sends a streamed turn's event, waiting while a slow client catches up, but never past the
/// turn's cancellation (a delete, a drain, the client gone): a client that stops reading
/// cannot hold a turn that is told to stop.
async fn emit(events: &mpsc::Sender<TurnEvent>, event: TurnEvent, cancel: &CancellationToken) {
    tokio::select! {
        _ = events.send(event) => {}
        () = cancel.cancelled() => {}
    }
}

/// The conversation a turn sends to the model: the session's history (shared with the
/// store's in-memory copy, not copied), then what this turn added, the last `unsaved` of it
/// not stored yet.
struct Transcript<'a> {
    session_id: &'a str,
    save: bool,
    conversation: Vec<Arc<Entry>>,
    unsaved: usize,
}

impl<'a> Transcript<'a> {
    fn new(session_id: &'a str, save: bool, history: Vec<Arc<Entry>>) -> Self {
        Self {
            session_id,
            save,
            conversation: history,
            unsaved: 0,
        }
    }

    fn messages(&self) -> impl Iterator<Item = &ChatMessage> {
        self.conversation.iter().map(|entry| &entry.message)
    }

    /// The conversation as model-request messages, each written from its entry's kept text.
    fn prompt(&self) -> impl Iterator<Item = PromptMessage<'_>> {
        self.conversation
            .iter()
            .map(|entry| PromptMessage::Entry(entry))
    }

    /// Gives a new id to every call whose id the conversation already has (some servers number
    /// calls per response): each call then has its own result in history and its own journal
    /// entry, instead of being taken for a replay of the earlier call and never run.
    fn fresh_call_ids(&self, message: &mut ChatMessage) {
        let Some(calls) = message.tool_calls.as_mut() else {
            return;
        };
        if calls.is_empty() {
            return;
        }
        let earlier = || self.messages().flat_map(ChatMessage::calls);
        // A few calls scan history each; many get one pass into a set, so an answer with
        // thousands of calls costs history + calls, not history × calls.
        let many: Option<HashSet<&str>> =
            (calls.len() > 4).then(|| earlier().map(|call| call.id.as_str()).collect());
        let used = |id: &str| match &many {
            Some(set) => set.contains(id),
            None => earlier().any(|call| call.id == id),
        };
        let mut seen = HashSet::new();
        for call in calls {
            if used(&call.id) || !seen.insert(call.id.clone()) {
                call.id = crate::provider::openai::generated_call_id();
                seen.insert(call.id.clone());
            }
        }
    }

    /// Adds messages to the conversation; they are stored at the next [`Transcript::save`].
    fn add(&mut self, messages: Vec<(ChatMessage, EntrySource)>) {
        let now = OffsetDateTime::now_utc();
        for (message, source) in messages {
            self.conversation.push(Arc::new(Entry {
                id: crate::ids::new_v7().to_string(),
                session_id: self.session_id.to_owned(),
                source,
                message,
                created_at: now,
                json: MessageJson::default(),
            }));
            if self.save {
                self.unsaved += 1;
            }
        }
    }

    /// Hands over what was added since the last save, for a caller that commits it.
    fn take_unsaved(&mut self) -> Vec<Arc<Entry>> {
        let first = self.conversation.len() - self.unsaved;
        self.unsaved = 0;
        // Shared with the store: the JSON text the store makes of each entry is the one the
        // next model request is written from.
        self.conversation[first..].to_vec()
    }

    /// Stores what was added since the last save, in one transaction.
    async fn save(&mut self, store: &dyn Store) -> Result<(), TurnError> {
        self.save_finishing(store, Vec::new()).await
    }

    /// Stores what was added since the last save, and journals `finish`, in one transaction.
    async fn save_finishing(
        &mut self,
        store: &dyn Store,
        finish: Vec<CallResult>,
    ) -> Result<(), TurnError> {
        let entries = self.take_unsaved();
        if entries.is_empty() && finish.is_empty() {
            return Ok(());
        }
        store
            .write_step(StepWrite {
                entries,
                start: Vec::new(),
                finish,
            })
            .await?;
        Ok(())
    }
}
