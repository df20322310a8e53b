//! The message vocabulary shared by the API, the store, the loop and the provider: the OpenAI
//! chat message shape (which is also Julep's), plus history entries as they are stored.

use std::borrow::Borrow;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
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
    /// `message` as JSON text, made once: see [`Entry::message_json`].
    #[serde(skip)]
    pub json: MessageJson,
}

impl Entry {
    /// The message as JSON text, serialized on the first call only. A session's whole history
    /// goes to the model on every turn and into the database once; an entry is never changed
    /// after it is created, so the text stays the message's.
    pub fn message_json(&self) -> serde_json::Result<&RawValue> {
        if let Some(json) = self.json.0.get() {
            return Ok(json);
        }
        let json = serde_json::value::to_raw_value(&self.message)?;
        Ok(self.json.0.get_or_init(|| json))
    }
}

/// The cache behind [`Entry::message_json`]; empty until first asked for.
#[derive(Clone, Default)]
pub struct MessageJson(OnceLock<Box<RawValue>>);

impl PartialEq for MessageJson {
    /// Always equal: the text is derived from the entry's message, which is compared instead.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for MessageJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "MessageJson(made)"
        } else {
            "MessageJson(empty)"
        })
    }
}

/// A message of a model request: a stored entry (written from its kept JSON text) or one built
/// for this call, such as the system prompt.
#[derive(Debug, Clone, Copy)]
pub enum PromptMessage<'a> {
    Entry(&'a Entry),
    Built(&'a ChatMessage),
}

impl Borrow<ChatMessage> for PromptMessage<'_> {
    fn borrow(&self) -> &ChatMessage {
        match self {
            PromptMessage::Entry(entry) => &entry.message,
            PromptMessage::Built(message) => message,
        }
    }
}

impl Serialize for PromptMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PromptMessage::Entry(entry) => entry
                .message_json()
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
            PromptMessage::Built(message) => message.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: ChatMessage) -> Entry {
        Entry {
            id: "e1".into(),
            session_id: "s1".into(),
            source: EntrySource::ApiResponse,
            message,
            created_at: OffsetDateTime::UNIX_EPOCH,
            json: MessageJson::default(),
        }
    }

    #[test]
    fn an_entry_is_written_into_a_request_exactly_as_its_message_serializes() {
        let call = ChatMessage {
            content: Value::Null,
            tool_calls: Some(vec![ToolCallRequest {
                id: "c1".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "send_email".into(),
                    arguments: "{\"to\": \"a\\\"b@c.d\"}".into(),
                },
            }]),
            ..ChatMessage::text(Role::Assistant, "")
        };
        let result = ChatMessage::tool_result("c1", "send_email", "ünïcode \"quoted\"\n".into());
        let entries = [entry(call.clone()), entry(result.clone())];
        let stored: Vec<PromptMessage> = entries.iter().map(PromptMessage::Entry).collect();
        let built = [PromptMessage::Built(&call), PromptMessage::Built(&result)];
        assert_eq!(
            serde_json::to_string(&stored).unwrap(),
            serde_json::to_string(&built).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&stored).unwrap(),
            serde_json::to_string(&[&call, &result]).unwrap()
        );
    }

    #[test]
    fn an_entry_is_serialized_once() {
        let entry = entry(ChatMessage::text(Role::User, "hello"));
        let first = entry.message_json().unwrap();
        let again = entry.message_json().unwrap();
        assert!(std::ptr::eq(first, again), "the kept text is reused");
        assert_eq!(first.get(), r#"{"role":"user","content":"hello"}"#);
        let copy = entry.clone();
        assert_eq!(copy.message_json().unwrap().get(), first.get());
    }
}
