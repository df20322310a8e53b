//! Tool-call arguments: parse the model's JSON text and check it against the compiled schema,
//! collecting every violation with its JSON Pointer.

use serde_json::{Map, Value};

use super::catalog::CatalogTool;

/// Longest violation message kept; the rest is cut (messages quote the offending value).
const MAX_MESSAGE_CHARS: usize = 300;

/// One schema violation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// JSON Pointer into the arguments ("" for the root, "/to" for a field).
    pub pointer: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArgumentError {
    /// The arguments are not JSON (or not a JSON object).
    Malformed(String),
    /// JSON, but not valid against the schema.
    Invalid(Vec<Violation>),
}

/// Parses and validates a call's arguments. An empty string counts as `{}`.
pub fn check(tool: &CatalogTool, raw_arguments: &str) -> Result<Value, ArgumentError> {
    check_against(&tool.validator, raw_arguments)
}

/// [`check`] against any compiled schema.
pub fn check_against(
    validator: &jsonschema::Validator,
    raw_arguments: &str,
) -> Result<Value, ArgumentError> {
    let arguments = parse(raw_arguments)?;
    // The common case is valid arguments: answer it without building any error.
    if validator.is_valid(&arguments) {
        return Ok(arguments);
    }
    let violations = validator
        .iter_errors(&arguments)
        .map(|error| Violation {
            pointer: error.instance_path().as_str().to_owned(),
            message: truncate(error.to_string()),
        })
        .collect();
    Err(ArgumentError::Invalid(violations))
}

fn parse(raw_arguments: &str) -> Result<Value, ArgumentError> {
    if raw_arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_str(raw_arguments)
        .map_err(|e| ArgumentError::Malformed(format!("the arguments are not valid JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ArgumentError::Malformed(format!(
            "the arguments must be a JSON object, got {}",
            agentd_sdk::json_kind(&value)
        )))
    }
}

fn truncate(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn send_email_validator() -> jsonschema::Validator {
        jsonschema::validator_for(&json!({
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "body": {"type": "string"},
                "cc": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
            },
            "required": ["to", "subject", "body"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn valid_arguments_come_back_parsed() {
        let v = send_email_validator();
        let args = check_against(
            &v,
            r#"{"to":"a@b.c","subject":"Hi","body":"x","cc":["d@e.f"]}"#,
        );
        assert_eq!(args.unwrap()["cc"][0], "d@e.f");
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let v = send_email_validator();
        let Err(ArgumentError::Malformed(message)) = check_against(&v, "{\"to\": \"a\",\n  oops}")
        else {
            panic!("expected Malformed");
        };
        assert!(message.contains("line 2 column 3"), "{message}");
    }

    #[test]
    fn non_objects_are_malformed() {
        let v = send_email_validator();
        let result = check_against(&v, "[1, 2]");
        assert!(matches!(result, Err(ArgumentError::Malformed(m)) if m.contains("an array")));
    }

    #[test]
    fn empty_arguments_count_as_an_empty_object() {
        let v = send_email_validator();
        let Err(ArgumentError::Invalid(violations)) = check_against(&v, "  \n") else {
            panic!("expected Invalid");
        };
        // All three required fields are reported, at the root.
        assert_eq!(violations.len(), 3, "{violations:?}");
        assert!(violations.iter().all(|v| v.pointer.is_empty()));
        for field in ["to", "subject", "body"] {
            assert!(
                violations.iter().any(|v| v.message.contains(field)),
                "{field} missing from {violations:?}"
            );
        }
        let permissive = jsonschema::validator_for(&json!({"type": "object"})).unwrap();
        assert_eq!(check_against(&permissive, ""), Ok(json!({})));
    }

    #[test]
    fn every_violation_is_reported_with_its_pointer() {
        let v = send_email_validator();
        let Err(ArgumentError::Invalid(violations)) = check_against(
            &v,
            r#"{"to": 42, "subject": "Hi", "cc": ["ok", 7], "extra": 1}"#,
        ) else {
            panic!("expected Invalid");
        };
        let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
        assert!(pointers.contains(&"/to"), "{violations:?}");
        assert!(pointers.contains(&"/cc"), "{violations:?}");
        let to = violations.iter().find(|v| v.pointer == "/to").unwrap();
        assert!(to.message.contains("string"), "{}", to.message);
        // The missing `body` and the unexpected `extra` are reported at the root.
        assert!(
            violations
                .iter()
                .any(|v| v.pointer.is_empty() && v.message.contains("body"))
        );
        assert!(
            violations
                .iter()
                .any(|v| v.pointer.is_empty() && v.message.contains("extra"))
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let v = send_email_validator();
        let long = "x".repeat(5000);
        let raw = json!({"to": [long], "subject": "s", "body": "b"}).to_string();
        let Err(ArgumentError::Invalid(violations)) = check_against(&v, &raw) else {
            panic!("expected Invalid");
        };
        assert!(violations[0].message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(violations[0].message.ends_with('…'));
    }
}
