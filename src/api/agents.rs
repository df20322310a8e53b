//! Agents: name, about, model, instructions (a string or a list), default settings merged into
//! every chat, metadata.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::ApiError;
use super::resources::{Mode, Resource, fields, put_opt};
use crate::store::Collection;

pub struct Agents;

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Instructions {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct AgentFields {
    name: Option<String>,
    about: Option<String>,
    model: Option<String>,
    instructions: Option<Instructions>,
    default_settings: Option<Map<String, Value>>,
    metadata: Option<Map<String, Value>>,
}

impl Resource for Agents {
    const COLLECTION: Collection = Collection::Agents;

    fn normalize(input: Value, mode: Mode) -> Result<Map<String, Value>, ApiError> {
        let f: AgentFields = fields(input)?;
        let mut body = Map::new();
        match (&f.name, mode) {
            (None, Mode::Full) => return Err(ApiError::invalid("name", "field required")),
            (Some(n), _) if n.trim().is_empty() => {
                return Err(ApiError::invalid("name", "must not be empty"));
            }
            _ => {}
        }
        let instructions = f.instructions.map(|i| match i {
            Instructions::One(s) => json!([s]),
            Instructions::Many(v) => json!(v),
        });
        put_opt(&mut body, "name", f.name);
        if mode == Mode::Full {
            body.insert("about".into(), json!(f.about.unwrap_or_default()));
            body.insert("model".into(), json!(f.model.unwrap_or_default()));
            body.insert(
                "instructions".into(),
                instructions.unwrap_or_else(|| json!([])),
            );
            body.insert(
                "default_settings".into(),
                json!(f.default_settings.unwrap_or_default()),
            );
            body.insert("metadata".into(), json!(f.metadata.unwrap_or_default()));
        } else {
            put_opt(&mut body, "about", f.about);
            put_opt(&mut body, "model", f.model);
            put_opt(&mut body, "instructions", instructions);
            put_opt(&mut body, "default_settings", f.default_settings);
            put_opt(&mut body, "metadata", f.metadata);
        }
        Ok(body)
    }

    async fn check(state: &AppState, body: &Map<String, Value>) -> Result<(), ApiError> {
        super::prompt_text::check_agent(body, state.max_system_prompt_bytes)
    }
}
