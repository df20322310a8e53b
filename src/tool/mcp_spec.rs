//! What an `[[mcp]]` entry of tools.toml declares: one MCP server whose tools agentd offers,
//! validates and runs like its own, and how to reach it (a command speaking MCP over stdio,
//! or a streamable HTTP endpoint). Compiled by the catalog; run by the daemon's MCP supervisor.

use std::time::Duration;

use agentd_sdk::SecretRef;

/// The separator between a server's name and its tool's name in the name the model sees
/// (`everything__echo`).
pub const MCP_NAME_SEPARATOR: &str = "__";

/// One declared MCP server. Two specs are equal when nothing about the server changed, which
/// is what a reload compares to decide whether to restart it.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerSpec {
    /// Prefix of its tools' names.
    pub name: String,
    pub transport: McpTransport,
    /// Only these tools (server-side names) are taken; `None` takes every tool listed.
    pub allow: Option<Vec<String>>,
    /// Offered to the model on every chat unless the request says otherwise (as for `[[tool]]`).
    pub offer: bool,
    /// Per call.
    pub timeout: Duration,
    /// For starting (or connecting), initializing and listing tools.
    pub start_timeout: Duration,
    /// Calls of each of its tools allowed to run at once.
    pub concurrency: usize,
    /// Tools taken from its listing at most; the rest are left out (and logged).
    pub max_tools: usize,
    /// Largest definition (name, description and input schema as JSON) a tool may have.
    pub max_tool_bytes: usize,
    /// When a call of one of its tools must wait for a person's approval.
    pub approval: super::approval::ApprovalSpec,
}

impl McpServerSpec {
    /// The name the model sees for the server's tool `tool`.
    pub fn tool_name(&self, tool: &str) -> String {
        format!("{}{MCP_NAME_SEPARATOR}{tool}", self.name)
    }

    /// Whether the listing's tool `tool` is taken.
    pub fn allows(&self, tool: &str) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|allow| allow.iter().any(|a| a == tool))
    }
}

/// How agentd talks to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum McpTransport {
    /// A child process speaking MCP on its stdin and stdout; its stderr goes to the log.
    Stdio {
        /// Program and arguments (the program is looked up on `PATH`).
        command: Vec<String>,
        /// Set for the child on top of the few variables it inherits.
        env: Vec<(String, SettingValue)>,
    },
    /// A streamable HTTP endpoint.
    Http {
        url: String,
        /// Sent with every request (for example `Authorization` from a secret reference).
        headers: Vec<(String, SettingValue)>,
    },
}

/// An environment variable or header value: written in the file, or a secret reference
/// resolved each time the server is started.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    Plain(String),
    Secret(SecretRef),
}

impl SettingValue {
    /// The value to use now.
    pub fn resolve(&self) -> Result<String, agentd_sdk::SecretError> {
        match self {
            SettingValue::Plain(value) => Ok(value.clone()),
            SettingValue::Secret(reference) => agentd_sdk::resolve_secret(reference),
        }
    }
}

/// `true` for a server name: 1 to 32 characters from a-z, A-Z, 0-9, `_` and `-`, without the
/// name separator in it (so a tool name splits back into server and tool one way only).
pub fn is_valid_server_name(name: &str) -> bool {
    name.len() <= 32 && !name.contains(MCP_NAME_SEPARATOR) && super::is_valid_tool_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_cannot_hold_the_separator() {
        assert!(is_valid_server_name("everything"));
        assert!(is_valid_server_name("my-server_2"));
        assert!(!is_valid_server_name("a__b"));
        assert!(!is_valid_server_name(""));
        assert!(!is_valid_server_name("has space"));
        assert!(!is_valid_server_name(&"x".repeat(33)));
    }
}
