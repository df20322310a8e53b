//! Errors a handler reports: per call (to the model) and per build (to the operator).

use serde_json::{Value, json};

/// A failed call. Becomes a tool result `{"error": {"kind", "message", ...}}` that the model reads,
/// so `message` should say what went wrong and what the model could do differently.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HandlerError {
    /// A short machine-readable kind, e.g. `denied`, `timeout`, `rejected_permanent`.
    pub kind: String,
    /// Human- and model-readable explanation.
    pub message: String,
    /// Whether retrying the same call later may succeed.
    pub retryable: bool,
    /// Extra structured detail (for example the server's reply), merged into the error object.
    pub details: Option<Value>,
}

impl HandlerError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable: false,
            details: None,
        }
    }

    /// Marks the error as transient.
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The JSON the model receives as the tool result.
    pub fn to_result_json(&self) -> Value {
        let mut error = json!({
            "kind": self.kind,
            "message": self.message,
            "retryable": self.retryable,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (&self.details, &mut error) {
            for (k, v) in extra {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        json!({ "error": error })
    }
}

/// Problems with a tool's `[tool.options]`, all of them at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct OptionsError(pub Vec<String>);

impl OptionsError {
    pub fn one(message: impl Into<String>) -> Self {
        Self(vec![message.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_json_carries_kind_and_details_without_overwriting() {
        let err = HandlerError::new("denied", "not allowed")
            .with_details(json!({"recipient": "x@y", "kind": "ignored"}));
        let v = err.to_result_json();
        assert_eq!(v["error"]["kind"], "denied");
        assert_eq!(v["error"]["recipient"], "x@y");
        assert_eq!(v["error"]["retryable"], false);
    }
}
