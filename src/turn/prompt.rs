//! What the model sees: the system prompt (agent instructions, session situation), the
//! conversation (truncated to the session's token budget, or by bytes to fit
//! `limits.max_prompt_bytes`, without splitting a tool call from its result), and the tools on
//! offer.

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

/// The system message for a turn, if there is anything to say. A session's template is
/// rendered up to about `max_bytes`: a template repeating a placeholder cannot multiply the
/// agent's instructions into more than a model request may hold.
pub fn system_message(ctx: &TurnContext, max_bytes: usize) -> Option<ChatMessage> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(template) = ctx
        .system_template
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        parts.push(render(template, ctx, max_bytes));
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

/// `{{agent.name}}`, `{{agent.about}}`, `{{agent.instructions}}` and `{{session.situation}}`
/// (also with a space inside the braces), in one pass: a value is not searched for
/// placeholders again. Stops once the text is over `max_bytes` (the request it goes into is
/// then refused as too large).
fn render(template: &str, ctx: &TurnContext, max_bytes: usize) -> String {
    let instructions = ctx.instructions.join("\n");
    let values = [
        ("agent.name", ctx.agent_name.as_str()),
        ("agent.about", ctx.agent_about.as_str()),
        ("agent.instructions", instructions.as_str()),
        (
            "session.situation",
            ctx.situation.as_deref().unwrap_or_default(),
        ),
    ];
    let mut out = String::with_capacity(template.len().min(max_bytes));
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if out.len() > max_bytes {
            return out;
        }
        out.push_str(&rest[..open]);
        let inside = &rest[open + 2..];
        let placeholder = values.iter().find_map(|(key, value)| {
            let spaced = inside
                .strip_prefix(' ')
                .and_then(|s| s.strip_prefix(key))
                .and_then(|s| s.strip_prefix(" }}"));
            let tight = inside.strip_prefix(key).and_then(|s| s.strip_prefix("}}"));
            tight.or(spaced).map(|after| (*value, after))
        });
        match placeholder {
            Some((value, after)) => {
                out.push_str(value);
                rest = after;
            }
            None => {
                out.push_str("{{");
                rest = inside;
            }
        }
    }
    out.push_str(rest);
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

/// `conversation` without its oldest blocks, dropping just enough of them that their `size`
/// adds up to at least `at_least`. A tool call and its results go together, and the newest
/// block is never dropped: `None` when dropping everything else is not enough.
pub fn drop_oldest<M: Borrow<ChatMessage>>(
    conversation: &[M],
    at_least: usize,
    size: impl Fn(&M) -> usize,
) -> Option<&[M]> {
    let mut start = 0;
    let mut dropped = 0usize;
    while dropped < at_least {
        // The block starting at `start`: a message and the tool results that follow it.
        let mut end = start + 1;
        while end < conversation.len() && conversation[end].borrow().role == Role::Tool {
            end += 1;
        }
        if end >= conversation.len() {
            return None;
        }
        dropped = conversation[start..end]
            .iter()
            .map(&size)
            .fold(dropped, usize::saturating_add);
        start = end;
    }
    Some(&conversation[start..])
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

    #[test]
    fn dropping_by_size_takes_whole_blocks_from_the_front_and_keeps_the_newest() {
        let conversation = vec![
            ChatMessage::text(Role::User, "first"),
            call("c1"),
            ChatMessage::tool_result("c1", "t", "result".into()),
            ChatMessage::text(Role::User, "newest"),
        ];
        let ten = |_: &ChatMessage| 10;
        let kept = drop_oldest(&conversation, 5, ten).unwrap();
        assert_eq!(kept.len(), 3, "one block of 10 covers 5");
        assert_eq!(kept[0].role, Role::Assistant);
        let kept = drop_oldest(&conversation, 11, ten).unwrap();
        assert_eq!(kept.len(), 1, "the call goes with its result");
        assert_eq!(kept[0].content, "newest");
        assert!(
            drop_oldest(&conversation, 31, ten).is_none(),
            "the newest block stays"
        );
        assert_eq!(drop_oldest(&conversation, 0, ten).unwrap().len(), 4);
    }

    #[test]
    fn templates_fill_placeholders_once_and_stop_at_the_size_limit() {
        let ctx = TurnContext {
            agent_name: "Ada".into(),
            agent_about: "{{agent.name}}".into(),
            instructions: vec!["one".into(), "two".into()],
            system_template: Some(
                "{{agent.name}} ({{ agent.about }}): {{agent.instructions}} {{other}} {{".into(),
            ),
            ..TurnContext::default()
        };
        let system = system_message(&ctx, 1 << 20).unwrap();
        assert_eq!(
            system.content, "Ada ({{agent.name}}): one\ntwo {{other}} {{",
            "a value is not rendered again"
        );

        // A placeholder repeated many times over long instructions would multiply them.
        let huge = TurnContext {
            instructions: vec!["x".repeat(10_000)],
            system_template: Some("{{agent.instructions}}".repeat(1_000)),
            ..TurnContext::default()
        };
        let system = system_message(&huge, 64 * 1024).unwrap();
        let text = system.content.as_str().unwrap();
        assert!(
            text.len() > 64 * 1024,
            "over the limit: the request is refused"
        );
        assert!(text.len() <= 64 * 1024 + 10_000, "{}", text.len());
    }
}
