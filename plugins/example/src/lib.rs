//! `lookup`: answers a key from a table written in the tool's options (office hours, an
//! escalation contact, a product's SKU), so the model quotes the operator's answer instead of
//! inventing one. An unknown key is a `not_found` error listing the closest keys.
//!
//! This crate is the template for new handlers (see plugins/README.md): this file owns the
//! options and the factory; the call itself is in `handler.rs`.

mod handler;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use agentd_sdk::{HandlerFactory, OptionsError, ToolHandler};
use serde::Deserialize;
use serde_json::{Value, json};

pub use handler::LookupHandler;

/// Most entries one tool may hold: the table is read at load time and kept in memory.
pub const MAX_ENTRIES: usize = 10_000;
/// Most keys a `not_found` error suggests.
pub const MAX_SUGGESTIONS: usize = 5;

/// Builds `lookup` handlers from `[tool.options]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LookupFactory;

/// `[tool.options]` of a `lookup` tool, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupOptions {
    entries: BTreeMap<String, Value>,
    #[serde(default)]
    case_sensitive: bool,
}

impl HandlerFactory for LookupFactory {
    fn name(&self) -> &'static str {
        "lookup"
    }

    fn options_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["entries"],
            "additionalProperties": false,
            "properties": {
                "entries": {
                    "type": "object",
                    "description": "the answers by key; a value may be any TOML value",
                    "minProperties": 1,
                    "maxProperties": MAX_ENTRIES,
                },
                "case_sensitive": {
                    "type": "boolean",
                    "default": false,
                    "description": "match keys exactly; otherwise case and surrounding white space are ignored",
                },
            },
        })
    }

    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        let options: LookupOptions = serde_json::from_value(options.clone())
            .map_err(|e| OptionsError::one(e.to_string()))?;
        let mut problems = Vec::new();
        if options.entries.is_empty() {
            problems.push("entries: must hold at least one key".to_owned());
        }
        if options.entries.len() > MAX_ENTRIES {
            problems.push(format!(
                "entries: {} keys, at most {MAX_ENTRIES}",
                options.entries.len()
            ));
        }
        let mut table: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for (key, value) in options.entries {
            let normalized = normalize(&key, options.case_sensitive);
            if normalized.is_empty() {
                problems.push("entries: a key is empty".to_owned());
            } else if let Some((first, _)) = table.get(&normalized) {
                problems.push(format!(
                    "entries: `{first}` and `{key}` are the same key (set case_sensitive = true \
                     to keep both)"
                ));
            } else {
                table.insert(normalized, (key, value));
            }
        }
        if !problems.is_empty() {
            return Err(OptionsError(problems));
        }
        Ok(Arc::new(LookupHandler::new(table, options.case_sensitive)))
    }
}

/// A key as it is matched: trimmed, and lowercased unless matching is case-sensitive.
fn normalize(key: &str, case_sensitive: bool) -> String {
    let key = key.trim();
    if case_sensitive {
        key.to_owned()
    } else {
        key.to_lowercase()
    }
}
