//! The stored agent tool: an OpenAI function definition, its name and description also kept at
//! the top level. The stored body is what a turn offers the model for a client tool.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Text;

/// A tool declared on an agent, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AgentToolRecord<'a> {
    #[serde(rename = "type", default)]
    pub kind: ToolKind,
    #[serde(borrow, default)]
    pub name: Text<'a>,
    #[serde(borrow, default)]
    pub description: Text<'a>,
    #[serde(borrow, default)]
    pub function: FunctionRecord<'a>,
}

/// The only kind of declared tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToolKind {
    #[default]
    Function,
}

/// The function of a declared tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FunctionRecord<'a> {
    #[serde(borrow, default)]
    pub name: Text<'a>,
    #[serde(borrow, default)]
    pub description: Text<'a>,
    /// A JSON Schema object for the arguments.
    #[serde(default = "no_parameters")]
    pub parameters: Value,
}

impl Default for FunctionRecord<'_> {
    fn default() -> Self {
        Self {
            name: Text::default(),
            description: Text::default(),
            parameters: no_parameters(),
        }
    }
}

/// The schema of a function declared without one: no arguments.
pub(crate) fn no_parameters() -> Value {
    json!({"type": "object", "properties": {}})
}

/// Changes to a declared tool; `None` keeps a field. The function's name and description are
/// applied first, then the top-level ones, which change both copies.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ToolPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub function_name: Option<String>,
    pub function_description: Option<String>,
    pub parameters: Option<Value>,
}

impl AgentToolRecord<'_> {
    /// A tool of this name, description and parameters, both copies of the text equal.
    pub(crate) fn new(name: String, description: String, parameters: Value) -> Self {
        Self {
            kind: ToolKind::Function,
            name: Text::from(name.clone()),
            description: Text::from(description.clone()),
            function: FunctionRecord {
                name: Text::from(name),
                description: Text::from(description),
                parameters,
            },
        }
    }

    pub(crate) fn apply(&mut self, patch: ToolPatch) {
        let function = &mut self.function;
        let name = patch.name.or(patch.function_name);
        let description = patch.description.or(patch.function_description);
        if let Some(name) = name {
            function.name = Text::from(name);
        }
        if let Some(description) = description {
            function.description = Text::from(description);
        }
        if let Some(parameters) = patch.parameters {
            function.parameters = parameters;
        }
        self.name = function.name.clone();
        self.description = function.description.clone();
    }
}
