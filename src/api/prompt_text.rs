//! Agent and session text that every turn puts into the system prompt (an agent's name, about
//! and instructions; a session's situation and system_template) is bounded when it is stored,
//! by `turn.max_system_prompt_bytes`: text that could never fit is a 422 at create or update,
//! not on every later chat. What only the pair of agent and session decides (a template that
//! repeats a long field) is caught when the prompt is rendered, also as a 422.

use serde_json::{Map, Value};

use super::error::ApiError;

/// Bytes an instruction adds besides its text (the blank line before it).
const INSTRUCTION_SEPARATOR_BYTES: usize = 2;

/// A session's situation and system_template (the whole body, after a PATCH is merged): each
/// must fit the prompt on its own.
pub fn check_session(body: &Map<String, Value>, max: usize) -> Result<(), ApiError> {
    ["situation", "system_template"]
        .into_iter()
        .try_for_each(|field| check_field(field, text_bytes(body.get(field)), max))
}

/// An agent's name, about and instructions (the whole body, after a PATCH is merged): without
/// a template they all go into the prompt, so together they must fit; the largest one is named.
pub fn check_agent(body: &Map<String, Value>, max: usize) -> Result<(), ApiError> {
    let instructions = body
        .get("instructions")
        .and_then(Value::as_array)
        .map_or(0, |list| {
            list.iter()
                .map(|i| text_bytes(Some(i)) + INSTRUCTION_SEPARATOR_BYTES)
                .sum()
        });
    let sizes = [
        ("name", text_bytes(body.get("name"))),
        ("about", text_bytes(body.get("about"))),
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

fn text_bytes(value: Option<&Value>) -> usize {
    value.and_then(Value::as_str).map_or(0, str::len)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Collection;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    /// The check each resource's own `check` runs (users have no prompt text).
    fn check(
        collection: Collection,
        body: &Map<String, Value>,
        max: usize,
    ) -> Result<(), ApiError> {
        match collection {
            Collection::Agents => check_agent(body, max),
            Collection::Sessions => check_session(body, max),
            _ => Ok(()),
        }
    }

    fn failing_loc(collection: Collection, value: Value, max: usize) -> Option<String> {
        match check(collection, &body(value), max) {
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
