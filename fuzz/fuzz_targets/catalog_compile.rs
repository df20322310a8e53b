//! tools.toml text through `Catalog::parse` (what `agentd validate`, startup and a reload
//! run) with every built-in handler: a catalog that compiles has valid, distinct tool names;
//! one that does not says why, one problem a line.
#![no_main]

use std::collections::HashSet;
use std::path::Path;
use std::sync::LazyLock;

use agentd::tool::{Catalog, Registry, is_valid_tool_name};
use libfuzzer_sys::fuzz_target;

/// No file is read from here: `parameters_file` and secret files resolve to nothing.
const ORIGIN: &str = "/nonexistent/agentd-fuzz/tools.toml";

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::builtin();
    registry.set_data_dir("/nonexistent/agentd-fuzz/data".into());
    registry
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Catalog::parse(text, Path::new(ORIGIN), &REGISTRY) {
        Ok(catalog) => {
            let mut names = HashSet::new();
            for tool in catalog.tools() {
                assert!(is_valid_tool_name(&tool.name), "{}", tool.name);
                assert!(names.insert(tool.name.clone()), "{} twice", tool.name);
                assert_eq!(tool.parameters["type"], "object");
            }
        }
        Err(error) => {
            assert!(!error.problems.is_empty());
            for problem in &error.problems {
                assert!(!problem.trim().is_empty());
            }
        }
    }
});
