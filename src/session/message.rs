//! The message vocabulary shared by the API, the store, the loop and the provider: the OpenAI
//! chat message shape (which is also Julep's), plus history entries as they are stored.

use std::borrow::Borrow;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::{History, Id};

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
    pub id: Id,
    pub session_id: Id,
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

    /// [`Entry::message_json`] as text. Serializing a message cannot fail (its JSON values
    /// come from parsed JSON and its other fields are strings), so `null` stands in only in
    /// theory.
    pub fn message_text(&self) -> &str {
        self.message_json().map_or("null", RawValue::get)
    }

    /// A copy without the kept JSON text, for a holder that keeps the text elsewhere (a
    /// history log's joined JSON); asked for it, the copy would serialize its message again.
    pub fn without_json(&self) -> Self {
        Self {
            id: self.id.clone(),
            session_id: self.session_id.clone(),
            source: self.source,
            message: self.message.clone(),
            created_at: self.created_at,
            json: MessageJson::default(),
        }
    }
}

/// The cache behind [`Entry::message_json`]; empty until first asked for.
#[derive(Clone, Default)]
pub struct MessageJson(OnceLock<Box<RawValue>>);

impl MessageJson {
    /// Whether the text was made (and is kept).
    #[cfg(test)]
    pub(crate) fn is_made(&self) -> bool {
        self.0.get().is_some()
    }
}

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

/// A message of a model request: an entry of a stored history (written from the history's
/// joined JSON), an entry not stored yet (written from its kept JSON text), or one built for
/// this call, such as the system prompt.
#[derive(Debug, Clone, Copy)]
pub enum PromptMessage<'a> {
    Stored { history: &'a History, index: usize },
    Entry(&'a Entry),
    Built(&'a ChatMessage),
}

impl PromptMessage<'_> {
    /// How many of `messages`, from the first, are consecutive entries of one stored history.
    fn stored_run(messages: &[PromptMessage<'_>]) -> usize {
        let Some(&PromptMessage::Stored { history, index }) = messages.first() else {
            return 0;
        };
        1 + messages[1..]
            .iter()
            .zip(index + 1..)
            .take_while(|(message, next)| {
                matches!(message, PromptMessage::Stored { history: h, index: i }
                    if std::ptr::eq(*h, history) && i == next)
            })
            .count()
    }
}

impl Borrow<ChatMessage> for PromptMessage<'_> {
    fn borrow(&self) -> &ChatMessage {
        match *self {
            PromptMessage::Stored { history, index } => &history[index].message,
            PromptMessage::Entry(entry) => &entry.message,
            PromptMessage::Built(message) => message,
        }
    }
}

impl Serialize for PromptMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = match *self {
            PromptMessage::Stored { history, index } => &history[index],
            PromptMessage::Entry(entry) => entry,
            PromptMessage::Built(message) => return message.serialize(serializer),
        };
        entry
            .message_json()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// Appends `messages` to `out` as a JSON array: each run of consecutive entries of a stored
/// history in one copy of its joined text, every other message serialized.
pub fn write_messages(messages: &[PromptMessage<'_>], out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.push(b'[');
    let mut rest = messages;
    while let Some(first) = rest.first() {
        if rest.len() != messages.len() {
            out.push(b',');
        }
        let run = PromptMessage::stored_run(rest);
        match *first {
            PromptMessage::Stored { history, index } if run > 0 => {
                history.write_json(index..index + run, out);
                rest = &rest[run..];
            }
            _ => {
                serde_json::to_writer(&mut *out, first)?;
                rest = &rest[1..];
            }
        }
    }
    out.push(b']');
    Ok(())
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
    fn written_messages_are_the_serialized_list_whatever_their_mix() {
        let text = |n: usize| ChatMessage::text(Role::User, format!("m{n} \"q\""));
        let first = History::from_entries((0..4).map(|n| std::sync::Arc::new(entry(text(n)))));
        let second = History::from_entries((4..6).map(|n| std::sync::Arc::new(entry(text(n)))));
        let added = entry(text(6));
        let system = ChatMessage::text(Role::System, "be brief");
        let stored = |history, index| PromptMessage::Stored { history, index };
        let mixes: Vec<Vec<PromptMessage>> = vec![
            vec![],
            vec![PromptMessage::Built(&system)],
            vec![stored(&first, 2)],
            vec![
                PromptMessage::Built(&system),
                stored(&first, 0),
                stored(&first, 1),
                stored(&first, 2),
                stored(&first, 3),
                PromptMessage::Entry(&added),
            ],
            // Runs break where the index skips, and where another history starts.
            vec![
                stored(&first, 1),
                stored(&first, 3),
                stored(&second, 0),
                stored(&second, 1),
                stored(&first, 0),
            ],
        ];
        for messages in mixes {
            let mut written = Vec::new();
            write_messages(&messages, &mut written).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&messages).unwrap()
            );
        }
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
