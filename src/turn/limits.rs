//! The ceilings a turn enforces: how much history a session may keep
//! (`limits.max_history_entries`, `limits.max_history_bytes`), and what a model request over
//! `limits.max_prompt_bytes` comes to (the oldest messages dropped, or a 413).

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::transcript::Transcript;
use super::{Engine, TurnContext, TurnError, TurnEvent, prompt};
use crate::config::LimitsConfig;
use crate::provider::{ModelRequest, ModelResponse, ProviderError};
use crate::session::PromptMessage;

/// How much history one session may hold, and how large a model request may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TurnLimits {
    pub max_history_entries: usize,
    /// Bytes of message JSON, as stored and as sent to the model.
    pub max_history_bytes: usize,
    /// Bytes of one model request (the provider refuses larger ones; a system prompt rendered
    /// from a template stops growing past it).
    pub max_prompt_bytes: usize,
    /// Longest one model call may take, streamed or not.
    pub max_answer_time: std::time::Duration,
}

impl From<&LimitsConfig> for TurnLimits {
    fn from(limits: &LimitsConfig) -> Self {
        Self {
            max_history_entries: limits.max_history_entries,
            max_history_bytes: limits.max_history_bytes,
            max_prompt_bytes: limits.max_prompt_bytes,
            max_answer_time: limits.max_answer_time,
        }
    }
}

impl Default for TurnLimits {
    fn default() -> Self {
        Self::from(&LimitsConfig::default())
    }
}

/// Refuses a turn whose stored history, with the messages this turn adds, would be over the
/// session's limits. Checked once, when the turn starts: what the turn itself adds later (its
/// answers and tool results) is bounded by `max_steps` and the answer and result limits.
pub(super) fn check_history(
    session_id: &str,
    conversation: &Transcript<'_>,
    limits: TurnLimits,
) -> Result<(), TurnError> {
    let full = |what: String| {
        tracing::info!(session_id, %what, "session history full; turn refused");
        Err(TurnError::Limit {
            code: "history_full",
            message: format!(
                "session `{session_id}` history is full: {what}; clear it \
                 (DELETE /sessions/{session_id}/history) or start a new session"
            ),
        })
    };
    let entries = conversation.len();
    if entries > limits.max_history_entries {
        return full(format!(
            "this turn would make it {entries} entries, over limits.max_history_entries ({})",
            limits.max_history_entries
        ));
    }
    let bytes = conversation.json_bytes();
    if bytes > limits.max_history_bytes {
        return full(format!(
            "this turn would make it {bytes} bytes, over limits.max_history_bytes ({})",
            limits.max_history_bytes
        ));
    }
    Ok(())
}

impl Engine {
    /// Calls the model. A request the provider refuses as over `limits.max_prompt_bytes`
    /// (before sending anything) goes again without its oldest messages when the session
    /// truncates on overflow; otherwise the turn ends with a 413.
    pub(super) async fn call_model_within_limit(
        &self,
        mut request: ModelRequest<'_>,
        ctx: &TurnContext,
        events: Option<&mpsc::Sender<TurnEvent>>,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, TurnError> {
        loop {
            let (bytes, limit) = match self.call_model(&request, events, cancel).await {
                Err(TurnError::Provider(ProviderError::RequestTooLarge { bytes, limit })) => {
                    (bytes, limit)
                }
                answered => return answered,
            };
            // The system prompt leads, built for this call; the conversation follows it.
            let system = request
                .messages
                .iter()
                .take_while(|message| matches!(message, PromptMessage::Built(_)))
                .count();
            let conversation = &request.messages[system..];
            let kept = fit_prompt(
                &ctx.session_id,
                conversation,
                bytes,
                limit,
                ctx.truncate_on_overflow,
            )?
            .len();
            let dropped = conversation.len() - kept;
            request.messages.drain(system..system + dropped);
        }
    }
}

/// The window to send instead of one whose model request came to `bytes`, over `limit`. With
/// `truncate` (the session's `context_overflow`), the oldest blocks go until the request
/// fits; otherwise, or when only the newest block is left, the turn fails with a 413.
fn fit_prompt<'w, 'a>(
    session_id: &str,
    window: &'w [PromptMessage<'a>],
    bytes: usize,
    limit: usize,
    truncate: bool,
) -> Result<&'w [PromptMessage<'a>], TurnError> {
    let excess = bytes.saturating_sub(limit);
    let fitted = if truncate {
        // Each message is its JSON text and a comma in the request.
        prompt::drop_oldest(window, excess, |message| prompt_bytes(message) + 1)
    } else {
        None
    };
    fitted.ok_or_else(|| {
        let hint = if truncate {
            "even the newest message and its tool results, with the system prompt and the \
             tools on offer, are too large; send a shorter message, or offer fewer or smaller \
             tools"
                .to_owned()
        } else {
            format!(
                "clear the session's history (DELETE /sessions/{session_id}/history), start a \
                 new session, or set the session's context_overflow to \"truncate\" to drop \
                 the oldest messages"
            )
        };
        tracing::warn!(
            session_id,
            bytes,
            limit,
            "model request over limits.max_prompt_bytes"
        );
        TurnError::Limit {
            code: "prompt_too_large",
            message: format!(
                "the model request would be {bytes} bytes, over limits.max_prompt_bytes \
                 ({limit}); {hint}"
            ),
        }
    })
}

fn prompt_bytes(message: &PromptMessage<'_>) -> usize {
    match *message {
        PromptMessage::Stored { history, index } => history.json_len(index),
        PromptMessage::Entry(entry) => entry.message_text().len(),
        PromptMessage::Built(message) => serde_json::to_vec(message).map_or(0, |json| json.len()),
    }
}
