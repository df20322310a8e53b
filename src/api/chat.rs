//! `POST /sessions/{id}/chat`: parse and check the ChatInput, load session and agent, take the
//! session's turn lock (a second chat on a busy session gets 409), run the turn, answer with
//! JSON (201) or an SSE stream (200).

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tracing::Instrument;

use super::AppState;
use super::agent_tools::{self, normalize_tool};
use super::agents::Agents;
use super::chat_messages::{self, InputMessage};
use super::error::ApiError;
use super::extract::JsonBody;
use super::records::{
    self, AgentRecord, ContextOverflow, ModelSettings, SessionRecord, Text, Unread,
};
use super::resources::{load, rfc3339};
use super::sessions::Sessions;
use super::turn_claim::TurnClaim;
use crate::provider::Usage;
use crate::session::{ChatMessage, ToolCallRequest};
use crate::tool::{Outcome, ToolRun};
use crate::turn::{TurnContext, TurnError, TurnEvent, TurnOutcome, TurnRequest};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(crate) struct ChatInput {
    messages: Vec<InputMessage>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    stream: Option<bool>,
    #[serde(default, deserialize_with = "super::whole::optional")]
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<Stop>,
    #[serde(default, deserialize_with = "super::whole::optional")]
    seed: Option<i64>,
    response_format: Option<Value>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    model: Option<String>,
    agent: Option<String>,
    save: Option<bool>,
    auto_run_tools: Option<bool>,
    #[serde(default, deserialize_with = "super::whole::optional")]
    max_steps: Option<u32>,
}

fn check_tool_choice(choice: &Value) -> Result<(), ApiError> {
    let ok = match choice {
        Value::String(s) => matches!(s.as_str(), "auto" | "none" | "required"),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "tool_choice",
            "expected \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        ))
    }
}

/// Messages and replayed tool calls past `[limits]` are a 422: each message becomes a history
/// entry, and each call one that needs a result. (Declared tools are bounded by
/// `tools.max_declared_tools`.)
fn check_counts(input: &ChatInput, limits: &crate::config::LimitsConfig) -> Result<(), ApiError> {
    let over = |loc: &str, count: usize, max: usize, setting: &str| {
        ApiError::invalid(
            loc,
            format!("{count} given; at most {max} per request (limits.{setting})"),
        )
    };
    let messages = input.messages.len();
    if messages > limits.max_request_messages {
        return Err(over(
            "messages",
            messages,
            limits.max_request_messages,
            "max_request_messages",
        ));
    }
    // A message replaying an assistant's calls is held to what a model answer may hold.
    for (i, message) in input.messages.iter().enumerate() {
        let calls = message.tool_calls.as_ref().map_or(0, Vec::len);
        if calls > limits.max_tool_calls {
            return Err(over(
                &format!("messages.{i}.tool_calls"),
                calls,
                limits.max_tool_calls,
                "max_tool_calls",
            ));
        }
    }
    Ok(())
}

/// Turns a parsed ChatInput into a turn request, checking what serde cannot.
fn into_request(
    input: ChatInput,
    max_steps_limit: u32,
) -> Result<(TurnRequest, bool, Option<String>), ApiError> {
    if input.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "at least one message is required",
        ));
    }
    chat_messages::check(&input.messages)?;
    let messages = input
        .messages
        .into_iter()
        .map(|m| ChatMessage {
            role: m.role,
            content: m
                .content
                .map_or(Value::Null, chat_messages::Content::into_value),
            name: m.name,
            tool_call_id: m.tool_call_id,
            tool_calls: m.tool_calls.filter(|c| !c.is_empty()),
        })
        .collect();
    let tools = input
        .tools
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let tool = normalize_tool(t, &format!("tools.{i}."))?;
            records::to_body(&tool).map(Value::Object)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(choice) = &input.tool_choice {
        check_tool_choice(choice)?;
    }
    let mut settings = Map::new();
    if let Some(n) = input.max_tokens {
        if n == 0 {
            return Err(ApiError::invalid("max_tokens", "must be at least 1"));
        }
        settings.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = input.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
        }
        settings.insert("temperature".into(), json!(t));
    }
    if let Some(p) = input.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::invalid("top_p", "must be between 0 and 1"));
        }
        settings.insert("top_p".into(), json!(p));
    }
    match input.stop {
        Some(Stop::Many(list)) if list.len() > 4 => {
            return Err(ApiError::invalid("stop", "at most 4 stop sequences"));
        }
        Some(Stop::Many(list)) => {
            settings.insert("stop".into(), json!(list));
        }
        Some(Stop::One(s)) => {
            settings.insert("stop".into(), json!(s));
        }
        None => {}
    }
    for (key, value) in [
        ("seed", input.seed.map(|s| json!(s))),
        ("response_format", input.response_format),
        (
            "frequency_penalty",
            input.frequency_penalty.map(|v| json!(v)),
        ),
        ("presence_penalty", input.presence_penalty.map(|v| json!(v))),
    ] {
        if let Some(value) = value {
            settings.insert(key.into(), value);
        }
    }
    if let Some(steps) = input.max_steps
        && !(1..=max_steps_limit).contains(&steps)
    {
        return Err(ApiError::invalid(
            "max_steps",
            format!("must be between 1 and {max_steps_limit}"),
        ));
    }
    let request = TurnRequest {
        messages,
        tools,
        tool_choice: input.tool_choice,
        settings,
        model: input.model.filter(|m| !m.is_empty()),
        save: input.save.unwrap_or(true),
        auto_run_tools: input.auto_run_tools,
        max_steps: input.max_steps,
    };
    Ok((request, input.stream.unwrap_or(false), input.agent))
}

