//! The messages of a chat request: their shapes (content as text, strings or typed parts) and
//! what every chat-completions provider requires of them, checked before the turn so that a
//! message no model would take is the client's 422, not a 502 from the model.

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::session::{Role, ToolCallRequest};

#[derive(Deserialize)]
pub(super) struct InputMessage {
    pub role: Role,
    #[serde(default)]
    pub content: Option<Content>,
    pub name: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_calls: Option<Vec<ToolCallRequest>>,
}

/// Message content: a string, a list of strings, or a list of parts.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Part {
    Text(String),
    Typed(TypedPart),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum TypedPart {
    Text { text: String },
    ImageUrl { image_url: Value },
}

impl Content {
    /// Text stays a string; lists become OpenAI content parts.
    pub(super) fn into_value(self) -> Value {
        match self {
            Content::Text(text) => Value::String(text),
            Content::Parts(parts) => Value::Array(
                parts
                    .into_iter()
                    .map(|p| match p {
                        Part::Text(text) | Part::Typed(TypedPart::Text { text }) => {
                            json!({ "type": "text", "text": text })
                        }
                        Part::Typed(TypedPart::ImageUrl { image_url }) => {
                            json!({ "type": "image_url", "image_url": image_url })
                        }
                    })
                    .collect(),
            ),
        }
    }
}

/// Every message's own checks, then that the calls an assistant message of the request makes
/// are each answered by the `tool` messages right after it (providers refuse a conversation
/// that goes on past an unanswered call).
pub(super) fn check(messages: &[InputMessage]) -> Result<(), ApiError> {
    // The request's latest assistant message with calls, and its calls still unanswered.
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (i, message) in messages.iter().enumerate() {
        check_message(i, message)?;
        if message.role == Role::Tool {
            if let (Some((_, ids)), Some(id)) = (&mut open, message.tool_call_id.as_deref())
                && let Some(at) = ids.iter().position(|open_id| *open_id == id)
            {
                ids.swap_remove(at);
            }
            continue;
        }
        unanswered(&open)?;
        let calls = message.tool_calls.as_deref().unwrap_or_default();
        open = (!calls.is_empty()).then(|| (i, calls.iter().map(|c| c.id.as_str()).collect()));
    }
    unanswered(&open)
}

fn unanswered(open: &Option<(usize, Vec<&str>)>) -> Result<(), ApiError> {
    match open {
        Some((i, ids)) if !ids.is_empty() => Err(ApiError::invalid(
            format!("messages.{i}.tool_calls"),
            format!(
                "call `{}` has no `tool` message answering it; the results of an assistant \
                 message's calls follow it before any other message",
                ids[0]
            ),
        )),
        _ => Ok(()),
    }
}

/// What every chat-completions provider requires of one message: content (text or a non-empty
/// list of parts) on every message but an assistant's that calls tools, text parts only in a
/// tool result, `tool_call_id` only on a tool result, calls of type `function` only on an
/// assistant message.
fn check_message(i: usize, message: &InputMessage) -> Result<(), ApiError> {
    let calls = message.tool_calls.as_deref().unwrap_or_default();
    let content = format!("messages.{i}.content");
    match &message.content {
        None if message.role == Role::Assistant && !calls.is_empty() => {}
        None => {
            return Err(ApiError::invalid(
                content,
                "required: text or a non-empty list of content parts                  (only an assistant message with tool_calls may leave it out)",
            ));
        }
        Some(Content::Parts(parts)) if parts.is_empty() => {
            return Err(ApiError::invalid(
                content,
                "a list of content parts must not be empty",
            ));
        }
        Some(Content::Parts(parts)) if message.role == Role::Tool => {
            if let Some(at) = parts
                .iter()
                .position(|p| matches!(p, Part::Typed(TypedPart::ImageUrl { .. })))
            {
                return Err(ApiError::invalid(
                    format!("{content}.{at}"),
                    "a tool result holds text parts only",
                ));
            }
        }
        Some(_) => {}
    }
    if message.role != Role::Tool && message.tool_call_id.is_some() {
        return Err(ApiError::invalid(
            format!("messages.{i}.tool_call_id"),
            "only a `tool` message answers a call",
        ));
    }
    if message.role != Role::Assistant && !calls.is_empty() {
        return Err(ApiError::invalid(
            format!("messages.{i}.tool_calls"),
            "only an `assistant` message calls tools",
        ));
    }
    if let Some(at) = calls.iter().position(|c| c.kind != "function") {
        return Err(ApiError::invalid(
            format!("messages.{i}.tool_calls.{at}.type"),
            "must be `function`",
        ));
    }
    Ok(())
}
