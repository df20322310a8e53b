//! Request bodies read in one pass into borrowed views are judged as a `serde_json::Value` tree
//! of the same body would be: escaped strings and keys, duplicate keys, messages that are not
//! objects, unexpected fields, null content and content parts.

use serde_json::{Map, Value};

use crate::behaviour::{self, DefaultAnswer};
use crate::completion::prompt_tokens;
use crate::request_body::RequestBody;
use crate::wire::{self, ChatRequest, InvalidRequest};

/// Runs `inspect` on the accepted request for the raw JSON `body`, or returns the refusal.
fn judge<T>(body: &str, inspect: impl FnOnce(&ChatRequest<'_>) -> T) -> Result<T, InvalidRequest> {
    let parsed = RequestBody::parse(body.as_bytes()).expect("the body is JSON");
    wire::read(&parsed).map(|request| inspect(&request))
}

fn accepted(body: &str) {
    if let Err(refusal) = judge(body, |_| ()) {
        panic!("refused {body}: {refusal:?}");
    }
}

fn refused(body: &str) -> InvalidRequest {
    judge(body, |_| ()).expect_err(body)
}

fn refusal(param: &str, message: &str) -> InvalidRequest {
    InvalidRequest::new(param, message)
}

fn with_messages(messages: &str) -> String {
    format!(r#"{{"model": "m", "messages": {messages}}}"#)
}

const ASKS_C1: &str = r#"{"role": "user", "content": "go"},
    {"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "send", "arguments": "{}"}}]}"#;

#[test]
fn escaped_keys_and_strings_are_read_decoded() {
    let body =
        with_messages(r#"[{"r\u006fle": "\u0075ser", "c\u006fntent": "caf\u00e9 \"x\"\n"}]"#);
    let text = judge(&body, |request| request.messages[0].content_text());
    assert_eq!(text, Ok("café \"x\"\n".to_owned()));

    let model = judge(
        r#"{"m\u006fdel": "m\u00f6", "messages": [{"role": "user", "content": "a"}]}"#,
        |request| request.model.to_owned(),
    );
    assert_eq!(model, Ok("mö".to_owned()));

    let answered = with_messages(&format!(
        r#"[{ASKS_C1}, {{"role": "tool", "tool_call_id": "c\u0031", "content": "s\u00e9nt"}}]"#
    ));
    let summary = judge(&answered, behaviour::answer);
    assert_eq!(
        summary,
        Ok(DefaultAnswer::Text("Done. send returned: sént".to_owned()))
    );

    let unpaired = with_messages(&format!(
        r#"[{ASKS_C1}, {{"role": "tool", "tool_call_id": "c\u0032", "content": "x"}}]"#
    ));
    assert!(refused(&unpaired).message.contains("must be a response"));

    let unknown =
        r#"{"model": "m", "sess\u0069on_id": 1, "messages": [{"role": "user", "content": "a"}]}"#;
    assert_eq!(
        refused(unknown),
        refusal(
            "session_id",
            "Unrecognized request argument supplied: session_id"
        )
    );
}

#[test]
fn the_alphabetically_first_unexpected_field_is_named() {
    let extra = with_messages(
        r#"[{"role": "user", "content": "a"},
        {"zeta": 1, "role": "user", "cre\u0061ted_at": 2, "content": "x"}]"#,
    );
    assert_eq!(
        refused(&extra),
        refusal(
            "messages[1]",
            "Additional properties are not allowed ('created_at' was unexpected) - 'messages.1'"
        )
    );
    let cases = [
        (
            r#"{"role": "user", "content": "x", "tool_call_id": "c", "zz": 1}"#,
            "tool_call_id",
        ),
        (
            r#"{"role": "user", "content": "x", "tool_call_id": "c", "ab": 1}"#,
            "ab",
        ),
        (
            r#"{"role": "user", "content": "x", "refusal": null}"#,
            "refusal",
        ),
        (
            r#"{"role": "tool", "content": "x", "tool_call_id": "c", "tool_calls": []}"#,
            "tool_calls",
        ),
        (
            r#"{"role": "user", "content": "x", "Zed": 1, "_u": 1, "audio": 1, "\u00e9": 1}"#,
            "Zed",
        ),
    ];
    for (message, expected) in cases {
        let oracle: Map<String, Value> = serde_json::from_str(message).expect("object");
        let allowed = if oracle["role"] == "tool" {
            &["role", "content", "tool_call_id", "name"][..]
        } else {
            &["role", "content", "name"][..]
        };
        let first = oracle.keys().find(|key| !allowed.contains(&key.as_str()));
        assert_eq!(
            first.map(String::as_str),
            Some(expected),
            "oracle for {message}"
        );
        let refused = refused(&with_messages(&format!("[{message}]")));
        let wanted = format!("('{expected}' was unexpected)");
        assert!(refused.message.contains(&wanted), "{message}: {refused:?}");
    }
    accepted(&with_messages(
        r#"[{"role": "user", "content": "a"},
        {"role": "assistant", "content": "x", "refusal": null, "audio": null, "function_call": null, "name": "n"}]"#,
    ));
}

#[test]
fn null_content_is_allowed_only_beside_tool_calls() {
    let content_error =
        "Invalid value for 'content': expected a string or a non-empty array of content parts.";
    let bare = with_messages(
        r#"[{"role": "user", "content": "go"}, {"role": "assistant", "content": null}]"#,
    );
    assert_eq!(
        refused(&bare),
        refusal("messages[1].content", content_error)
    );
    let missing = with_messages(r#"[{"role": "user", "content": "go"}, {"role": "assistant"}]"#);
    assert_eq!(
        refused(&missing),
        refusal("messages[1].content", content_error)
    );

    let answer = r#"{"role": "tool", "tool_call_id": "c1", "content": "ok"}"#;
    accepted(&with_messages(&format!("[{ASKS_C1}, {answer}]")));
    let without_content = ASKS_C1.replace(r#""content": null, "tool_calls""#, r#""tool_calls""#);
    accepted(&with_messages(&format!("[{without_content}, {answer}]")));

    let null_result = r#"{"role": "tool", "tool_call_id": "c1", "content": null}"#;
    let refused_result = refused(&with_messages(&format!("[{ASKS_C1}, {null_result}]")));
    assert_eq!(
        refused_result,
        refusal("messages[2].content", content_error)
    );

    let null_calls = with_messages(
        r#"[{"role": "user", "content": "go"}, {"role": "assistant", "content": null, "tool_calls": null}]"#,
    );
    assert_eq!(
        refused(&null_calls),
        refusal(
            "messages[1].tool_calls",
            "Invalid 'tool_calls': expected an array with minimum length 1."
        )
    );
}

#[test]
fn duplicate_keys_keep_the_last_value() {
    let last_role =
        with_messages(r#"[{"role": "robot", "role": "user", "content": "a", "content": "b"}]"#);
    assert_eq!(
        judge(&last_role, |request| request.messages[0].content_text()),
        Ok("b".to_owned())
    );
    let robot = with_messages(r#"[{"role": "user", "role": "robot", "content": "a"}]"#);
    assert_eq!(refused(&robot).param.as_deref(), Some("messages[0].role"));
    let number = with_messages(r#"[{"role": "user", "content": "a", "content": 5}]"#);
    assert_eq!(
        refused(&number).param.as_deref(),
        Some("messages[0].content")
    );
    let replaced =
        r#"{"model": "m", "messages": [{"role": "user", "content": "a"}], "messages": 3}"#;
    assert_eq!(
        refused(replaced),
        refusal("messages", "Missing required parameter: 'messages'.")
    );
    accepted(r#"{"model": "", "model": "m", "messages": [{"role": "user", "content": "a"}]}"#);
}

#[test]
fn shapes_other_than_objects_are_refused_where_they_are() {
    for other in [
        r#""hi""#,
        "null",
        "5",
        "true",
        r#"[{"role": "user", "content": "x"}]"#,
    ] {
        let body = with_messages(&format!(r#"[{{"role": "user", "content": "x"}}, {other}]"#));
        assert_eq!(
            refused(&body),
            refusal("messages[1]", "each message must be an object")
        );
    }
    for not_object in ["[1]", r#""x""#, "null"] {
        let refused = refused(not_object);
        assert_eq!(refused.message, "the request body must be a JSON object");
        assert_eq!(refused.param, None);
    }
    let messages_object = r#"{"model": "m", "messages": {"role": "user", "content": "x"}}"#;
    assert_eq!(refused(messages_object).param.as_deref(), Some("messages"));
    for name in ["5", "null", r#"["n"]"#] {
        let body = with_messages(&format!(
            r#"[{{"role": "user", "content": "x", "name": {name}}}]"#
        ));
        assert_eq!(
            refused(&body),
            refusal("messages[0].name", "'name' must be a string.")
        );
    }
    let role = with_messages(r#"[{"role": 5, "content": "x"}]"#);
    assert_eq!(refused(&role).param.as_deref(), Some("messages[0].role"));
}

#[test]
fn content_parts_are_checked_and_read() {
    let parts = with_messages(
        r#"[{"role": "user", "content": [{"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "data:,"}}, {"type": "text", "text": "b\u00e9"}]}]"#,
    );
    let read = judge(&parts, |request| {
        (
            request.messages[0].content_text(),
            prompt_tokens(request.messages),
        )
    });
    assert_eq!(read, Ok(("a\nbé".to_owned(), 1)));

    let image_result = with_messages(&format!(
        r#"[{ASKS_C1}, {{"role": "tool", "tool_call_id": "c1", "content": [{{"type": "image_url"}}]}}]"#
    ));
    let part_error =
        "each content part must be an object with a 'type' (and 'text' for text parts)";
    assert_eq!(
        refused(&image_result),
        refusal("messages[2].content[0]", part_error)
    );
    let textless = with_messages(
        r#"[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}]"#,
    );
    assert_eq!(
        refused(&textless),
        refusal("messages[0].content[1]", part_error)
    );
    let empty = with_messages(r#"[{"role": "user", "content": []}]"#);
    assert_eq!(
        refused(&empty).param.as_deref(),
        Some("messages[0].content")
    );
}
