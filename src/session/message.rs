//! The message vocabulary shared by the API, the store, the loop and the provider: the OpenAI
//! chat message shape (which is also Julep's), plus history entries as they are stored.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message. `content` is kept as given: a string, a list of strings, a list of
/// content parts, or null (an assistant message that only calls tools).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default)]
    pub content: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallRequest>>,
}

impl ChatMessage {
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Value::String(text.into()),
            name: None,
            tool_call_id: None,
            tool_calls: None,
        }
    }

    /// A `role: "tool"` result for one call.
    pub fn tool_result(call_id: &str, name: &str, content: String) -> Self {
        Self {
            role: Role::Tool,
            content: Value::String(content),
            name: Some(name.to_owned()),
            tool_call_id: Some(call_id.to_owned()),
            tool_calls: None,
        }
    }

    /// The tool calls of an assistant message (empty for any other message).
    pub fn calls(&self) -> &[ToolCallRequest] {
        self.tool_calls.as_deref().unwrap_or(&[])
    }
}

/// A tool call as the model emits it (OpenAI shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as the model wrote them: a JSON text, possibly malformed.
    #[serde(default)]
    pub arguments: String,
}

/// Where a history entry came from (Julep's `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntrySource {
    ApiRequest,
    ApiResponse,
    ToolResponse,
    Internal,
}

/// One stored history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub session_id: String,
    pub source: EntrySource,
    #[serde(flatten)]
    pub message: ChatMessage,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}
