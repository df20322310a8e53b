//! The JSON Schema of the `smtp` handler's `[tool.options]`, as `agentd handlers` prints it.
//! `options.rs` checks the options; this documents them (README.md has the long form).

use agentd_sdk::{duration_schema, secret_ref_schema};
use serde_json::{Value, json};

use crate::message::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES};
use crate::options::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_RECIPIENTS, DEFAULT_POOL_SIZE,
    DEFAULT_SEND_TIMEOUT,
};

pub(crate) fn options_schema() -> Value {
    let addresses = json!({ "type": "array", "items": { "type": "string" } });
    json!({
        "type": "object",
        "required": ["from"],
        "additionalProperties": false,
        "properties": {
            "transport": { "enum": ["smtp", "file"], "default": "smtp", "description": "deliver through a relay, or write one .eml file per message into `dir`" },
            "from": { "type": "string", "description": "sender, addr@domain or Name <addr@domain>" },
            "allowed_domains": with_description(&addresses, "domains every address the model writes must be in (exact match)"),
            "allowed_addresses": with_description(&addresses, "single addresses allowed besides allowed_domains"),
            "max_recipients": { "type": "integer", "minimum": 1, "default": DEFAULT_MAX_RECIPIENTS, "description": "to + cc + bcc + reply_to per message" },
            "max_body_bytes": { "type": "integer", "minimum": 1, "default": DEFAULT_MAX_BODY_BYTES, "description": "body and html together" },
            "max_header_bytes": { "type": "integer", "minimum": 1, "default": DEFAULT_MAX_HEADER_BYTES, "description": "the subject and each address" },
            "host": { "type": "string", "description": "relay host (transport smtp)" },
            "port": { "type": "integer", "minimum": 1, "maximum": 65535, "description": "587 for starttls, 465 for tls, 25 for none" },
            "security": { "enum": ["starttls", "tls", "none"], "default": "starttls", "description": "none only for loopback relays" },
            "username": { "type": "string", "description": "AUTH user name" },
            "password": secret_ref_schema("AUTH password: a secret reference, never the password itself"),
            "ca_file": { "type": "string", "description": "PEM file with extra CA certificates" },
            "pool_size": { "type": "integer", "minimum": 1, "default": DEFAULT_POOL_SIZE, "description": "open relay connections at most" },
            "connect_timeout": duration_schema("TCP connect, shorter than a day", DEFAULT_CONNECT_TIMEOUT, true),
            "send_timeout": duration_schema("one whole attempt, shorter than a day", DEFAULT_SEND_TIMEOUT, true),
            "max_attempts": { "type": "integer", "minimum": 1, "maximum": 10, "default": DEFAULT_MAX_ATTEMPTS, "description": "attempts for transient failures" },
            "dir": { "type": "string", "description": "output directory (transport file); relative to the data directory" },
        },
    })
}

fn with_description(schema: &Value, description: &str) -> Value {
    let mut schema = schema.clone();
    schema["description"] = json!(description);
    schema
}