/// Everything checked of a chat body before its session is read: counts against `[limits]`,
/// the fields serde cannot check, then each declared tool's schema (bounded and compiled off
/// the async workers). Gives the turn request, whether to stream, and the answering agent.
pub(crate) async fn checked_request(
    input: ChatInput,
    limits: &crate::config::LimitsConfig,
    max_steps_limit: u32,
    tool_schemas: &super::tool_schemas::ToolSchemas,
) -> Result<(TurnRequest, bool, Option<String>), ApiError> {
    check_counts(&input, limits)?;
    let (request, stream, agent) = into_request(input, max_steps_limit)?;
    tool_schemas.check_all(&request.tools, "tools").await?;
    Ok((request, stream, agent))
}

/// Loads what the turn needs from the session and its answering agent. Their text is read
/// borrowed from the stored records and copied once, into the context; their metadata and the
/// agent's default settings that are not model settings ([`ModelSettings`]) are not read.
pub(super) async fn context(
    state: &AppState,
    session_id: &str,
    agent: Option<String>,
) -> Result<TurnContext, ApiError> {
    let stored_session = load::<Sessions>(state, session_id).await?;
    let session: SessionRecord<'_, Unread> = records::read(&stored_session)?;
    let agent_id = match agent {
        Some(id) if session.agents.iter().any(|a| a.as_str() == id) => id,
        Some(id) => {
            return Err(ApiError::invalid(
                "agent",
                format!("agent `{id}` is not a participant of this session"),
            ));
        }
        None => session
            .agents
            .first()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| ApiError::BadRequest("session has no agent".into()))?,
    };
    let stored_agent = load::<Agents>(state, &agent_id).await?;
    let agent: AgentRecord<'_, ModelSettings, Unread> = records::read(&stored_agent)?;
    Ok(TurnContext {
        session_id: stored_session.id.clone(),
        agent_name: agent.name.into_owned(),
        agent_about: agent.about.into_owned(),
        instructions: agent
            .instructions
            .into_iter()
            .map(Text::into_owned)
            .collect(),
        situation: session.situation.map(Text::into_owned),
        system_template: session.system_template.map(Text::into_owned),
        model: Some(agent.model)
            .filter(|m| !m.is_empty())
            .map(Text::into_owned),
        default_settings: agent.default_settings.0,
        agent_tools: agent_tools::of_agent(state, &agent_id).await?,
        token_budget: session.token_budget,
        auto_run_tools: session.auto_run_tools,
        truncate_on_overflow: session.context_overflow == Some(ContextOverflow::Truncate),
    })
}

pub(super) async fn chat(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    JsonBody(input): JsonBody<ChatInput>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::Draining);
    }
    let (request, stream, agent) = checked_request(
        input,
        &state.limits,
        state.engine.max_steps_limit(),
        &state.tool_schemas,
    )
    .await?;
    let guard = super::turn_claim::claim(&state, &session_id, "retry when it ends").await?;
    // Read under the lock: a session deleted while this request waited is not found, and a
    // delete that starts now waits for this turn.
    let ctx = context(&state, &session_id, agent).await?;
    answer(state, ctx, request, stream, guard).await
}

