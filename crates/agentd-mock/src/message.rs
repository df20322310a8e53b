//! One chat message read in one pass ([`Message`]): the fields the mock checks and answers
//! from, which known fields were present, and the first unknown key. A plain text message
//! borrows its role and content from the body and allocates nothing.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess};
use serde_json::Value;

use super::json_view::{Checked, Field, Shape, Text, deserialize_shaped, keep_first_key};

/// Fields some role allows that the mock only checks for presence.
const OPAQUE_FIELDS: [&str; 3] = ["refusal", "audio", "function_call"];

/// A message as sent; [`Message::is_object`] is false for anything but a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message<'a> {
    object: bool,
    pub role: Option<Field<'a>>,
    pub content: Option<Field<'a>>,
    pub name: Option<Field<'a>>,
    pub tool_call_id: Option<Field<'a>>,
    pub tool_calls: Option<Value>,
    opaque_present: [bool; OPAQUE_FIELDS.len()],
    /// The smallest key that no role allows.
    first_unknown_key: Option<Cow<'a, str>>,
}

impl<'a> Message<'a> {
    fn empty(object: bool) -> Self {
        Self {
            object,
            role: None,
            content: None,
            name: None,
            tool_call_id: None,
            tool_calls: None,
            opaque_present: [false; OPAQUE_FIELDS.len()],
            first_unknown_key: None,
        }
    }

    pub(crate) fn is_object(&self) -> bool {
        self.object
    }

    /// The role when it is a string.
    pub(crate) fn role(&self) -> Option<&str> {
        self.role.as_ref().and_then(Field::as_str)
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_ref().and_then(Field::as_str)
    }

    pub(crate) fn tool_call_id(&self) -> Option<&str> {
        self.tool_call_id.as_ref().and_then(Field::as_str)
    }

    /// The smallest present key outside `allowed` (a `serde_json::Map` lists keys in that order).
    pub(crate) fn first_key_outside(&self, allowed: &[&str]) -> Option<&str> {
        let read = [
            ("role", self.role.is_some()),
            ("content", self.content.is_some()),
            ("name", self.name.is_some()),
            ("tool_call_id", self.tool_call_id.is_some()),
            ("tool_calls", self.tool_calls.is_some()),
        ];
        let opaque = OPAQUE_FIELDS.into_iter().zip(self.opaque_present);
        read.into_iter()
            .chain(opaque)
            .filter(|(key, present)| *present && !allowed.contains(key))
            .map(|(key, _)| key)
            .chain(self.first_unknown_key.as_deref())
            .min()
    }

    /// The text of the content: a string, or the `text` parts of a list joined by newlines.
    pub(crate) fn content_text(&self) -> String {
        match &self.content {
            Some(Field::Text(text)) => text.as_ref().to_owned(),
            Some(Field::Other(Value::Array(parts))) => {
                let texts: Vec<&str> = text_parts(parts).collect();
                texts.join("\n")
            }
            _ => String::new(),
        }
    }

    /// Characters of text in the content, without building the text.
    pub(crate) fn content_chars(&self) -> usize {
        match &self.content {
            Some(Field::Text(text)) => text.chars().count(),
            Some(Field::Other(Value::Array(parts))) => {
                text_parts(parts).map(|text| text.chars().count()).sum()
            }
            _ => 0,
        }
    }
}

fn text_parts(parts: &[Value]) -> impl Iterator<Item = &str> {
    parts
        .iter()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
}

impl<'de> Shape<'de> for Message<'de> {
    fn other() -> Self {
        Self::empty(false)
    }

    /// Duplicate keys keep the last value, as in a `serde_json::Map`.
    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut message = Self::empty(true);
        while let Some(Text(key)) = map.next_key()? {
            match key.as_ref() {
                "role" => message.role = Some(map.next_value()?),
                "content" => message.content = Some(map.next_value()?),
                "name" => message.name = Some(map.next_value()?),
                "tool_call_id" => message.tool_call_id = Some(map.next_value()?),
                "tool_calls" => message.tool_calls = Some(map.next_value()?),
                _ => {
                    map.next_value::<Checked>()?;
                    match OPAQUE_FIELDS.iter().position(|field| *field == key) {
                        Some(at) => message.opaque_present[at] = true,
                        None => keep_first_key(&mut message.first_unknown_key, key),
                    }
                }
            }
        }
        Ok(message)
    }
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_shaped(deserializer)
    }
}

/// The `messages` parameter: the list when it is an array, else `None`.
pub(crate) struct MessageList<'a>(pub Option<Vec<Message<'a>>>);

impl<'de> Shape<'de> for MessageList<'de> {
    fn other() -> Self {
        Self(None)
    }

    fn from_array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(message) = seq.next_element()? {
            messages.push(message);
        }
        Ok(Self(Some(messages)))
    }
}

impl<'de> Deserialize<'de> for MessageList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_shaped(deserializer)
    }
}
