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
///
/// Most messages hold only a role and a content: the other fields are kept apart, allocated
/// only when present, so that a long list of messages stays small to build and move.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message<'a> {
    object: bool,
    pub role: Option<Field<'a>>,
    pub content: Option<Field<'a>>,
    rare: Option<Box<RareFields<'a>>>,
}

/// The fields of a message other than its role and content.
#[derive(Debug, Clone, PartialEq, Default)]
struct RareFields<'a> {
    name: Option<Field<'a>>,
    tool_call_id: Option<Field<'a>>,
    tool_calls: Option<Value>,
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
            rare: None,
        }
    }

    fn rare_mut(&mut self) -> &mut RareFields<'a> {
        self.rare.get_or_insert_default()
    }

    pub(crate) fn is_object(&self) -> bool {
        self.object
    }

    /// The role when it is a string.
    pub(crate) fn role(&self) -> Option<&str> {
        self.role.as_ref().and_then(Field::as_str)
    }

    /// The `name` field as sent, string or not.
    pub(crate) fn name_field(&self) -> Option<&Field<'a>> {
        self.rare.as_ref()?.name.as_ref()
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name_field().and_then(Field::as_str)
    }

    pub(crate) fn tool_call_id(&self) -> Option<&str> {
        self.rare.as_ref()?.tool_call_id.as_ref()?.as_str()
    }

    pub(crate) fn tool_calls(&self) -> Option<&Value> {
        self.rare.as_ref()?.tool_calls.as_ref()
    }

    /// The smallest present key outside `allowed` (a `serde_json::Map` lists keys in that order).
    pub(crate) fn first_key_outside(&self, allowed: &[&str]) -> Option<&str> {
        let common = [
            ("role", self.role.is_some()),
            ("content", self.content.is_some()),
        ];
        let outside = |(key, present): (&'static str, bool)| {
            (present && !allowed.contains(&key)).then_some(key)
        };
        let first_common = common.into_iter().filter_map(outside).min();
        let Some(rare) = &self.rare else {
            return first_common;
        };
        let read = [
            ("name", rare.name.is_some()),
            ("tool_call_id", rare.tool_call_id.is_some()),
            ("tool_calls", rare.tool_calls.is_some()),
        ];
        let opaque = OPAQUE_FIELDS.into_iter().zip(rare.opaque_present);
        read.into_iter()
            .chain(opaque)
            .filter_map(outside)
            .chain(first_common)
            .chain(rare.first_unknown_key.as_deref())
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
                "name" => message.rare_mut().name = Some(map.next_value()?),
                "tool_call_id" => message.rare_mut().tool_call_id = Some(map.next_value()?),
                "tool_calls" => message.rare_mut().tool_calls = Some(map.next_value()?),
                _ => {
                    map.next_value::<Checked>()?;
                    let rare = message.rare_mut();
                    match OPAQUE_FIELDS.iter().position(|field| *field == key) {
                        Some(at) => rare.opaque_present[at] = true,
                        None => keep_first_key(&mut rare.first_unknown_key, key),
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
