//! What the model sees: the system prompt (agent instructions, session situation), the
//! conversation (truncated to the session's token budget, or by bytes to fit
//! `limits.max_prompt_bytes`, without splitting a tool call from its result), and the tools on
//! offer.

use std::borrow::Borrow;
use std::collections::HashSet;

use serde_json::{Value, json};

use super::{TurnContext, TurnError};
use crate::session::{ChatMessage, Role};
use crate::tool::Catalog;

/// The tools offered for one turn.
#[derive(Debug, Default)]
pub(crate) struct Offer {
    /// OpenAI function definitions, catalog tools first.
    pub definitions: Vec<Value>,
    /// Every offered name.
    pub names: Vec<String>,
    /// Names of tools the caller runs (declared on the agent or in the request, not in the catalog).
    pub client: HashSet<String>,
}

/// Catalog tools offered by default, then agent and request tools. A declared tool named like a
/// catalog tool is the catalog tool (its schema is the one enforced and offered); one named in
/// an MCP server's namespace whose server is not up is not offered at all (it is not the
/// client's to run).
pub(crate) fn offer(catalog: &Catalog, agent_tools: &[Value], request_tools: &[Value]) -> Offer {
    let mut offer = Offer::default();
    for tool in catalog.tools().iter().filter(|t| t.offer) {
        offer.names.push(tool.name.clone());
        offer.definitions.push(tool.definition());
    }
    for declared in agent_tools.iter().chain(request_tools) {
        let Some(name) = declared.get("name").and_then(Value::as_str) else {
            continue;
        };
        if offer.names.iter().any(|n| n == name)
            || (catalog.get(name).is_none() && catalog.is_mcp_name(name))
        {
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

/// The system message for a turn, if there is anything to say: the session's
/// `system_template` rendered, or the agent's name, about and instructions and the session's
/// situation. Longer than `max_bytes` is a 422 for the chat call.
pub(crate) fn system_message(
    ctx: &TurnContext,
    max_bytes: usize,
) -> Result<Option<ChatMessage>, TurnError> {
    let template = ctx
        .system_template
        .as_deref()
        .filter(|t| !t.trim().is_empty());
    // Sized for every field once (the default prompt exactly), so a turn allocates it once.
    let fields = ctx.agent_name.len()
        + ctx.agent_about.len()
        + ctx.instructions.iter().map(|i| i.len() + 2).sum::<usize>()
        + ctx.situation.as_deref().map_or(0, str::len)
        + 16;
    let mut out = Bounded::new(max_bytes, fields + template.map_or(0, str::len));
    let written = match template {
        Some(template) => render(template, ctx, &mut out),
        None => default_prompt(ctx, &mut out),
    };
    written.map_err(|TooLarge| {
        tracing::warn!(
            session_id = %ctx.session_id,
            max_bytes,
            "the system prompt would exceed turn.max_system_prompt_bytes; chat refused"
        );
        TurnError::invalid(
            "system_prompt",
            format!(
                "the system prompt (the session's system_template and situation, the agent's \
                 name, about and instructions) would be longer than {max_bytes} bytes \
                 (turn.max_system_prompt_bytes); shorten them"
            ),
        )
    })?;
    Ok((!out.text.is_empty()).then(|| ChatMessage::text(Role::System, out.text)))
}

/// "You are {name}: {about}", then each instruction, then the situation, a blank line apart.
fn default_prompt(ctx: &TurnContext, out: &mut Bounded) -> Result<(), TooLarge> {
    let mut first = true;
    if !ctx.agent_name.is_empty() {
        out.push_all(&["You are ", &ctx.agent_name])?;
        if !ctx.agent_about.is_empty() {
            out.push_all(&[": ", &ctx.agent_about])?;
        }
        first = false;
    }
    let situation = ctx.situation.as_deref().filter(|s| !s.trim().is_empty());
    for part in ctx.instructions.iter().map(String::as_str).chain(situation) {
        if !first {
            out.push("\n\n")?;
        }
        out.push(part)?;
        first = false;
    }
    Ok(())
}

/// Longest text between `{{` and `}}` that can name a field (`agent.instructions` and spaces).
const MAX_PLACEHOLDER_BYTES: usize = 40;

/// `{{agent.name}}`, `{{agent.about}}`, `{{agent.instructions}}` and `{{session.situation}}`
/// (spaces inside the braces allowed), in one pass over the template: inserted values are
/// never searched for placeholders, so they cannot expand again. Anything else is kept as is.
fn render(template: &str, ctx: &TurnContext, out: &mut Bounded) -> Result<(), TooLarge> {
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push(&rest[..open])?;
        let after = &rest[open + 2..];
        // Only a short window is searched for the closing braces, so a template of many `{{`
        // costs one pass, not one pass per brace.
        let window = &after.as_bytes()[..after.len().min(MAX_PLACEHOLDER_BYTES + 2)];
        let field = window
            .windows(2)
            .position(|pair| pair == b"}}")
            .and_then(|close| Some((close, field_value(&after[..close], ctx)?)));
        match field {
            Some((close, value)) => {
                value.write(out)?;
                rest = &after[close + 2..];
            }
            None => {
                // Not a field: keep one brace and look again from the next, so `{{{agent.name}}`
                // still fills the field after its first brace.
                out.push("{")?;
                rest = &rest[open + 1..];
            }
        }
    }
    out.push(rest)
}

/// The value a placeholder stands for.
enum FieldValue<'a> {
    Text(&'a str),
    Lines(&'a [String]),
}

impl FieldValue<'_> {
    fn write(&self, out: &mut Bounded) -> Result<(), TooLarge> {
        match self {
            FieldValue::Text(text) => out.push(text),
            FieldValue::Lines(lines) => {
                for (i, line) in lines.iter().enumerate() {
                    if i > 0 {
                        out.push("\n")?;
                    }
                    out.push(line)?;
                }
                Ok(())
            }
        }
    }
}

fn field_value<'a>(name: &str, ctx: &'a TurnContext) -> Option<FieldValue<'a>> {
    Some(match name.trim_matches(' ') {
        "agent.name" => FieldValue::Text(&ctx.agent_name),
        "agent.about" => FieldValue::Text(&ctx.agent_about),
        "agent.instructions" => FieldValue::Lines(&ctx.instructions),
        "session.situation" => FieldValue::Text(ctx.situation.as_deref().unwrap_or_default()),
        _ => return None,
    })
}

