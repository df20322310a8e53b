//! One lookup: check the call is still wanted, find the key, or name the closest ones.

use std::collections::BTreeMap;

use agentd_sdk::{CallContext, HandlerError, ToolCall, ToolHandler, ToolOutput};
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{MAX_SUGGESTIONS, normalize};

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
        match self.table.get(&normalize(asked, self.case_sensitive)) {
            Some((key, value)) => Ok(ToolOutput::new(json!({ "key": key, "value": value }))),
            None => Err(self.not_found(asked)),
        }
    }
}

impl LookupHandler {
    /// `not_found`, with the keys closest to what was asked, so the model can try again.
    fn not_found(&self, asked: &str) -> HandlerError {
        let wanted = normalize(asked, self.case_sensitive);
        let mut ranked: Vec<(usize, &str)> = self
            .table
            .iter()
            .map(|(normalized, (key, _))| (distance(&wanted, normalized), key.as_str()))
            .filter(|(score, key)| *score <= key.chars().count().max(wanted.chars().count()) / 2)
            .collect();
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
        HandlerError::new("not_found", format!("no entry for `{asked}`{hint}"))
            .with_details(json!({ "suggestions": suggestions }))
    }
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Edits (insert, delete, substitute a character) from `a` to `b`; a key containing the
/// other counts as one edit away, so "hours" finds "opening hours".
fn distance(a: &str, b: &str) -> usize {
    if !a.is_empty() && !b.is_empty() && (a.contains(b) || b.contains(a)) {
        return usize::from(a != b);
    }
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn distance_counts_edits_and_containment() {
        assert_eq!(distance("hours", "hours"), 0);
        assert_eq!(distance("hours", "opening hours"), 1);
        assert_eq!(distance("huors", "hours"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
