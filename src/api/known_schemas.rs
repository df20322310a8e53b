//! Checking that a tool's `parameters` is a usable JSON Schema costs a full compile, and
//! clients send the same tools with every chat call: schemas already accepted are remembered
//! (by their exact JSON text, in a bounded set) and not compiled again.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

use serde_json::Value;

/// Most schema texts remembered, and most bytes of them; past either the set starts over.
const MAX_SCHEMAS: usize = 1024;
const MAX_BYTES: usize = 1 << 20;

struct Known {
    texts: HashSet<String>,
    bytes: usize,
}

static KNOWN: LazyLock<Mutex<Known>> = LazyLock::new(|| {
    Mutex::new(Known {
        texts: HashSet::new(),
        bytes: 0,
    })
});

/// `Err` with the compiler's reason when `schema` is not a valid JSON Schema.
pub fn check(schema: &Value) -> Result<(), String> {
    let text = schema.to_string();
    let known = || KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if known().texts.contains(&text) {
        return Ok(());
    }
    jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    let mut known = known();
    if known.texts.len() >= MAX_SCHEMAS || known.bytes + text.len() > MAX_BYTES {
        known.texts.clear();
        known.bytes = 0;
    }
    known.bytes += text.len();
    known.texts.insert(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_schema_is_judged_the_same_the_first_and_the_second_time() {
        let good = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let bad = json!({"type": "object", "properties": {"city": {"type": 7}}});
        for _ in 0..2 {
            assert_eq!(super::check(&good), Ok(()));
            assert!(super::check(&bad).is_err());
        }
    }
}
