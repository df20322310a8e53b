//! What the model sees: the system prompt (agent instructions, session situation), the
//! conversation (truncated to the session's token budget without splitting a tool call from
//! its result), and the tools on offer.

use std::borrow::Borrow;
use std::collections::HashSet;

use serde_json::{Value, json};

use super::TurnContext;
use crate::session::{ChatMessage, Role};
use crate::tool::Catalog;

/// The tools offered for one turn.
#[derive(Debug, Default)]
pub struct Offer {
    /// OpenAI function definitions, catalog tools first.
    pub definitions: Vec<Value>,
    /// Every offered name.
    pub names: Vec<String>,
    /// Names of tools the caller runs (declared on the agent or in the request, not in the catalog).
    pub client: HashSet<String>,
}

/// Catalog tools offered by default, then agent and request tools. A declared tool named like a
/// catalog tool is the catalog tool (its schema is the one enforced and offered).
pub fn offer(catalog: &Catalog, agent_tools: &[Value], request_tools: &[Value]) -> Offer {
    let mut offer = Offer::default();
    for tool in catalog.tools().iter().filter(|t| t.offer) {
        offer.names.push(tool.name.clone());
        offer.definitions.push(tool.definition());
    }
    for declared in agent_tools.iter().chain(request_tools) {
        let Some(name) = declared.get("name").and_then(Value::as_str) else {
            continue;
        };
        if offer.names.iter().any(|n| n == name) {
            continue;
        }
        offer.names.push(name.to_owned());
        match catalog.get(name) {
            Some(tool) => offer.definitions.push(tool.definition()),
            None => {
                offer.client.insert(name.to_owned());
                offer.definitions.push(json!({
                    "type": "function",
                    "function": declared.get("function").cloned().unwrap_or_else(|| json!({ "name": name })),
                }));
            }
        }
    }
    offer
}

/// The system message for a turn, if there is anything to say.
pub fn system_message(ctx: &TurnContext) -> Option<ChatMessage> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(template) = ctx
        .system_template
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        parts.push(render(template, ctx));
    } else {
        if !ctx.agent_name.is_empty() {
            let about = if ctx.agent_about.is_empty() {
                String::new()
            } else {
                format!(": {}", ctx.agent_about)
            };
            parts.push(format!("You are {}{about}", ctx.agent_name));
        }
        parts.extend(ctx.instructions.iter().cloned());
        if let Some(situation) = ctx.situation.as_deref().filter(|s| !s.trim().is_empty()) {
            parts.push(situation.to_owned());
        }
    }
    (!parts.is_empty()).then(|| ChatMessage::text(Role::System, parts.join("\n\n")))
}

/// `{{agent.name}}`, `{{agent.about}}`, `{{agent.instructions}}` and `{{session.situation}}`.
fn render(template: &str, ctx: &TurnContext) -> String {
    let mut out = template.to_owned();
    for (key, value) in [
        ("agent.name", ctx.agent_name.clone()),
        ("agent.about", ctx.agent_about.clone()),
        ("agent.instructions", ctx.instructions.join("\n")),
        (
            "session.situation",
            ctx.situation.clone().unwrap_or_default(),
        ),
    ] {
        for pattern in [format!("{{{{{key}}}}}"), format!("{{{{ {key} }}}}")] {
            out = out.replace(&pattern, &value);
        }
    }
    out
}

/// A rough token count: four characters a token, plus framing.
pub fn estimate_tokens(message: &ChatMessage) -> u64 {
    let mut chars = match &message.content {
        Value::String(s) => s.len(),
        Value::Null => 0,
        other => other.to_string().len(),
    };
    for call in message.calls() {
        chars += call.function.name.len() + call.function.arguments.len() + 16;
    }
    (chars as u64).div_ceil(4) + 4
}

/// The newest part of `conversation` that fits `budget` tokens. A tool call and its results
/// are kept or dropped together, and the newest block is always kept.
pub fn truncate<M: Borrow<ChatMessage>>(conversation: &[M], budget: u64) -> &[M] {
    let mut start = conversation.len();
    let mut used = 0u64;
    while start > 0 {
        // The block ending at `start`: trailing tool results belong to the call before them.
        let mut block_start = start - 1;
        while block_start > 0 && conversation[block_start].borrow().role == Role::Tool {
            block_start -= 1;
        }
        let cost: u64 = conversation[block_start..start]
            .iter()
            .map(|message| estimate_tokens(message.borrow()))
            .sum();
        if used + cost > budget && start != conversation.len() {
            break;
        }
        used += cost;
        start = block_start;
    }
    &conversation[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{FunctionCall, ToolCallRequest};

    fn call(id: &str) -> ChatMessage {
        ChatMessage {
            tool_calls: Some(vec![ToolCallRequest {
                id: id.into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "t".into(),
                    arguments: "{}".into(),
                },
            }]),
            ..ChatMessage::text(Role::Assistant, "")
        }
    }

    #[test]
    fn truncation_keeps_newest_and_never_splits_a_call_from_its_result() {
        let long = "x".repeat(400); // ~104 tokens
        let conversation = vec![
            ChatMessage::text(Role::User, long.clone()),
            call("c1"),
            ChatMessage::tool_result("c1", "t", long.clone()),
            ChatMessage::text(Role::User, "short"),
        ];
        let kept = truncate(&conversation, 20);
        assert_eq!(kept.len(), 1, "only the newest message fits");
        let kept = truncate(&conversation, 150);
        assert_eq!(kept.len(), 3, "the call and its result come together");
        assert_eq!(kept[0].role, Role::Assistant);
        assert_eq!(truncate(&conversation, 10_000).len(), 4);
        // Even a block larger than the budget is kept when it is the newest.
        assert_eq!(truncate(&conversation[..3], 5).len(), 2);
    }
}
