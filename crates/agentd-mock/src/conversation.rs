//! The checks OpenAI applies to the `messages` of a request: known roles and fields, content
//! shapes, well-formed assistant tool calls, and every tool call paired with exactly one result.

use serde_json::Value;

use super::json_view::Field;
use super::message::Message;
use super::wire::{Check, InvalidRequest};

/// Where a message sits; turned into an error's `param` only when a check fails.
#[derive(Debug, Clone, Copy)]
struct MessageAt(usize);

impl MessageAt {
    /// `messages[N]`
    fn message(self) -> String {
        format!("messages[{}]", self.0)
    }

    /// `messages[N].FIELD`
    fn field(self, field: &str) -> String {
        format!("messages[{}].{field}", self.0)
    }
}

fn allowed_fields(role: &str) -> &'static [&'static str] {
    match role {
        "system" | "developer" | "user" => &["role", "content", "name"],
        "assistant" => &[
            "role",
            "content",
            "name",
            "tool_calls",
            "refusal",
            "audio",
            "function_call",
        ],
        _ => &["role", "content", "tool_call_id", "name"],
    }
}

/// Checks every message and that each assistant tool call is answered by one `tool` message
/// before the conversation goes on.
pub(crate) fn check(messages: &[Message<'_>]) -> Check {
    // Ids of the latest assistant tool calls that still wait for their `tool` message.
    let mut unanswered: Vec<&str> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let at = MessageAt(index);
        if !message.is_object() {
            return Err(InvalidRequest::new(
                at.message(),
                "each message must be an object",
            ));
        }
        let role = match message.role() {
            Some(role @ ("system" | "developer" | "user" | "assistant" | "tool")) => role,
            _ => {
                return Err(InvalidRequest::new(
                    at.field("role"),
                    "Invalid value for 'role': expected one of system, developer, user, assistant, tool.",
                ));
            }
        };
        if let Some(extra) = message.first_key_outside(allowed_fields(role)) {
            return Err(InvalidRequest::new(
                at.message(),
                format!(
                    "Additional properties are not allowed ('{extra}' was unexpected) - 'messages.{index}'"
                ),
            ));
        }
        if message.name_field().is_some() && message.name().is_none() {
            return Err(InvalidRequest::new(
                at.field("name"),
                "'name' must be a string.",
            ));
        }
        if role == "tool" {
            let Some(call_id) = message.tool_call_id() else {
                return Err(InvalidRequest::new(
                    at.field("tool_call_id"),
                    "Missing required parameter: 'tool_call_id'.",
                ));
            };
            let Some(position) = unanswered.iter().position(|id| *id == call_id) else {
                return Err(InvalidRequest::new(
                    at.message(),
                    "Invalid parameter: messages with role 'tool' must be a response to a preceding message with 'tool_calls'.",
                ));
            };
            unanswered.swap_remove(position);
            check_content(at, message.content.as_ref(), false, true)?;
            continue;
        }
        check_answered(&unanswered)?;
        if role == "assistant" {
            let calls = check_tool_calls(at, message.tool_calls())?;
            unanswered.extend(calls);
            let has_calls = message.tool_calls().is_some();
            check_content(at, message.content.as_ref(), has_calls, false)?;
        } else {
            check_content(at, message.content.as_ref(), false, false)?;
        }
    }
    check_answered(&unanswered)
}

fn check_answered(unanswered: &[&str]) -> Check {
    if unanswered.is_empty() {
        return Ok(());
    }
    Err(InvalidRequest::new(
        "messages",
        format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            unanswered.join(", ")
        ),
    ))
}

/// Content is a string or a list of typed parts; null only where `may_be_null`.
fn check_content(
    at: MessageAt,
    content: Option<&Field<'_>>,
    may_be_null: bool,
    text_only: bool,
) -> Check {
    match content {
        Some(Field::Text(_)) => Ok(()),
        None | Some(Field::Other(Value::Null)) if may_be_null => Ok(()),
        Some(Field::Other(Value::Array(parts))) if !parts.is_empty() => {
            check_parts(at, parts, text_only)
        }
        _ => Err(InvalidRequest::new(
            at.field("content"),
            "Invalid value for 'content': expected a string or a non-empty array of content parts.",
        )),
    }
}

fn check_parts(at: MessageAt, parts: &[Value], text_only: bool) -> Check {
    for (index, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str);
        let text_ok = part.get("text").is_some_and(Value::is_string);
        match kind {
            Some("text") if text_ok => {}
            Some("image_url" | "input_audio" | "file" | "refusal") if !text_only => {}
            _ => {
                return Err(InvalidRequest::new(
                    format!("{}[{index}]", at.field("content")),
                    "each content part must be an object with a 'type' (and 'text' for text parts)",
                ));
            }
        }
    }
    Ok(())
}

/// Checks an assistant message's `tool_calls` and returns their ids.
fn check_tool_calls(at: MessageAt, calls: Option<&Value>) -> Check<Vec<&str>> {
    let calls = match calls {
        None => return Ok(Vec::new()),
        Some(Value::Array(calls)) if !calls.is_empty() => calls,
        Some(_) => {
            return Err(InvalidRequest::new(
                at.field("tool_calls"),
                "Invalid 'tool_calls': expected an array with minimum length 1.",
            ));
        }
    };
    let mut ids = Vec::with_capacity(calls.len());
    for (index, call) in calls.iter().enumerate() {
        let id = call.get("id").and_then(Value::as_str);
        let kind = call.get("type").and_then(Value::as_str);
        let function = call.get("function").and_then(Value::as_object);
        let named = function.is_some_and(|f| f.get("name").is_some_and(Value::is_string));
        let arguments = function.is_some_and(|f| f.get("arguments").is_some_and(Value::is_string));
        match (id, kind, named, arguments) {
            (Some(id), Some("function"), true, true) => ids.push(id),
            _ => {
                return Err(InvalidRequest::new(
                    format!("{}[{index}]", at.field("tool_calls")),
                    "each tool call needs 'id', 'type': 'function' and 'function' with string 'name' and string 'arguments'",
                ));
            }
        }
    }
    Ok(ids)
}
