//! The kind of a JSON value in words, for messages that say what was expected and what came.

use serde_json::Value;

/// "null", "a boolean", "a number", "a string", "an array" or "an object".
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::json_kind;

    #[test]
    fn names_each_kind_with_its_article() {
        assert_eq!(json_kind(&json!(null)), "null");
        assert_eq!(json_kind(&json!(true)), "a boolean");
        assert_eq!(json_kind(&json!(1.5)), "a number");
        assert_eq!(json_kind(&json!("x")), "a string");
        assert_eq!(json_kind(&json!([1])), "an array");
        assert_eq!(json_kind(&json!({"a": 1})), "an object");
    }
}