/// The system prompt hit its size limit.
struct TooLarge;

/// A string that refuses to grow past a limit.
struct Bounded {
    text: String,
    max: usize,
}

impl Bounded {
    fn new(max: usize, expected: usize) -> Self {
        Self {
            text: String::with_capacity(expected.min(max)),
            max,
        }
    }

    fn push(&mut self, part: &str) -> Result<(), TooLarge> {
        if self.text.len() + part.len() > self.max {
            return Err(TooLarge);
        }
        self.text.push_str(part);
        Ok(())
    }

    fn push_all(&mut self, parts: &[&str]) -> Result<(), TooLarge> {
        parts.iter().try_for_each(|part| self.push(part))
    }
}

/// A rough token count: four characters a token, plus framing.
pub(crate) fn estimate_tokens(message: &ChatMessage) -> u64 {
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
pub(crate) fn truncate<M: Borrow<ChatMessage>>(conversation: &[M], budget: u64) -> &[M] {
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
pub(crate) fn drop_oldest<M: Borrow<ChatMessage>>(
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

    fn context(template: Option<&str>) -> TurnContext {
        TurnContext {
            agent_name: "Ada".into(),
            agent_about: "a helper".into(),
            instructions: vec!["Be brief.".into(), "Be kind.".into()],
            situation: Some("Support desk".into()),
            system_template: template.map(str::to_owned),
            ..TurnContext::default()
        }
    }

    fn system_text(ctx: &TurnContext, max: usize) -> Result<String, TurnError> {
        Ok(system_message(ctx, max)?
            .map(|m| m.content.as_str().unwrap_or_default().to_owned())
            .unwrap_or_default())
    }

    #[test]
    fn template_fields_are_filled_and_other_braces_kept() {
        let ctx = context(Some(
            "{{agent.name}} ({{ agent.about }}): {{agent.instructions}} | {{session.situation}} \
             {{user.name}} {{{agent.name}}} {{agent.name",
        ));
        assert_eq!(
            system_text(&ctx, 1 << 16).unwrap(),
            "Ada (a helper): Be brief.\nBe kind. | Support desk {{user.name}} {Ada} {{agent.name"
        );
        let ctx = context(None);
        assert_eq!(
            system_text(&ctx, 1 << 16).unwrap(),
            "You are Ada: a helper\n\nBe brief.\n\nBe kind.\n\nSupport desk"
        );
    }

    #[test]
    fn inserted_values_are_never_expanded_again() {
        // Each value names the others: expanding values again multiplies the text with every
        // field (11 KB of such input used to render 100 MB on every turn).
        let nested = "{{agent.about}}{{agent.instructions}}{{session.situation}}".repeat(50);
        let ctx = TurnContext {
            agent_name: nested.clone(),
            agent_about: nested.clone(),
            instructions: vec![nested.clone(); 2],
            situation: Some(nested.clone()),
            system_template: Some("{{agent.name}}|{{agent.about}}".into()),
            ..TurnContext::default()
        };
        let text = system_text(&ctx, 1 << 20).unwrap();
        assert_eq!(text, format!("{nested}|{nested}"));
    }

    #[test]
    fn the_system_prompt_is_capped() {
        let ctx = context(Some("{{agent.about}}{{agent.about}}"));
        let exact = "a helper".len() * 2;
        assert_eq!(system_text(&ctx, exact).unwrap(), "a helpera helper");
        let err = system_text(&ctx, exact - 1).unwrap_err();
        assert!(
            matches!(&err, TurnError::Invalid { loc, msg } if loc == "system_prompt" && msg.contains("turn.max_system_prompt_bytes")),
            "{err:?}"
        );
        // Without a template, the agent's and session's text is capped the same way.
        let ctx = context(None);
        let full = system_text(&ctx, 1 << 16).unwrap();
        assert!(system_text(&ctx, full.len()).is_ok());
        assert!(system_text(&ctx, full.len() - 1).is_err());
    }

    #[test]
    fn a_template_of_open_braces_renders_unchanged() {
        let template = format!("{}x{}", "{".repeat(60_000), "}".repeat(10));
        let ctx = context(Some(&template));
        assert_eq!(system_text(&ctx, 1 << 20).unwrap(), template);
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
}
