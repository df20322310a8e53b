//! The example `lookup` handler end to end: declared in a catalog, offered to the mock model,
//! called by it in a chat turn, and its answer (or its `not_found` error) read back by the model.

use crate::common;

use agentd_mock::{Reply, ScriptedCall};
use common::{Options, TestDaemon, assert_history_valid, say};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One offered `lookup` tool, as an operator would declare it.
const OFFICE_TOOLS: &str = r#"
[[tool]]
name = "office_info"
description = "Answers questions about the office from the operator's table"
handler = "lookup"
parameters = { type = "object", properties = { key = { type = "string" } }, required = ["key"] }

[tool.options]
entries = { "Opening hours" = "Mon-Fri 9:00-17:00", "Support email" = "help@example.com" }
"#;

/// The tool results the model was sent in one request, parsed.
fn tool_results(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn the_model_calls_the_lookup_tool_and_reads_its_answer_and_its_error() {
    let d = TestDaemon::start_with(Options {
        tools_toml: Some(OFFICE_TOOLS.to_owned()),
        ..Options::default()
    })
    .await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "office_info",
        json!({"key": "opening hours"}),
    )]));
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "office_info",
        json!({"key": "support mail"}),
    )]));
    d.mock.push(Reply::text("We are open Mon-Fri 9:00-17:00."));

    let (s, r) = d.chat(&session, say("When are you open?")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "We are open Mon-Fri 9:00-17:00."
    );
    assert_eq!(r["steps"], 3);

    let requests = d.mock.requests();
    assert_eq!(requests.len(), 3);
    let offered = &requests[0]["tools"][0]["function"];
    assert_eq!(offered["name"], "office_info");
    assert_eq!(offered["parameters"]["required"], json!(["key"]));

    let first = tool_results(&requests[1]);
    assert_eq!(
        first,
        [json!({"key": "Opening hours", "value": "Mon-Fri 9:00-17:00"})]
    );
    let second = tool_results(&requests[2]);
    let error = &second[1]["error"];
    assert_eq!(error["kind"], "not_found", "{error}");
    assert_eq!(error["retryable"], false);
    assert_eq!(error["suggestions"], json!(["Support email"]));

    let history = d.history(&session).await;
    assert_eq!(history.len(), 6, "user, call, result, call, result, answer");
    assert_history_valid(&history);
}
