//! The `lookup` handler through `agentd_sdk::testing`: answers, a `not_found` the model can act
//! on, options refused all at once, and calls that are no longer wanted.

use std::time::Duration;

use agentd_sdk::HandlerFactory;
use agentd_sdk::testing::{self, TestTool, expect_error_kind, expect_ok};
use serde_json::json;

use crate::LookupFactory;

/// A tool as an operator would write it in tools.toml.
fn office() -> TestTool {
    testing::build(
        &LookupFactory,
        testing::options_from_toml(
            r#"
            [entries]
            "Opening hours" = "Mon-Fri 9:00-17:00"
            "Support email" = "help@example.com"
            "Escalation" = { name = "Dana", phone = "+1 555 0100" }
            "#,
        ),
    )
    .named("office_info")
}

#[tokio::test]
async fn a_key_is_answered_ignoring_case_and_surrounding_space() {
    let tool = office();
    let out = expect_ok(tool.call(json!({"key": "  opening HOURS "})).await);
    assert_eq!(
        out,
        json!({"key": "Opening hours", "value": "Mon-Fri 9:00-17:00"})
    );
    let out = expect_ok(tool.call(json!({"key": "escalation"})).await);
    assert_eq!(out["value"]["phone"], "+1 555 0100");
}

#[tokio::test]
async fn an_unknown_key_is_not_found_with_the_closest_keys() {
    let tool = office();
    let error = expect_error_kind(tool.call(json!({"key": "hours"})).await, "not_found");
    assert!(!error.retryable);
    assert!(
        error.message.contains("did you mean `Opening hours`"),
        "{}",
        error.message
    );
    let result = error.to_result_json();
    assert_eq!(result["error"]["suggestions"], json!(["Opening hours"]));

    let error = expect_error_kind(tool.call(json!({"key": "weather"})).await, "not_found");
    assert_eq!(error.to_result_json()["error"]["suggestions"], json!([]));
    assert_eq!(error.message, "no entry for `weather`");
}

#[tokio::test]
async fn case_sensitive_tables_keep_keys_apart() {
    let tool = testing::build(
        &LookupFactory,
        json!({"case_sensitive": true, "entries": {"SKU": 1, "sku": 2}}),
    );
    assert_eq!(
        expect_ok(tool.call(json!({"key": "sku"})).await)["value"],
        2
    );
    expect_error_kind(tool.call(json!({"key": "Sku"})).await, "not_found");
}

#[tokio::test]
async fn a_cancelled_or_late_call_does_no_work() {
    let tool = office();
    let cancelled = testing::context().cancelled().build();
    expect_error_kind(
        tool.call_with(json!({"key": "escalation"}), cancelled)
            .await,
        "cancelled",
    );
    let error = expect_error_kind(
        tool.call_past_deadline(json!({"key": "escalation"})).await,
        "timeout",
    );
    assert!(error.retryable);
    // A cancel that comes after the answer changes nothing: the lookup does not wait.
    let answered = tool
        .cancel_mid_call(json!({"key": "escalation"}), Duration::from_millis(50))
        .await;
    assert_eq!(expect_ok(answered)["key"], "Escalation");
}

#[test]
fn options_are_checked_all_at_once() {
    let problems = testing::options_problems(&LookupFactory, json!({"entries": {}}));
    assert_eq!(problems, ["entries: must hold at least one key"]);

    let problems = testing::options_problems(
        &LookupFactory,
        json!({"entries": {"Hours": 1, "hours ": 2, " ": 3}}),
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("a key is empty")));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`Hours` and `hours ` are the same key")),
        "{problems:?}"
    );

    for (options, expected) in [
        (json!({}), "missing field `entries`"),
        (
            json!({"entries": {"a": 1}, "casesensitive": true}),
            "unknown field `casesensitive`",
        ),
        (json!({"entries": ["a"]}), "invalid type"),
    ] {
        let problems = testing::options_problems(&LookupFactory, options.clone());
        assert!(problems[0].contains(expected), "{options}: {problems:?}");
    }
}

#[test]
fn the_options_schema_describes_what_build_accepts() {
    let schema = LookupFactory.options_schema();
    assert_eq!(schema["required"], json!(["entries"]));
    let declared: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    assert_eq!(declared, ["case_sensitive", "entries"]);
    assert_eq!(schema["additionalProperties"], false);
}
