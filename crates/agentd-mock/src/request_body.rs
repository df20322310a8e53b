//! A chat-completions request body read in one pass into borrowed, typed views
//! ([`RequestBody`]): the parameters the mock reads, every message, and the first unknown
//! parameter. Nothing is judged here (see `wire` and `conversation`); a body is refused at
//! this stage only when it is not JSON, with the error `serde_json` gives for a `Value`.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess};
use serde_json::Value;

use super::json_view::{Checked, Field, Shape, Text, deserialize_shaped, keep_first_key};
use super::message::{Message, MessageList};

/// Request body parameters the OpenAI endpoint knows; anything else is rejected.
const KNOWN_PARAMETERS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "response_format",
    "service_tier",
    "store",
    "metadata",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "functions",
    "function_call",
    "web_search_options",
    "verbosity",
    "safety_identifier",
    "prompt_cache_key",
];

/// A parsed body; [`RequestBody::is_object`] is false for anything but a JSON object.
/// Duplicate keys keep the last value, as in a `serde_json::Map`.
#[derive(Debug)]
pub(crate) struct RequestBody<'a> {
    object: bool,
    /// The smallest key that is not a known parameter.
    pub first_unknown_parameter: Option<Cow<'a, str>>,
    pub model: Option<Field<'a>>,
    /// `None` when missing or not an array.
    pub messages: Option<Vec<Message<'a>>>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub stream: Option<Value>,
    pub stream_options: Option<Value>,
}

impl<'a> RequestBody<'a> {
    /// Parses `bytes`, failing only on what `serde_json::from_slice::<Value>` fails on.
    pub(crate) fn parse(bytes: &'a [u8]) -> serde_json::Result<Self> {
        // UTF-8 is checked once for the whole body, which costs far less than checking each
        // string as it is read; a body that is not UTF-8 is read byte by byte instead, so it
        // fails where and as a `Value` fails.
        match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    fn empty(object: bool) -> Self {
        Self {
            object,
            first_unknown_parameter: None,
            model: None,
            messages: None,
            tools: None,
            tool_choice: None,
            stream: None,
            stream_options: None,
        }
    }

    pub(crate) fn is_object(&self) -> bool {
        self.object
    }
}

impl<'de> Shape<'de> for RequestBody<'de> {
    fn other() -> Self {
        Self::empty(false)
    }

    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut body = Self::empty(true);
        while let Some(Text(key)) = map.next_key()? {
            match key.as_ref() {
                "model" => body.model = Some(map.next_value()?),
                "messages" => body.messages = map.next_value::<MessageList>()?.0,
                "tools" => body.tools = Some(map.next_value()?),
                "tool_choice" => body.tool_choice = Some(map.next_value()?),
                "stream" => body.stream = Some(map.next_value()?),
                "stream_options" => body.stream_options = Some(map.next_value()?),
                _ => {
                    map.next_value::<Checked>()?;
                    if !KNOWN_PARAMETERS.contains(&key.as_ref()) {
                        keep_first_key(&mut body.first_unknown_parameter, key);
                    }
                }
            }
        }
        Ok(body)
    }
}

impl<'de> Deserialize<'de> for RequestBody<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_shaped(deserializer)
    }
}
