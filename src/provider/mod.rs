//! Model providers: the [`ModelProvider`] boundary, the OpenAI-compatible implementation and
//! its retry policy.

pub(crate) mod openai;
pub(crate) mod retry;
pub(crate) mod secrets;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::session::{ChatMessage, PromptMessage};

/// One model call. Borrows the turn's conversation and settings: nothing is copied to build
/// it, only serialized, and stored entries not even that.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelRequest<'a> {
    pub model: &'a str,
    /// Written ahead of the other fields, by [`crate::session::write_messages`].
    #[serde(skip)]
    pub messages: Vec<PromptMessage<'a>>,
    /// Tool definitions in OpenAI function form.
    #[serde(skip_serializing_if = "no_tools")]
    pub tools: &'a [Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'a Value>,
    /// Sampling settings passed through as given (`max_tokens`, `temperature`, `top_p`,
    /// `stop`, `seed`, `response_format`, ...).
    #[serde(flatten)]
    pub settings: &'a Map<String, Value>,
    /// About how many bytes the request's JSON comes to: its body is allocated once, not
    /// grown by doubling (a copy of everything written so far each time).
    #[serde(skip)]
    pub size_hint: usize,
}

fn no_tools(tools: &&[Value]) -> bool {
    tools.is_empty()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// Sums saturate: the counts are the model's word, and a model claiming `u64::MAX` tokens
/// must not overflow a turn's total.
impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
    }
}

/// A complete model answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelResponse {
    pub message: ChatMessage,
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

/// One event of a streamed model answer, after tool-call assembly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StreamEvent {
    /// A piece of assistant text, forwarded as it arrives.
    Text(String),
    /// The stream ended; the assembled message (text and complete tool calls).
    Done(ModelResponse),
}

/// Why a model call failed. Shown to HTTP clients as a 502 with this text, so it never holds
/// the provider's URL or a configured secret (`secrets.rs` cleans every message made from
/// what a lower layer or the provider said); the daemon log adds the URL without user-info.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProviderError {
    #[error("model provider unreachable: {0}")]
    Connect(String),
    #[error("model provider timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("model provider answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("model provider sent an answer agentd cannot read: {0}")]
    Protocol(String),
    /// The request was not sent: serialized, it is over `limits.max_prompt_bytes`.
    #[error("the model request is {bytes} bytes, over limits.max_prompt_bytes ({limit})")]
    RequestTooLarge { bytes: usize, limit: usize },
}

/// A chat-completions backend.
#[async_trait]
pub(crate) trait ModelProvider: Send + Sync + 'static {
    /// A short name for logs and metrics (e.g. "openai").
    fn name(&self) -> &str;
    async fn complete(&self, request: &ModelRequest<'_>) -> Result<ModelResponse, ProviderError>;
    /// Streams one answer. Retries happen only before the first event is yielded.
    async fn stream(
        &self,
        request: &ModelRequest<'_>,
    ) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError>;
}
