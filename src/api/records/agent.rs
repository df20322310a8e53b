//! The stored agent: name, about, model, instructions (always a list), default settings merged
//! into every chat, metadata.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Object, Text, merge, set, texts};

/// An agent as stored. `S` is how `default_settings` is read and `M` how `metadata` is: the
/// whole objects by default; a turn reads only [`ModelSettings`] and leaves metadata
/// [`Unread`](super::Unread).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize, M: Serialize",
    deserialize = "S: Deserialize<'de> + Default, M: Deserialize<'de> + Default"
))]
pub(crate) struct AgentRecord<'a, S = Object, M = Object> {
    #[serde(borrow, default)]
    pub name: Text<'a>,
    #[serde(borrow, default)]
    pub about: Text<'a>,
    /// The model the agent's turns use; empty for the provider's default.
    #[serde(borrow, default)]
    pub model: Text<'a>,
    #[serde(borrow, default)]
    pub instructions: Vec<Text<'a>>,
    #[serde(default)]
    pub default_settings: S,
    #[serde(default)]
    pub metadata: M,
}

/// Changes to an agent; `None` keeps a field, `metadata` is merged key by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AgentPatch {
    pub name: Option<String>,
    pub about: Option<String>,
    pub model: Option<String>,
    pub instructions: Option<Vec<String>>,
    pub default_settings: Option<Object>,
    pub metadata: Option<Object>,
}

impl AgentRecord<'_> {
    pub(crate) fn apply(&mut self, patch: AgentPatch) {
        set(&mut self.name, patch.name);
        set(&mut self.about, patch.about);
        set(&mut self.model, patch.model);
        set(&mut self.instructions, patch.instructions.map(texts));
        set(&mut self.default_settings, patch.default_settings);
        merge(&mut self.metadata, patch.metadata);
    }
}

/// Sampling settings an agent's `default_settings` passes to the model; other keys stay stored
/// but do not reach the model.
pub(super) const MODEL_SETTINGS: &[&str] = &[
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "parallel_tool_calls",
];

/// The [`MODEL_SETTINGS`] of an agent's `default_settings`, read without copying the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ModelSettings(pub Map<String, Value>);

impl<'de> Deserialize<'de> for ModelSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ModelSettingsVisitor)
    }
}

struct ModelSettingsVisitor;

impl<'de> Visitor<'de> for ModelSettingsVisitor {
    type Value = ModelSettings;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of model settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelSettings, A::Error> {
        let mut settings = Map::new();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if MODEL_SETTINGS.contains(&key.as_str()) {
                let value = map.next_value::<Value>()?;
                settings.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(ModelSettings(settings))
    }
}
