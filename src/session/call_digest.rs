//! The journal's identity of a call's content: a SHA-256 digest of the tool name and its
//! arguments in canonical JSON (object keys sorted, no whitespace). Two calls with the same id
//! are the same call only when their digests match; the same id with other content is a new
//! call that runs.

use std::fmt::Write as _;

use serde_json::Value;

/// The digest of a call whose arguments were parsed (and validated) already.
pub fn call_digest(tool: &str, arguments: &Value) -> String {
    let mut canonical = String::with_capacity(tool.len() + 64);
    canonical.push_str(tool);
    canonical.push('\0');
    write_canonical(&mut canonical, arguments);
    hex_sha256(canonical.as_bytes())
}

/// The digest of a call as stored in history: its arguments text parsed when it is JSON
/// (so spacing and key order do not matter), or taken as it is when it is not.
pub fn call_digest_of_text(tool: &str, arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value) => call_digest(tool, &value),
        Err(_) => {
            let mut raw = String::with_capacity(tool.len() + 1 + arguments.len());
            raw.push_str(tool);
            raw.push('\0');
            raw.push_str(arguments);
            hex_sha256(raw.as_bytes())
        }
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Writes `value` with object keys in byte order and no whitespace, whatever order the map
/// keeps them in.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_canonical(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::String(text) => write_string(out, text),
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

fn write_string(out: &mut String, text: &str) {
    let _ = write!(out, "{}", Value::String(text.to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_spacing_do_not_change_the_digest() {
        let a = call_digest_of_text("send_email", r#"{"to":"a@x.org","subject":"hi"}"#);
        let b = call_digest_of_text("send_email", r#"{ "subject": "hi",  "to": "a@x.org" }"#);
        assert_eq!(a, b);
        assert_eq!(
            a,
            call_digest("send_email", &json!({"subject": "hi", "to": "a@x.org"}))
        );
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn other_arguments_or_another_tool_change_the_digest() {
        let base = call_digest("send_email", &json!({"to": "a@x.org"}));
        assert_ne!(base, call_digest("send_email", &json!({"to": "b@x.org"})));
        assert_ne!(base, call_digest("echo", &json!({"to": "a@x.org"})));
        assert_ne!(
            call_digest("send_email", &json!({"to": ["a", "b"]})),
            call_digest("send_email", &json!({"to": ["b", "a"]})),
            "array order is content"
        );
        // The separator keeps the name and the arguments apart.
        assert_ne!(
            call_digest_of_text("ab", "{}"),
            call_digest_of_text("a", "b{}")
        );
    }

    #[test]
    fn nested_objects_are_canonical_too() {
        let a = call_digest("t", &json!({"o": {"b": 1, "a": [{"y": 2, "x": "\n"}]}}));
        let b = call_digest_of_text("t", r#"{"o":{"a":[{"x":"\n","y":2}],"b":1}}"#);
        assert_eq!(a, b);
    }
}
