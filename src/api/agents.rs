//! Agents: name, about, model, instructions (a string or a list), default settings merged into
//! every chat, metadata. The stored shape is [`AgentRecord`].

use serde::Deserialize;
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use super::records::{AgentPatch, AgentRecord};
use super::resources::{Mode, Resource, fields};
use crate::store::Collection;

pub(super) struct Agents;

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Instructions {
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
    type Record = AgentRecord<'static>;
    type Patch = AgentPatch;

    fn changes(input: Value, mode: Mode) -> Result<AgentPatch, ApiError> {
        let f: AgentFields = fields(input)?;
        match (&f.name, mode) {
            (None, Mode::Full) => return Err(ApiError::invalid("name", "field required")),
            (Some(n), _) if n.trim().is_empty() => {
                return Err(ApiError::invalid("name", "must not be empty"));
            }
            _ => {}
        }
        Ok(AgentPatch {
            name: f.name,
            about: f.about,
            model: f.model,
            instructions: f.instructions.map(|i| match i {
                Instructions::One(s) => vec![s],
                Instructions::Many(v) => v,
            }),
            default_settings: f.default_settings,
            metadata: f.metadata,
        })
    }

    fn apply(record: &mut Self::Record, patch: AgentPatch) {
        record.apply(patch);
    }

    async fn check(state: &AppState, record: &Self::Record) -> Result<(), ApiError> {
        super::prompt_text::check_agent(record, state.max_system_prompt_bytes)
    }
}
