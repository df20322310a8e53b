//! The loop of one chat call ("turn"): model call, server tools run and fed back, until the
//! model answers without tool calls, hands calls to the client, or `max_steps` is reached
//! (then one last call with `tool_choice: "none"`). History is written as the turn goes, so it
//! is valid at every point: a tool call is never stored without its result following it.

mod limits;
mod model_call;
mod pending;
pub(crate) mod prompt;
mod steps;
mod tool_choice;
mod transcript;

use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TurnConfig;
use crate::provider::{ModelProvider, ProviderError, Usage};
use crate::session::{ChatMessage, ToolCallRequest};
use crate::store::{Store, StoreError};
use crate::tool::{Catalog, Dispatcher, HeldCall, ToolRun};

pub(crate) use limits::TurnLimits;

/// The session, agent and settings a turn runs with (loaded by the API layer).
#[derive(Debug, Clone, Default)]
pub(crate) struct TurnContext {
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
pub(crate) struct TurnRequest {
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
pub(crate) enum StopReason {
    /// The model answered without tool calls.
    Finished,
    /// The model called tools the client runs (or `auto_run_tools` is false).
    ClientTools,
    /// `max_steps` model calls were made; the last answer was forced without tools.
    MaxSteps,
    /// Some call waits for a person's approval (`TurnOutcome::held`).
    ApprovalRequired,
}

impl StopReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StopReason::Finished => "finished",
            StopReason::ClientTools => "client_tools",
            StopReason::MaxSteps => "max_steps",
            StopReason::ApprovalRequired => "approval_required",
        }
    }
}

/// Something that happened during a turn, for streaming.
#[derive(Debug, Clone)]
pub(crate) enum TurnEvent {
    /// Assistant text as the model produces it.
    Text(String),
    /// The model asked for these calls.
    ToolCalls(Vec<ToolCallRequest>),
    /// A server tool finished (boxed: events wait in a channel, sized by the largest).
    ToolResult(Box<ToolRun>),
}

/// The end of a turn.
#[derive(Debug, Clone)]
pub(crate) struct TurnOutcome {
    pub message: ChatMessage,
    pub finish_reason: String,
    pub usage: Usage,
    pub runs: Vec<ToolRun>,
    /// Calls held for approval when the turn ended (`StopReason::ApprovalRequired`).
    pub held: Vec<HeldCall>,
    pub steps: u32,
    pub stop: StopReason,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TurnError {
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
    pub(crate) fn invalid(loc: impl Into<String>, msg: impl Into<String>) -> Self {
        TurnError::Invalid {
            loc: loc.into(),
            msg: msg.into(),
        }
    }
}

/// Runs turns. Shared by all requests.
pub(crate) struct Engine {
    store: Arc<dyn Store>,
    provider: Arc<dyn ModelProvider>,
    catalog: RwLock<Arc<Catalog>>,
    dispatcher: Dispatcher,
    config: TurnConfig,
    default_model: String,
    limits: TurnLimits,
}

impl Engine {
    pub(crate) fn new(
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
    pub(crate) fn with_limits(mut self, limits: &crate::config::LimitsConfig) -> Self {
        self.dispatcher
            .set_approval_timeout(self.config.approval_timeout);
        self.limits = TurnLimits::from(limits);
        self.dispatcher
            .set_max_result_bytes(limits.max_tool_result_bytes);
        self
    }

    /// The catalog new turns start with.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps the catalog; turns in flight keep the one they started with.
    pub(crate) fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
    }

    pub(crate) fn max_steps_limit(&self) -> u32 {
        self.config.max_steps_limit
    }

    /// Runs one turn. With `events`, the model is streamed and progress is reported as it
    /// happens. `cancel` abandons the turn (client gone, shutdown); history stays valid.
    pub(crate) async fn run(
        &self,
        ctx: &TurnContext,
        request: TurnRequest,
        events: Option<mpsc::Sender<TurnEvent>>,
        cancel: &CancellationToken,
    ) -> Result<TurnOutcome, TurnError> {
        let mut turn = self.begin(ctx, request, events, cancel).await?;
        loop {
            turn.step += 1;
            let mut answer = self.ask_model(&mut turn).await?;
            let calls = self.take_answer(&mut turn, &mut answer).await?;
            if calls.all.is_empty() {
                let stop = if turn.is_last_call() {
                    StopReason::MaxSteps
                } else {
                    StopReason::Finished
                };
                let finish = match answer.finish_reason.as_deref() {
                    Some("tool_calls") | None => "stop".to_owned(),
                    Some(other) => other.to_owned(),
                };
                return Ok(turn.end(answer.message, finish, stop));
            }
            turn.announce(calls.all).await;
            if !calls.server.is_empty() {
                self.run_server_calls(&mut turn, &calls.server).await?;
            }
            if !turn.held.is_empty() {
                return Ok(turn.end(
                    answer.message,
                    "tool_calls".into(),
                    StopReason::ApprovalRequired,
                ));
            }
            if calls.for_client {
                return Ok(turn.end(answer.message, "tool_calls".into(), StopReason::ClientTools));
            }
        }
    }
}