/// Runs the turn and answers with JSON (201) or an SSE stream (200): a chat call, or the
/// decision that resumes a turn whose calls were held for approval.
pub(super) async fn answer(
    state: AppState,
    ctx: TurnContext,
    request: TurnRequest,
    stream: bool,
    guard: TurnClaim,
) -> Result<Response, ApiError> {
    if stream {
        return Ok(super::sse::stream_turn(state, ctx, request, guard).await);
    }
    let session_id = ctx.session_id.clone();
    let cancel = state.abort.child_token();
    let turn = spawn_turn(&state, ctx, request, guard, cancel, None);
    let outcome = turn.await.map_err(|e| {
        tracing::error!(error = %e, "turn task failed");
        ApiError::Internal
    })??;
    let body = response_body(&session_id, &outcome).map_err(|e| {
        tracing::error!(error = %e, "cannot encode the chat response");
        ApiError::Internal
    })?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The ChatResponse body, serialized straight from the outcome.
#[derive(Serialize)]
struct ChatResponse<'a> {
    id: String,
    session_id: &'a str,
    created_at: String,
    jobs: [(); 0],
    docs: [(); 0],
    usage: &'a Usage,
    choices: [Choice<'a>; 1],
    steps: u32,
    stop_reason: &'static str,
    tool_runs: Vec<RunReport<'a>>,
    /// Calls held for a person's approval (`stop_reason: "approval_required"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    approvals: Vec<super::approvals::HeldView<'a>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    finish_reason: &'a str,
    message: AnswerMessage<'a>,
}

#[derive(Serialize)]
struct AnswerMessage<'a> {
    role: &'static str,
    content: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a Vec<ToolCallRequest>>,
}

/// One tool run as reported to the client.
#[derive(Serialize)]
struct RunReport<'a> {
    id: &'a str,
    name: &'a str,
    status: &'static str,
    error_kind: Option<&'a str>,
    duration_ms: f64,
}

impl<'a> RunReport<'a> {
    fn of(run: &'a ToolRun) -> Self {
        let (status, error_kind) = match &run.outcome {
            Outcome::Ok => ("ok", None),
            Outcome::Replayed => ("replayed", None),
            Outcome::Error(kind) => ("error", Some(kind.as_str())),
        };
        Self {
            id: &run.call_id,
            name: &run.name,
            status,
            error_kind,
            duration_ms: run.duration.as_secs_f64() * 1000.0,
        }
    }
}

/// The ChatResponse body.
fn response_body(session_id: &str, outcome: &TurnOutcome) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&ChatResponse {
        id: crate::ids::new_v7().to_string(),
        session_id,
        created_at: rfc3339(OffsetDateTime::now_utc()),
        jobs: [],
        docs: [],
        usage: &outcome.usage,
        choices: [Choice {
            index: 0,
            finish_reason: &outcome.finish_reason,
            message: AnswerMessage {
                role: "assistant",
                content: &outcome.message.content,
                tool_calls: outcome.message.tool_calls.as_ref(),
            },
        }],
        steps: outcome.steps,
        stop_reason: outcome.stop.as_str(),
        tool_runs: outcome.runs.iter().map(RunReport::of).collect(),
        approvals: outcome
            .held
            .iter()
            .map(super::approvals::HeldView::of)
            .collect(),
    })
}

/// Runs a turn in a task of its own, so a client that hangs up does not cut it off half-way.
/// `cancel` stops it, and so does a delete of the session taking the lock over. The lock is
/// released as soon as the turn returns, before anyone hears of the outcome, so a next chat
/// sent right after the answer (or the last chunk) never meets a 409.
pub(super) fn spawn_turn(
    state: &AppState,
    ctx: TurnContext,
    request: TurnRequest,
    guard: TurnClaim,
    cancel: CancellationToken,
    events: Option<mpsc::Sender<TurnEvent>>,
) -> JoinHandle<Result<TurnOutcome, ApiError>> {
    let mut guard = guard;
    guard.cancel_on_take_over(&cancel);
    let state = state.clone();
    let span = tracing::info_span!("turn", session_id = %ctx.session_id, stream = events.is_some());
    tokio::spawn(
        async move {
            let outcome = state.engine.run(&ctx, request, events, &cancel).await;
            guard.release().await;
            if let Ok(outcome) = &outcome
                && !outcome.held.is_empty()
            {
                super::approvals::announce(&state, &ctx.session_id, &outcome.held).await;
            }
            outcome.map_err(|error| match error {
                TurnError::Cancelled if !state.is_draining() => deleted_under_turn(&ctx.session_id),
                error => ApiError::from(error),
            })
        }
        .instrument(span),
    )
}

/// A turn cancelled while agentd is not draining was cancelled by a delete of its session.
fn deleted_under_turn(session_id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "session `{session_id}` was deleted while this chat turn ran; the turn was stopped"
    ))
}
