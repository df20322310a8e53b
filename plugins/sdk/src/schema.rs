//! JSON Schema fragments for option schemas ([`crate::HandlerFactory::options_schema`]) that
//! several handlers share: a secret reference and a duration.

use std::time::Duration;

use serde_json::{Value, json};

use crate::PositiveDuration;

/// A [`crate::SecretRef`]: `{ credential = "name" }`, `{ file = "/path" }` or `{ env = "VAR" }`.
pub fn secret_ref_schema(description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "minProperties": 1,
        "properties": {
            "credential": { "type": "string", "description": "$CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential=)" },
            "file": { "type": "string", "description": "a file holding the secret" },
            "env": { "type": "string", "description": "an environment variable" },
        },
    })
}

/// A [`crate::PositiveDuration`] as written: `"500ms"`, `"30s"`, `"2m"`, `"1h"` (or, where
/// `seconds` is true, a number of seconds too).
pub fn duration_schema(description: &str, default: Duration, seconds: bool) -> Value {
    let text = json!({ "type": "string", "pattern": r"^\s*[0-9.]+\s*(ms|s|m|min|h)?\s*$" });
    let mut schema = if seconds {
        json!({ "anyOf": [text, { "type": "number", "exclusiveMinimum": 0 }] })
    } else {
        text
    };
    schema["description"] = json!(description);
    // Written as in tools.toml: `Duration::from_secs(10)` is "10s".
    schema["default"] =
        json!(PositiveDuration::new(default).map_or_else(|| "0s".to_owned(), |d| d.to_string()));
    schema
}
