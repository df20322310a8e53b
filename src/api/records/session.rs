//! The stored session: participants, situation, system template, token budget and overflow
//! policy, tool defaults, metadata.

use serde::{Deserialize, Serialize};

use super::{Object, Text, merge, set, texts};

/// A session as stored. `M` is how `metadata` is read: the whole object by default; a turn
/// leaves it [`Unread`](super::Unread).
///
/// `situation`, `token_budget` and `context_overflow` are stored as `null` when unset;
/// `system_template` and the tool flags are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "M: Serialize",
    deserialize = "M: Deserialize<'de> + Default"
))]
pub(crate) struct SessionRecord<'a, M = Object> {
    /// Agent ids, in order, without duplicates; the first answers unless a chat names another.
    #[serde(borrow, default)]
    pub agents: Vec<Text<'a>>,
    #[serde(borrow, default)]
    pub users: Vec<Text<'a>>,
    #[serde(borrow, default)]
    pub situation: Option<Text<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub system_template: Option<Text<'a>>,
    #[serde(default)]
    pub metadata: M,
    /// Keep only the newest history that fits this many tokens.
    #[serde(default)]
    pub token_budget: Option<u64>,
    #[serde(default)]
    pub context_overflow: Option<ContextOverflow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_templates: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_run_tools: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_tool_calls: Option<bool>,
}

/// What a turn does with a prompt over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ContextOverflow {
    /// Drop the oldest messages.
    Truncate,
}

/// Changes to a session; `None` keeps a field, `metadata` is merged key by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SessionPatch {
    pub agents: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
    pub situation: Option<String>,
    pub system_template: Option<String>,
    pub metadata: Option<Object>,
    pub token_budget: Option<u64>,
    pub context_overflow: Option<ContextOverflow>,
    pub render_templates: Option<bool>,
    pub auto_run_tools: Option<bool>,
    pub forward_tool_calls: Option<bool>,
}

impl SessionRecord<'_> {
    pub(crate) fn apply(&mut self, patch: SessionPatch) {
        set(&mut self.agents, patch.agents.map(texts));
        set(&mut self.users, patch.users.map(texts));
        set(
            &mut self.situation,
            patch.situation.map(|s| Some(Text::from(s))),
        );
        set(
            &mut self.system_template,
            patch.system_template.map(|s| Some(Text::from(s))),
        );
        merge(&mut self.metadata, patch.metadata);
        set(&mut self.token_budget, patch.token_budget.map(Some));
        set(&mut self.context_overflow, patch.context_overflow.map(Some));
        set(&mut self.render_templates, patch.render_templates.map(Some));
        set(&mut self.auto_run_tools, patch.auto_run_tools.map(Some));
        set(
            &mut self.forward_tool_calls,
            patch.forward_tool_calls.map(Some),
        );
    }
}

impl<M> SessionRecord<'_, M> {
    /// The Julep session kind, from the number of agents and users.
    pub(crate) fn kind(&self) -> &'static str {
        match (self.agents.len(), self.users.len()) {
            (1, 0) => "single_agent",
            (1, 1) => "single_agent_single_user",
            (1, _) => "single_agent_multi_user",
            (_, 0) => "multi_agent_no_user",
            (_, 1) => "multi_agent_single_user",
            _ => "multi_agent_multi_user",
        }
    }
}
