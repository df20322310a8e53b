//! Agent and session text that every turn puts into the system prompt (an agent's name, about
//! and instructions; a session's situation and system_template) is bounded when it is stored,
//! by `turn.max_system_prompt_bytes`: text that could never fit is a 422 at create or update,
//! not on every later chat. What only the pair of agent and session decides (a template that
//! repeats a long field) is caught when the prompt is rendered, also as a 422.

use super::error::ApiError;
use super::records::{AgentRecord, SessionRecord};

/// Bytes an instruction adds besides its text (the blank line before it).
const INSTRUCTION_SEPARATOR_BYTES: usize = 2;

/// A session's situation and system_template (the whole record, after a PATCH is applied):
/// each must fit the prompt on its own.
pub(super) fn check_session(session: &SessionRecord<'_>, max: usize) -> Result<(), ApiError> {
    [
        ("situation", &session.situation),
        ("system_template", &session.system_template),
    ]
    .into_iter()
    .try_for_each(|(field, text)| check_field(field, text.as_deref().map_or(0, str::len), max))
}

/// An agent's name, about and instructions (the whole record, after a PATCH is applied):
/// without a template they all go into the prompt, so together they must fit; the largest one
/// is named.
pub(super) fn check_agent(agent: &AgentRecord<'_>, max: usize) -> Result<(), ApiError> {
    let instructions = agent
        .instructions
        .iter()
        .map(|i| i.len() + INSTRUCTION_SEPARATOR_BYTES)
        .sum();
    let sizes = [
        ("name", agent.name.len()),
        ("about", agent.about.len()),
        ("instructions", instructions),
    ];
    let total: usize = sizes.iter().map(|(_, bytes)| bytes).sum();
    if total <= max {
        return Ok(());
    }
    let (largest, _) = sizes
        .iter()
        .max_by_key(|(_, bytes)| *bytes)
        .copied()
        .unwrap_or(("instructions", 0));
    Err(ApiError::invalid(
        largest,
        format!(
            "name, about and instructions are {total} bytes together and all go into the system \
             prompt, which is limited to {max} bytes (turn.max_system_prompt_bytes); shorten them"
        ),
    ))
}

fn check_field(field: &str, bytes: usize, max: usize) -> Result<(), ApiError> {
    if bytes <= max {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!(
            "{bytes} bytes; it goes into the system prompt, which is limited to {max} bytes \
             (turn.max_system_prompt_bytes)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;
    use crate::store::Collection;

    /// The check each resource's own `check` runs on the record stored as `body` (users have
    /// no prompt text).
    fn check(collection: Collection, body: &Value, max: usize) -> Result<(), ApiError> {
        match collection {
            Collection::Agents => check_agent(&AgentRecord::deserialize(body).unwrap(), max),
            Collection::Sessions => check_session(&SessionRecord::deserialize(body).unwrap(), max),
            _ => Ok(()),
        }
    }

    fn failing_loc(collection: Collection, value: Value, max: usize) -> Option<String> {
        match check(collection, &value, max) {
            Ok(()) => None,
            Err(ApiError::Validation(details)) => Some(details[0].loc.clone()),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn agent_text_counts_together_and_names_the_largest_field() {
        let agent = json!({"name": "Ada", "about": "ab", "instructions": ["x".repeat(10), ""]});
        // 3 + 2 + (10 + 2) + (0 + 2) = 19
        assert_eq!(failing_loc(Collection::Agents, agent.clone(), 19), None);
        assert_eq!(
            failing_loc(Collection::Agents, agent, 18).as_deref(),
            Some("instructions")
        );
        let agent = json!({"name": "Ada", "about": "a".repeat(30), "instructions": []});
        assert_eq!(
            failing_loc(Collection::Agents, agent, 20).as_deref(),
            Some("about")
        );
        // Many empty instructions still count.
        let agent = json!({"name": "A", "instructions": vec![""; 1000]});
        assert!(failing_loc(Collection::Agents, agent, 1000).is_some());
    }

    #[test]
    fn session_fields_are_bounded_one_by_one() {
        let session = json!({"situation": "s".repeat(10), "system_template": "t".repeat(10)});
        assert_eq!(failing_loc(Collection::Sessions, session.clone(), 10), None);
        let session = json!({"situation": null, "system_template": "t".repeat(11)});
        assert_eq!(
            failing_loc(Collection::Sessions, session, 10).as_deref(),
            Some("system_template")
        );
        let user = json!({"about": "u".repeat(100)});
        assert_eq!(failing_loc(Collection::Users, user, 10), None);
    }
}
