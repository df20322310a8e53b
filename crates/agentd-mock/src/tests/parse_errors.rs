//! Bodies that are not valid JSON are refused with exactly the error `serde_json` gives when
//! parsing them into a `Value` (numbers out of range, bad escapes, invalid UTF-8, nesting too
//! deep), and escaped text arrives decoded over HTTP.

use serde_json::Value;

use super::start;
use super::validation::reqwest_post_raw;
use crate::request_body::RequestBody;

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// The parse error of the one-pass reader and of a `Value` tree, in that order.
fn both_errors(body: &[u8]) -> (Option<String>, Option<String>) {
    let typed = RequestBody::parse(body)
        .err()
        .map(|error| error.to_string());
    let tree = serde_json::from_slice::<Value>(body)
        .err()
        .map(|error| error.to_string());
    (typed, tree)
}

#[test]
fn malformed_bodies_fail_as_a_value_tree_fails() {
    let message = |inner: &str| {
        format!(r#"{{"model": "m", "messages": [{{"role": "user", "content": {inner}}}]}}"#)
    };
    let mut bodies: Vec<Vec<u8>> = [
        "{not json".to_owned(),
        String::new(),
        r#"{"model": "m"} trailing"#.to_owned(),
        r#"{"model": "m",}"#.to_owned(),
        r#"{"model": "m", "temperature": 1e400}"#.to_owned(),
        r#"{"model": "m", "user": "\ud800"}"#.to_owned(),
        r#"{"model": "m", "\q": 1}"#.to_owned(),
        r#"{"model": "m", "seed": 01}"#.to_owned(),
        message(r#""\ud800""#),
        message(r#""hi","#),
        message("-"),
        format!(r#"{{"model": "m", "metadata": {}}}"#, nested(200)),
        message(&nested(200)),
        message(&format!(
            r#"[{{"type": "text", "text": "a", "x": {}}}]"#,
            nested(130)
        )),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    bodies.push(b"{\"model\": \"m\xff\"}".to_vec());
    bodies.push(b"{\"model\": \"m\", \"k\xfe\": 1}".to_vec());
    for body in bodies {
        let (typed, tree) = both_errors(&body);
        let shown = String::from_utf8_lossy(&body);
        assert!(tree.is_some(), "a Value tree accepts {shown}");
        assert_eq!(typed, tree, "{shown}");
    }
}

#[test]
fn bodies_a_value_tree_accepts_are_accepted() {
    // The top-level object and `metadata` take two of the 128 levels serde_json allows.
    let deepest = format!(r#"{{"model": "m", "metadata": {}}}"#, nested(126));
    for body in [
        deepest.as_str(),
        r#"{"model": "m", "temperature": 1e300, "seed": -5, "n": 18446744073709551615}"#,
        r#"{"model": "m", "metadata": {"a": [null, true, 1.5, "\ud83d\ude00"]}}"#,
        "[]",
        r#"  "a string"  "#,
    ] {
        assert_eq!(both_errors(body.as_bytes()), (None, None), "{body}");
    }
    let too_deep = format!(r#"{{"model": "m", "metadata": {}}}"#, nested(127));
    let (typed, tree) = both_errors(too_deep.as_bytes());
    assert!(tree.is_some_and(|error| error.contains("recursion limit")));
    assert!(typed.is_some_and(|error| error.contains("recursion limit")));
}

#[tokio::test]
async fn escaped_text_is_echoed_and_counted_decoded() {
    let mock = start().await;
    let body = r#"{"model": "m\u006fck", "messages": [{"role": "user", "content": "say \"caf\u00e9\"\n"}]}"#;
    let (status, answer) = reqwest_post_raw(&mock, body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["model"], "mock");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "You said: say \"café\"\n"
    );
    // `say "café"` and a newline are 11 characters: 3 tokens (the raw text would be 5).
    assert_eq!(answer["usage"]["prompt_tokens"], 3);
    assert_eq!(mock.last_request().expect("recorded")["model"], "mock");
}
