//! The default behaviour: a stateless, deterministic answer to any valid request when no
//! scripted reply is queued. It echoes user text, calls one fitting tool (or the tools named by
//! `!call NAME {json}` lines), and summarizes tool results once they come back.

use serde_json::Value;

use super::arguments::{self, Hints};
use super::message::Message;
use super::script::ScriptedCall;
use super::wire::{self, ChatRequest, ToolChoice};

/// Longest tool result quoted in a summary, in characters.
const SUMMARY_RESULT_CHARS: usize = 200;

/// What the default behaviour answers: text, or tool calls (ids are given later).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DefaultAnswer {
    Text(String),
    Calls(Vec<ScriptedCall>),
}

pub(crate) fn answer(request: &ChatRequest<'_>) -> DefaultAnswer {
    let Some(last) = request.messages.last() else {
        return DefaultAnswer::Text("OK.".to_owned());
    };
    let tools_on = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
    match last.role() {
        Some("tool") => DefaultAnswer::Text(summarize_tool_results(request.messages)),
        Some("user") => {
            let text = last.content_text();
            if tools_on {
                DefaultAnswer::Calls(choose_calls(request, &text))
            } else {
                DefaultAnswer::Text(format!("You said: {text}"))
            }
        }
        _ => DefaultAnswer::Text("OK.".to_owned()),
    }
}

/// `!call NAME {json}` lines verbatim, else one call of the best fitting tool.
fn choose_calls(request: &ChatRequest<'_>, text: &str) -> Vec<ScriptedCall> {
    let directed = directives(text);
    if !directed.is_empty() {
        return directed;
    }
    let tool = match request.tool_choice {
        ToolChoice::Function(name) => request
            .tools
            .iter()
            .find(|tool| wire::tool_name(tool) == name),
        _ => best_matching_tool(request.tools, text),
    };
    let Some(tool) = tool.or(request.tools.first()) else {
        return Vec::new();
    };
    let arguments = arguments::synthesize(tool.pointer("/function/parameters"), &Hints::new(text));
    vec![ScriptedCall::new(wire::tool_name(tool), arguments)]
}

/// Every line `!call NAME ARGS` as a call with ARGS verbatim (`{}` when empty).
pub(crate) fn directives(text: &str) -> Vec<ScriptedCall> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("!call "))
        .filter_map(|rest| {
            let rest = rest.trim();
            let (name, arguments) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let arguments = arguments.trim();
            let arguments = if arguments.is_empty() {
                "{}"
            } else {
                arguments
            };
            (!name.is_empty()).then(|| ScriptedCall::raw(name, arguments))
        })
        .collect()
}

/// The tool with the most name words (split at `_` and `-`) found among the user's words;
/// the earliest on ties; `None` when no word matches.
fn best_matching_tool<'a>(tools: &'a [Value], text: &str) -> Option<&'a Value> {
    let lowered = text.to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    let score = |tool: &Value| {
        wire::tool_name(tool)
            .split(['_', '-'])
            .filter(|part| !part.is_empty())
            .filter(|part| {
                let part = part.to_lowercase();
                words
                    .iter()
                    .any(|word| *word == part || word.strip_suffix('s') == Some(part.as_str()))
            })
            .count()
    };
    let mut best: Option<(&Value, usize)> = None;
    for tool in tools {
        let points = score(tool);
        if points > 0 && best.is_none_or(|(_, top)| points > top) {
            best = Some((tool, points));
        }
    }
    best.map(|(tool, _)| tool)
}

/// `Done. NAME returned: RESULT` for each trailing tool message, joined by `; `.
pub(crate) fn summarize_tool_results(messages: &[Message<'_>]) -> String {
    let first_result = messages
        .iter()
        .rposition(|message| message.role() != Some("tool"))
        .map_or(0, |at| at + 1);
    let calling = first_result
        .checked_sub(1)
        .and_then(|at| messages.get(at))
        .and_then(Message::tool_calls)
        .and_then(Value::as_array);
    let parts: Vec<String> = messages[first_result..]
        .iter()
        .map(|result| {
            let name = result
                .name()
                .or_else(|| called_name(calling, result.tool_call_id()))
                .unwrap_or("tool");
            let content = shorten(&result.content_text());
            format!("{name} returned: {content}")
        })
        .collect();
    format!("Done. {}", parts.join("; "))
}

fn called_name<'a>(calls: Option<&'a Vec<Value>>, id: Option<&str>) -> Option<&'a str> {
    calls?
        .iter()
        .find(|call| call.get("id").and_then(Value::as_str) == id)?
        .pointer("/function/name")?
        .as_str()
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(SUMMARY_RESULT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str) -> Value {
        json!({"type": "function", "function": {"name": name, "parameters": {"type": "object"}}})
    }

    #[test]
    fn directives_are_taken_verbatim_one_per_line() {
        let calls =
            directives("please\n!call a {\"x\": 1}\n  !call b\n!call c {broken\n!callnot d");
        assert_eq!(
            calls,
            vec![
                ScriptedCall::raw("a", "{\"x\": 1}"),
                ScriptedCall::raw("b", "{}"),
                ScriptedCall::raw("c", "{broken"),
            ]
        );
    }

    #[test]
    fn the_tool_sharing_most_words_with_the_text_wins() {
        let tools = [tool("get_weather"), tool("send_email"), tool("send_sms")];
        let pick = |text| best_matching_tool(&tools, text).map(wire::tool_name);
        assert_eq!(pick("Send two emails now"), Some("send_email"));
        assert_eq!(pick("what's the weather like?"), Some("get_weather"));
        assert_eq!(pick("send it"), Some("send_email"));
        assert_eq!(pick("nothing relevant"), None);
    }

    #[test]
    fn summaries_name_each_trailing_result_and_cut_long_ones() {
        let long = "y".repeat(300);
        let messages = json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "fetch", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\":true}"},
            {"role": "tool", "tool_call_id": "c2", "name": "fetch", "content": [{"type": "text", "text": long}]},
        ])
        .to_string();
        let messages: Vec<Message<'_>> = serde_json::from_str(&messages).expect("messages");
        let summary = summarize_tool_results(&messages);
        let expected_tail = format!("fetch returned: {}…", "y".repeat(200));
        assert_eq!(
            summary,
            format!("Done. lookup returned: {{\"ok\":true}}; {expected_tail}")
        );
    }
}
