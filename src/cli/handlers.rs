//! `agentd handlers`: the handlers this build can run (the names tools.toml's `handler` field
//! accepts), each with the JSON Schema of its `[tool.options]`.

use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::tool::Registry;

/// Prints every registered handler: as text, or as one JSON object by name with `json`.
pub(super) fn run(json: bool) -> ExitCode {
    let listing = describe(&Registry::builtin());
    let text = if json {
        serde_json::to_string_pretty(&Value::Object(listing))
    } else {
        Ok(as_text(&listing))
    };
    match text {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("agentd: cannot print the handlers: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Each handler's name with its options schema, in name order.
pub(super) fn describe(registry: &Registry) -> Map<String, Value> {
    registry
        .names()
        .filter_map(|name| Some((name.to_owned(), registry.get(name)?.options_schema())))
        .collect()
}

fn as_text(listing: &Map<String, Value>) -> String {
    let mut out =
        String::from("handlers (tools.toml `handler = \"...\"`) and their [tool.options]:\n");
    for (name, schema) in listing {
        let pretty = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
        out.push_str(&format!("\n{name}\n"));
        for line in pretty.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim_end().to_owned()
}
