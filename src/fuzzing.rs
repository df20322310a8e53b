//! Entry points for the fuzz targets in `fuzz/`: each runs hostile input through the code the
//! daemon runs on it (the model's event stream and delta assembly, a chat request body, the
//! system prompt template) and reports the outcome as plain data. Not part of agentd's API;
//! tools.toml and argument validation need nothing here (`tool::Catalog::parse`,
//! `tool::validate::check` are public).

use serde_json::Value;

use crate::api::chat::{ChatInput, checked_request};
use crate::api::extract::parse_json;
use crate::api::tool_schemas::ToolSchemas;
use crate::config::{LimitsConfig, ToolsConfig, TurnConfig};
use crate::provider::openai::sse::SseDecoder;
use crate::provider::openai::stream::{Assembler, Taken};
use crate::provider::secrets::Scrubber;
use crate::session::ToolCallRequest;
use crate::turn::{TurnContext, prompt};

/// The provider's API key in [`model_stream`]: no error text may quote it.
pub const STREAM_API_KEY: &str = "sk-fuzz-0123456789abcdef";

/// The data of each event the decoder reads from `chunks` (delivered one read each), up to
/// its first error, and that error's text.
pub fn decode_events(chunks: &[&[u8]], max_event_bytes: usize) -> (Vec<String>, Option<String>) {
    let mut decoder = SseDecoder::new(max_event_bytes);
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => return (events, Some(error.to_string())),
            }
        }
    }
    (events, None)
}

/// What a streamed model answer came to.
#[derive(Debug, Default)]
pub struct StreamReport {
    /// Text forwarded to the client as it arrived.
    pub forwarded: String,
    /// The assembled answer's text content, if it has any.
    pub content: Option<String>,
    /// The assembled tool calls.
    pub calls: Vec<ToolCallRequest>,
    pub finish_reason: Option<String>,
    /// Why the stream was refused, if it was (already cleaned of the provider's secrets).
    pub error: Option<String>,
}

/// Runs a model's event stream through the decoder and the assembler as a streamed model call
/// does: `chunks` are the body's reads, then the body ends.
pub fn model_stream(chunks: &[&[u8]], limits: &LimitsConfig) -> StreamReport {
    let url = reqwest::Url::parse("http://fuzz-user:fuzz-password@127.0.0.1:9/v1")
        .expect("a fixed URL parses");
    let scrubber = Scrubber::new(&url, Some(STREAM_API_KEY));
    let mut decoder = SseDecoder::new(limits.max_event_bytes);
    let mut assembler = Assembler::new(limits.max_response_bytes, limits.max_tool_calls);
    let mut report = StreamReport::default();
    for chunk in chunks {
        decoder.push(chunk);
        loop {
            match decoder.next_event() {
                Ok(Some(data)) => {
                    let taken = assembler.take_event(&data, &scrubber);
                    if report.take(taken) {
                        return report;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    report.error = Some(format!("stream broken: {error}"));
                    return report;
                }
            }
        }
    }
    // The body ended without the end marker.
    report.take(assembler.finish(false).map(Taken::Done));
    report
}

impl StreamReport {
    /// Records what one event did; `true` when the stream is over.
    fn take(&mut self, taken: Result<Taken, crate::provider::ProviderError>) -> bool {
        match taken {
            Ok(Taken::Text(text)) => {
                self.forwarded.push_str(&text);
                false
            }
            Ok(Taken::Nothing) => false,
            Ok(Taken::Done(answer)) => {
                self.content = answer.message.content.as_str().map(str::to_owned);
                self.calls = answer.message.tool_calls.unwrap_or_default();
                self.finish_reason = answer.finish_reason;
                true
            }
            Err(error) => {
                self.error = Some(error.to_string());
                true
            }
        }
    }
}

/// A chat request body checked as `POST /sessions/{id}/chat` checks it before reading the
/// session, with the default `[limits]`, `[tools]` and `[turn]` settings.
pub struct ChatBody {
    runtime: tokio::runtime::Runtime,
    limits: LimitsConfig,
    tool_schemas: ToolSchemas,
    max_steps_limit: u32,
}

/// A chat body's outcome: accepted (how many messages and tools), or the HTTP status and
/// error text it is answered with.
pub type ChatOutcome = Result<(usize, usize), (u16, String)>;

impl ChatBody {
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Self {
            runtime,
            limits: LimitsConfig::default(),
            tool_schemas: ToolSchemas::new(&ToolsConfig::default()),
            max_steps_limit: TurnConfig::default().max_steps_limit,
        }
    }

    pub fn check(&self, body: &[u8]) -> ChatOutcome {
        let checked = parse_json::<ChatInput>(body).map(|input| {
            self.runtime.block_on(checked_request(
                input,
                &self.limits,
                self.max_steps_limit,
                &self.tool_schemas,
            ))
        });
        match checked.and_then(|result| result) {
            Ok((request, _, _)) => Ok((request.messages.len(), request.tools.len())),
            Err(error) => Err((error.status().as_u16(), error.to_string())),
        }
    }
}

impl Default for ChatBody {
    fn default() -> Self {
        Self::new()
    }
}

/// The agent and session text a system prompt is made of.
#[derive(Debug, Default)]
pub struct PromptParts {
    pub template: Option<String>,
    pub agent_name: String,
    pub agent_about: String,
    pub instructions: Vec<String>,
    pub situation: Option<String>,
}

/// The system prompt a turn sends for `parts`, or the error text when it is over `max_bytes`.
pub fn system_prompt(parts: PromptParts, max_bytes: usize) -> Result<Option<String>, String> {
    let ctx = TurnContext {
        session_id: "fuzz".into(),
        agent_name: parts.agent_name,
        agent_about: parts.agent_about,
        instructions: parts.instructions,
        situation: parts.situation,
        system_template: parts.template,
        model: None,
        default_settings: Default::default(),
        agent_tools: Vec::new(),
        token_budget: None,
        auto_run_tools: None,
        truncate_on_overflow: false,
    };
    match prompt::system_message(&ctx, max_bytes) {
        Ok(message) => Ok(message.map(|m| match m.content {
            Value::String(text) => text,
            other => other.to_string(),
        })),
        Err(error) => Err(error.to_string()),
    }
}
