//! One lookup: check the call is still wanted, find the key, or name the closest ones.

use std::collections::BTreeMap;

use agentd_sdk::{CallContext, HandlerError, ToolCall, ToolHandler, ToolOutput};
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{MAX_SUGGESTIONS, normalize};

/// Longest asked key ranked against the table for suggestions.
const MAX_SUGGESTED_KEY_BYTES: usize = 1024;

/// Longest asked key quoted back in a `not_found` message.
const MAX_QUOTED_CHARS: usize = 64;

/// The table of one tool, keyed by normalized key, each entry with its key as written.
pub struct LookupHandler {
    table: BTreeMap<String, (String, Value)>,
    case_sensitive: bool,
}

impl LookupHandler {
    pub(crate) fn new(table: BTreeMap<String, (String, Value)>, case_sensitive: bool) -> Self {
        Self {
            table,
            case_sensitive,
        }
    }
}

#[async_trait]
impl ToolHandler for LookupHandler {
    async fn call(&self, call: ToolCall, ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        // agentd stops waiting at the deadline and on a cancel anyway; a handler that notices
        // first answers with a kind the model understands instead of doing work nobody reads.
        if ctx.cancel.is_cancelled() {
            return Err(HandlerError::new(
                "cancelled",
                "the turn was abandoned before the lookup ran",
            ));
        }
        if ctx.remaining().is_zero() {
            return Err(HandlerError::new(
                "timeout",
                "the call's deadline passed before the lookup ran",
            )
            .retryable());
        }
        // The tool's schema requires a string `key`; a catalog whose schema does not is the
        // operator's mistake, reported to the model as such rather than as a panic.
        let Some(asked) = call.arguments.get("key").and_then(Value::as_str) else {
            return Err(HandlerError::new(
                "invalid_arguments",
                "`key` must be a string naming the entry to look up",
            ));
        };
        let wanted = normalize(asked, self.case_sensitive);
        match self.table.get(&wanted) {
            Some((key, value)) => Ok(ToolOutput::new(json!({ "key": key, "value": value }))),
            None => Err(self.not_found(asked, &wanted)),
        }
    }
}

impl LookupHandler {
    /// `not_found`, with the keys closest to what was asked, so the model can try again. The
    /// key is the model's: one longer than [`MAX_SUGGESTED_KEY_BYTES`] gets no suggestions
    /// (ranking it would cost its length for every entry) and is quoted shortened.
    fn not_found(&self, asked: &str, wanted: &str) -> HandlerError {
        let mut ranked: Vec<(usize, &str)> = if wanted.len() <= MAX_SUGGESTED_KEY_BYTES {
            self.table
                .iter()
                .filter_map(|(normalized, (key, _))| {
                    let score = close_enough(wanted, normalized, key)?;
                    Some((score, key.as_str()))
                })
                .collect()
        } else {
            Vec::new()
        };
        ranked.sort();
        let suggestions: Vec<&str> = ranked
            .into_iter()
            .take(MAX_SUGGESTIONS)
            .map(|(_, key)| key)
            .collect();
        let hint = if suggestions.is_empty() {
            String::new()
        } else {
            format!("; did you mean {}?", quoted(&suggestions))
        };
        HandlerError::new(
            "not_found",
            format!("no entry for `{}`{hint}", shortened(asked)),
        )
        .with_details(json!({ "suggestions": suggestions }))
    }
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `what` as quoted back in a message: at most [`MAX_QUOTED_CHARS`] characters.
fn shortened(what: &str) -> String {
    match what.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &what[..cut]),
        None => what.to_owned(),
    }
}

/// The distance from `wanted` to a table key (`normalized`, written as `key`) when the key is
/// worth suggesting: within half the longer one's length in edits. A length difference past
/// that rules a key out before any edit is counted, since the distance is never below it.
fn close_enough(wanted: &str, normalized: &str, key: &str) -> Option<usize> {
    let wanted_chars = wanted.chars().count();
    let most = key.chars().count().max(wanted_chars) / 2;
    let contained = !wanted.is_empty()
        && !normalized.is_empty()
        && (wanted.contains(normalized) || normalized.contains(wanted));
    if !contained && wanted_chars.abs_diff(normalized.chars().count()) > most {
        return None;
    }
    let score = distance(wanted, normalized, contained);
    (score <= most).then_some(score)
}

/// Edits (insert, delete, substitute a character) from `a` to `b`; a key containing the
/// other (`contained`) counts as one edit away, so "hours" finds "opening hours".
fn distance(a: &str, b: &str, contained: bool) -> usize {
    if contained {
        return usize::from(a != b);
    }
    strsim::levenshtein(a, b)
}

#[cfg(test)]
mod tests {
    use super::{close_enough, distance, shortened};

    fn scored(a: &str, b: &str) -> usize {
        let contained = !a.is_empty() && !b.is_empty() && (a.contains(b) || b.contains(a));
        distance(a, b, contained)
    }

    #[test]
    fn distance_counts_edits_and_containment() {
        assert_eq!(scored("hours", "hours"), 0);
        assert_eq!(scored("hours", "opening hours"), 1);
        assert_eq!(scored("huors", "hours"), 2);
        assert_eq!(scored("", "abc"), 3);
        assert_eq!(scored("kitten", "sitting"), 3);
    }

    #[test]
    fn keys_of_a_far_length_are_ruled_out_unless_one_contains_the_other() {
        assert_eq!(
            close_enough("hours", "opening hours", "Opening hours"),
            Some(1)
        );
        assert_eq!(close_enough("ab", "abcdefghij", "abcdefghij"), Some(1));
        assert_eq!(close_enough("xy", "abcdefghij", "abcdefghij"), None);
        assert_eq!(close_enough("huors", "hours", "Hours"), Some(2));
    }

    #[test]
    fn long_keys_are_quoted_shortened() {
        assert_eq!(shortened("short"), "short");
        let long = "k".repeat(1000);
        assert_eq!(
            shortened(&long).chars().count(),
            super::MAX_QUOTED_CHARS + 1
        );
    }
}
