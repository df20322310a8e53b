//! A tool call as the model writes it (tool name, a newline, the arguments text) against
//! fixed catalogs (the repo's tools.toml and `fuzz/catalogs/validate.toml`, whose schemas use
//! more keywords and approval rules): validation gives a parsed object the schema accepts or
//! the violations, and the approval policy then reads the accepted arguments.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use agentd::tool::validate::{ArgumentError, check};
use agentd::tool::{Catalog, Registry};
use libfuzzer_sys::fuzz_target;

static CATALOGS: LazyLock<[Catalog; 2]> = LazyLock::new(|| {
    let mut registry = Registry::builtin();
    registry.set_data_dir("/nonexistent/agentd-fuzz/data".into());
    let load = |text: &str, name: &str| {
        Catalog::parse(text, Path::new(name), &registry).expect("the fixed catalog compiles")
    };
    [
        load(include_str!("../../tools.toml"), "tools.toml"),
        load(include_str!("../catalogs/validate.toml"), "validate.toml"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, arguments) = text.split_once('\n').unwrap_or((text, ""));
    let Some(tool) = CATALOGS.iter().find_map(|catalog| catalog.get(name)) else {
        return;
    };
    match check(tool, arguments) {
        Ok(parsed) => {
            assert!(parsed.is_object());
            assert!(tool.validator.is_valid(&parsed));
            let _ = tool.approval.requires(&parsed);
        }
        Err(ArgumentError::Invalid(violations)) => {
            assert!(!violations.is_empty());
            for violation in &violations {
                assert!(violation.message.chars().count() <= 301);
            }
        }
        Err(ArgumentError::Malformed(message)) => assert!(!message.is_empty()),
    }
});
