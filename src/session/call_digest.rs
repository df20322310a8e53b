//! The journal's identity of a call's content: a SHA-256 digest of the tool name and its
//! arguments in canonical JSON (object keys sorted, no whitespace). Two calls with the same id
//! are the same call only when their digests match; the same id with other content is a new
//! call that runs.

use serde_json::Value;

/// The digest of a call whose arguments were parsed (and validated) already.
pub fn call_digest(tool: &str, arguments: &Value) -> String {
    let mut canonical = Vec::with_capacity(tool.len() + 128);
    canonical.extend_from_slice(tool.as_bytes());
    canonical.push(0);
    write_canonical(&mut canonical, arguments);
    hex_sha256(&canonical)
}

/// The digest of a call as stored in history: its arguments text parsed when it is JSON
/// (so spacing and key order do not matter), or taken as it is when it is not.
pub fn call_digest_of_text(tool: &str, arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value) => call_digest(tool, &value),
        Err(_) => {
            let mut raw = Vec::with_capacity(tool.len() + 1 + arguments.len());
            raw.extend_from_slice(tool.as_bytes());
            raw.push(0);
            raw.extend_from_slice(arguments.as_bytes());
            hex_sha256(&raw)
        }
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Writes `value` with object keys in byte order and no whitespace, whatever order the map
/// keeps them in; strings and numbers are written as serde_json writes them.
fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(out, key);
                out.push(b':');
                write_canonical(out, value);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        scalar => write_scalar(out, scalar),
    }
}

fn write_scalar<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing a string, a number, a bool or null into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
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
