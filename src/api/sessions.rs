//! Sessions: participants (`agent`/`agent_id`/`agents`, `user`/`user_id`/`users`), situation,
//! system template, token budget and overflow policy, metadata. The stored shape is
//! [`SessionRecord`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::ApiError;
use super::records::{ContextOverflow, SessionPatch, SessionRecord, Text};
use super::resources::{Mode, Resource, deleted, fields};
use crate::store::Collection;

pub(super) struct Sessions;

#[derive(Deserialize)]
struct SessionFields {
    agent: Option<String>,
    agent_id: Option<String>,
    agents: Option<Vec<String>>,
    user: Option<String>,
    user_id: Option<String>,
    users: Option<Vec<String>>,
    situation: Option<String>,
    system_template: Option<String>,
    metadata: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "super::whole::optional")]
    token_budget: Option<u64>,
    context_overflow: Option<String>,
    render_templates: Option<bool>,
    auto_run_tools: Option<bool>,
    forward_tool_calls: Option<bool>,
}

/// `single` and `list` forms of one participant kind, merged without duplicates, in order
/// (a set of those seen keeps a long list linear).
fn participants(single: [Option<String>; 2], list: Option<Vec<String>>) -> Option<Vec<String>> {
    let mut all: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // A list given empty still counts: `users: []` removes every user, `agents: []` is refused.
    let mut any = list.is_some();
    for id in single
        .into_iter()
        .flatten()
        .chain(list.into_iter().flatten())
    {
        any = true;
        if seen.insert(id.clone()) {
            all.push(id);
        }
    }
    any.then_some(all)
}

impl Resource for Sessions {
    const COLLECTION: Collection = Collection::Sessions;
    type Record = SessionRecord<'static>;
    type Patch = SessionPatch;

    fn changes(input: Value, mode: Mode) -> Result<SessionPatch, ApiError> {
        let f: SessionFields = fields(input)?;
        let agents = participants([f.agent, f.agent_id], f.agents);
        let users = participants([f.user, f.user_id], f.users);
        match (&agents, mode) {
            (None, Mode::Full) => {
                return Err(ApiError::invalid(
                    "agent",
                    "a session needs an agent: give `agent`, `agent_id` or `agents`",
                ));
            }
            (Some(a), _) if a.is_empty() => {
                return Err(ApiError::invalid(
                    "agents",
                    "must list at least one agent id",
                ));
            }
            _ => {}
        }
        let context_overflow = match f.context_overflow.as_deref() {
            None => None,
            Some("truncate") => Some(ContextOverflow::Truncate),
            Some("adaptive") => {
                return Err(ApiError::invalid(
                    "context_overflow",
                    "`adaptive` (summarizing old history) is not supported yet; use `truncate`",
                ));
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    "context_overflow",
                    format!("unknown policy `{other}`; expected `truncate` or `adaptive`"),
                ));
            }
        };
        if f.token_budget == Some(0) {
            return Err(ApiError::invalid("token_budget", "must be positive"));
        }
        Ok(SessionPatch {
            agents,
            users,
            situation: f.situation,
            system_template: f.system_template,
            metadata: f.metadata,
            token_budget: f.token_budget,
            context_overflow,
            render_templates: f.render_templates,
            auto_run_tools: f.auto_run_tools,
            forward_tool_calls: f.forward_tool_calls,
        })
    }

    fn apply(record: &mut Self::Record, patch: SessionPatch) {
        record.apply(patch);
    }

    async fn check(state: &AppState, record: &Self::Record) -> Result<(), ApiError> {
        super::prompt_text::check_session(record, state.max_system_prompt_bytes)?;
        let max = state.limits.max_session_participants;
        for (key, collection, ids) in [
            ("agents", Collection::Agents, &record.agents),
            ("users", Collection::Users, &record.users),
        ] {
            // Each one is looked up below: the list is bounded before any lookup.
            if ids.len() > max {
                return Err(ApiError::invalid(
                    key,
                    format!(
                        "{} {key} given; a session may have at most {max} \
                         (limits.max_session_participants)",
                        ids.len()
                    ),
                ));
            }
            for id in ids.iter().map(Text::as_str) {
                if state.store.get(collection, id).await?.is_none() {
                    return Err(ApiError::not_found(collection, id));
                }
            }
        }
        Ok(())
    }

    fn decorate(record: &Self::Record, wire: &mut Map<String, Value>) {
        wire.insert("kind".into(), json!(record.kind()));
        wire.insert("summary".into(), Value::Null);
    }
}

/// Deletes a session with its history and journal. A turn running on it is cancelled first
/// (its calls end `cancelled`) and waited for, so once this answers no row of the session is
/// ever written again and a session created later with the same id starts empty.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let _turn = state.locks.take_over(&id).await;
    // A turn another instance runs on the session is not stopped from here: the delete is
    // refused (409) until it ends, so no row of the session is written after a delete answers.
    let owner = &state.instance_id;
    let shared = state.store.shared();
    if shared
        && !state
            .store
            .claim_turn(&id, owner, state.turn_claim_ttl)
            .await?
    {
        return Err(ApiError::Conflict(format!(
            "a chat turn is running on session `{id}` on another agentd instance; delete it when \
             that turn ends"
        )));
    }
    let removed = state.store.delete(Collection::Sessions, &id).await;
    if shared {
        state.store.release_turn(&id, owner).await?;
    }
    if !removed? {
        return Err(ApiError::not_found(Collection::Sessions, id));
    }
    Ok((StatusCode::ACCEPTED, Json(deleted(&id))))
}
