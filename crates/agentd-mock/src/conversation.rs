//! The checks OpenAI applies to the `messages` of a request: known roles and fields, content
//! shapes, well-formed assistant tool calls, and every tool call paired with exactly one result.

use serde_json::Value;

use super::wire::{Check, InvalidRequest};

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
pub(crate) fn check(messages: &[Value]) -> Check {
    // Ids of the latest assistant tool calls that still wait for their `tool` message.
    let mut unanswered: Vec<&str> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let at = format!("messages[{index}]");
        let Some(message) = message.as_object() else {
            return Err(InvalidRequest::new(at, "each message must be an object"));
        };
        let role = match message.get("role").and_then(Value::as_str) {
            Some(role @ ("system" | "developer" | "user" | "assistant" | "tool")) => role,
            _ => {
                return Err(InvalidRequest::new(
                    format!("{at}.role"),
                    "Invalid value for 'role': expected one of system, developer, user, assistant, tool.",
                ));
            }
        };
        if let Some(extra) = message
            .keys()
            .find(|key| !allowed_fields(role).contains(&key.as_str()))
        {
            return Err(InvalidRequest::new(
                &at,
                format!(
                    "Additional properties are not allowed ('{extra}' was unexpected) - 'messages.{index}'"
                ),
            ));
        }
        if message.get("name").is_some_and(|name| !name.is_string()) {
            return Err(InvalidRequest::new(
                format!("{at}.name"),
                "'name' must be a string.",
            ));
        }
        if role == "tool" {
            let Some(call_id) = message.get("tool_call_id").and_then(Value::as_str) else {
                return Err(InvalidRequest::new(
                    format!("{at}.tool_call_id"),
                    "Missing required parameter: 'tool_call_id'.",
                ));
            };
            let Some(position) = unanswered.iter().position(|id| *id == call_id) else {
                return Err(InvalidRequest::new(
                    at,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceding message with 'tool_calls'.",
                ));
            };
            unanswered.swap_remove(position);
            check_content(&at, message.get("content"), false, true)?;
            continue;
        }
        check_answered(&unanswered)?;
        if role == "assistant" {
            let calls = check_tool_calls(&at, message.get("tool_calls"))?;
            unanswered.extend(calls);
            let has_calls = message.get("tool_calls").is_some();
            check_content(&at, message.get("content"), has_calls, false)?;
        } else {
            check_content(&at, message.get("content"), false, false)?;
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
fn check_content(at: &str, content: Option<&Value>, may_be_null: bool, text_only: bool) -> Check {
    let param = format!("{at}.content");
    match content {
        Some(Value::String(_)) => Ok(()),
        None | Some(Value::Null) if may_be_null => Ok(()),
        Some(Value::Array(parts)) if !parts.is_empty() => {
            for (index, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str);
                let text_ok = part.get("text").is_some_and(Value::is_string);
                match kind {
                    Some("text") if text_ok => {}
                    Some("image_url" | "input_audio" | "file" | "refusal") if !text_only => {}
                    _ => {
                        return Err(InvalidRequest::new(
                            format!("{param}[{index}]"),
                            "each content part must be an object with a 'type' (and 'text' for text parts)",
                        ));
                    }
                }
            }
            Ok(())
        }
        _ => Err(InvalidRequest::new(
            param,
            "Invalid value for 'content': expected a string or a non-empty array of content parts.",
        )),
    }
}

/// Checks an assistant message's `tool_calls` and returns their ids.
fn check_tool_calls<'a>(at: &str, calls: Option<&'a Value>) -> Check<Vec<&'a str>> {
    let param = format!("{at}.tool_calls");
    let calls = match calls {
        None => return Ok(Vec::new()),
        Some(Value::Array(calls)) if !calls.is_empty() => calls,
        Some(_) => {
            return Err(InvalidRequest::new(
                param,
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
                    format!("{param}[{index}]"),
                    "each tool call needs 'id', 'type': 'function' and 'function' with string 'name' and string 'arguments'",
                ));
            }
        }
    }
    Ok(ids)
}
