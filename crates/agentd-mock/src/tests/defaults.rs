//! The default behaviour over HTTP: the seed prompt, tool matching, directives, summaries.

use serde_json::{Value, json};

use super::{message, send_email_tool, start, user_request};

const SEED: &str = "Send an email to john@example.com about our meeting tomorrow.";

fn with_tools(text: &str, tools: Value) -> Value {
    let mut request = user_request(text);
    request["tools"] = tools;
    request
}

fn only_call(answer: &Value) -> (String, Value) {
    let calls = answer["tool_calls"].as_array().expect("tool calls");
    assert_eq!(calls.len(), 1, "{answer}");
    let name = calls[0]["function"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let arguments = calls[0]["function"]["arguments"]
        .as_str()
        .expect("arguments string");
    (
        name,
        serde_json::from_str(arguments).expect("arguments are JSON"),
    )
}

fn tool(name: &str, required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = required
        .iter()
        .map(|field| ((*field).to_owned(), json!({"type": "string"})))
        .collect();
    json!({"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": properties, "required": required
    }}})
}

#[tokio::test]
async fn the_seed_prompt_calls_send_email_with_the_address_and_topic() {
    let mock = start().await;
    let tools = json!([tool("get_weather", &["city"]), send_email_tool()]);
    let answer = message(&mock, &with_tools(SEED, tools)).await;
    assert!(answer["content"].is_null());
    let (name, arguments) = only_call(&answer);
    assert_eq!(name, "send_email");
    assert_eq!(arguments["to"], "john@example.com");
    assert_eq!(arguments["subject"], "our meeting tomorrow");
    let body = arguments["body"].as_str().expect("body");
    assert!(body.contains("meeting"), "{body}");
    assert_eq!(arguments.as_object().map(|o| o.len()), Some(3));
}

#[tokio::test]
async fn a_forced_tool_choice_wins_over_matching() {
    let mock = start().await;
    let mut request = with_tools(
        SEED,
        json!([send_email_tool(), tool("get_weather", &["city"])]),
    );
    request["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    let (name, arguments) = only_call(&message(&mock, &request).await);
    assert_eq!(name, "get_weather");
    assert!(arguments["city"].is_string());
}

#[tokio::test]
async fn without_a_matching_tool_the_first_one_is_called() {
    let mock = start().await;
    let tools = json!([tool("lookup_order", &["order_id"]), send_email_tool()]);
    let (name, _) = only_call(&message(&mock, &with_tools("hmm?", tools)).await);
    assert_eq!(name, "lookup_order");
}

#[tokio::test]
async fn call_directives_are_emitted_exactly_and_in_parallel() {
    let mock = start().await;
    let text = "Do both.\n!call send_email {\"to\": \"x@y.z\"}\n!call unknown_tool {oops";
    let answer = message(&mock, &with_tools(text, json!([send_email_tool()]))).await;
    let calls = answer["tool_calls"].as_array().expect("calls");
    let got: Vec<(&str, &str)> = calls
        .iter()
        .map(|call| {
            let function = &call["function"];
            (
                function["name"].as_str().unwrap_or(""),
                function["arguments"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("send_email", "{\"to\": \"x@y.z\"}"),
            ("unknown_tool", "{oops")
        ]
    );
}

#[tokio::test]
async fn tool_results_are_summarized_with_name_and_content() {
    let mock = start().await;
    let request = json!({
        "model": "m",
        "tools": [send_email_tool()],
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": SEED},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function",
                "function": {"name": "send_email", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "{\"status\":\"sent\"}"}
        ]
    });
    let answer = message(&mock, &request).await;
    assert!(answer.get("tool_calls").is_none(), "{answer}");
    assert_eq!(
        answer["content"],
        "Done. send_email returned: {\"status\":\"sent\"}"
    );
}

#[tokio::test]
async fn tool_choice_none_and_no_tools_answer_with_text() {
    let mock = start().await;
    let mut request = with_tools(SEED, json!([send_email_tool()]));
    request["tool_choice"] = json!("none");
    let answer = message(&mock, &request).await;
    assert_eq!(answer["content"], format!("You said: {SEED}"));

    let parts = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "one"}, {"type": "text", "text": "two"}
    ]}]});
    assert_eq!(
        message(&mock, &parts).await["content"],
        "You said: one\ntwo"
    );
}

#[tokio::test]
async fn a_trailing_assistant_message_gets_ok() {
    let mock = start().await;
    let request = json!({"model": "m", "tools": [send_email_tool()], "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}
    ]});
    assert_eq!(message(&mock, &request).await["content"], "OK.");
}
