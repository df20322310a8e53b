//! Stage two for `[[mcp]]` entries: each checked (name, one transport, values, limits) and
//! turned into an [`McpServerSpec`]; the server itself is started by the daemon, not here.

use std::ops::Range;
use std::time::Duration;

use agentd_sdk::{PositiveDuration, SecretRef};
use serde::Deserialize;
use toml::Spanned;

use super::catalog_compile::{Compiler, Defaults};
use super::catalog_raw::{RawMcp, RawTool};
use super::mcp_spec::{
    MCP_NAME_SEPARATOR, McpServerSpec, McpTransport, SettingValue, is_valid_server_name,
};

/// Used when an entry sets no `start_timeout`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Used when an entry sets no `max_tools`.
pub const DEFAULT_MAX_TOOLS: usize = 256;
/// Used when an entry sets no `max_tool_bytes`.
pub const DEFAULT_MAX_TOOL_BYTES: usize = 64 * 1024;
const MAX_MAX_TOOLS: i64 = 10_000;
const MAX_MAX_TOOL_BYTES: i64 = 16 * 1024 * 1024;

impl Compiler<'_> {
    /// Every `[[mcp]]` entry, checked; entries with problems are left out (and reported).
    pub(super) fn mcp_servers(
        &mut self,
        raw: &[RawMcp],
        tools: &[RawTool],
        defaults: &Defaults,
    ) -> Vec<McpServerSpec> {
        let mut servers: Vec<McpServerSpec> = Vec::new();
        for entry in raw {
            let name = entry.name.get_ref();
            if servers.iter().any(|s| &s.name == name) {
                self.mcp_problem(entry.name.span(), name, "duplicate mcp server name");
                continue;
            }
            let prefix = format!("{name}{MCP_NAME_SEPARATOR}");
            if let Some(tool) = tools.iter().find(|t| t.name.get_ref().starts_with(&prefix)) {
                let tool_name = tool.name.get_ref();
                self.mcp_problem(
                    tool.name.span(),
                    name,
                    format!(
                        "tool `{tool_name}` uses the prefix `{prefix}` of this server's tools; \
                         rename one of them"
                    ),
                );
            }
            if let Some(server) = self.mcp_server(entry, defaults) {
                servers.push(server);
            }
        }
        servers
    }

    fn mcp_problem(&mut self, span: Range<usize>, server: &str, message: impl AsRef<str>) {
        let message = format!("mcp server `{server}`: {}", message.as_ref());
        self.problem(span, None, message);
    }

    fn mcp_server(&mut self, raw: &RawMcp, defaults: &Defaults) -> Option<McpServerSpec> {
        let before = self.problems.len();
        let name = raw.name.get_ref().as_str();
        if !is_valid_server_name(name) {
            self.mcp_problem(
                raw.name.span(),
                name,
                format!(
                    "invalid name: use 1 to 32 characters from a-z, A-Z, 0-9, `_` and `-`, \
                     without `{MCP_NAME_SEPARATOR}`"
                ),
            );
        }
        let transport = self.mcp_transport(raw, name);
        if let Some(allow) = &raw.tools
            && allow.get_ref().is_empty()
        {
            self.mcp_problem(
                allow.span(),
                name,
                "tools: an empty list takes no tool; leave `tools` out to take all of them",
            );
        }
        let timeout = self.mcp_duration(raw.timeout.as_ref(), name, "timeout");
        let start_timeout = self.mcp_duration(raw.start_timeout.as_ref(), name, "start_timeout");
        let concurrency = self.mcp_count(raw.concurrency.as_ref(), name, "concurrency", 1_000_000);
        let max_tools = self.mcp_count(raw.max_tools.as_ref(), name, "max_tools", MAX_MAX_TOOLS);
        let approval = self.approval(raw.approval.as_ref(), &format!("mcp server `{name}`"));
        let max_tool_bytes = self.mcp_count(
            raw.max_tool_bytes.as_ref(),
            name,
            "max_tool_bytes",
            MAX_MAX_TOOL_BYTES,
        );
        if self.problems.len() > before {
            return None;
        }
        Some(McpServerSpec {
            name: name.to_owned(),
            transport: transport?,
            allow: raw.tools.as_ref().map(|t| t.get_ref().clone()),
            offer: raw.offer,
            timeout: timeout.unwrap_or(defaults.timeout),
            start_timeout: start_timeout.unwrap_or(DEFAULT_START_TIMEOUT),
            concurrency: concurrency.unwrap_or(defaults.concurrency),
            max_tools: max_tools.unwrap_or(DEFAULT_MAX_TOOLS),
            max_tool_bytes: max_tool_bytes.unwrap_or(DEFAULT_MAX_TOOL_BYTES),
            approval: approval?,
        })
    }

    fn mcp_transport(&mut self, raw: &RawMcp, name: &str) -> Option<McpTransport> {
        match (&raw.command, &raw.url) {
            (Some(command), None) => {
                if raw.headers.is_some() {
                    self.mcp_problem(
                        raw.name.span(),
                        name,
                        "headers: only for a server reached by `url`",
                    );
                }
                let program = command.get_ref().first().map(String::as_str);
                if program.is_none_or(|p| p.trim().is_empty()) {
                    self.mcp_problem(
                        command.span(),
                        name,
                        "command: give the program and its arguments, e.g. [\"npx\", \"-y\", \"package\"]",
                    );
                    return None;
                }
                let env = self.mcp_values(raw.env.as_ref(), name, "env", valid_env_name)?;
                Some(McpTransport::Stdio {
                    command: command.get_ref().clone(),
                    env,
                })
            }
            (None, Some(url)) => {
                if raw.env.is_some() {
                    self.mcp_problem(
                        raw.name.span(),
                        name,
                        "env: only for a server started by `command`",
                    );
                }
                let parsed = reqwest::Url::parse(url.get_ref());
                if !parsed
                    .as_ref()
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                {
                    self.mcp_problem(
                        url.span(),
                        name,
                        "url: must be an http:// or https:// URL of the server's MCP endpoint",
                    );
                    return None;
                }
                let headers = self.mcp_values(raw.headers.as_ref(), name, "headers", |h| {
                    reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_ok()
                })?;
                Some(McpTransport::Http {
                    url: url.get_ref().clone(),
                    headers,
                })
            }
            (Some(_), Some(url)) => {
                self.mcp_problem(url.span(), name, "set either `command` or `url`, not both");
                None
            }
            (None, None) => {
                self.mcp_problem(
                    raw.name.span(),
                    name,
                    "missing `command` (a server over stdio) or `url` (over streamable HTTP)",
                );
                None
            }
        }
    }

    /// `env` or `headers`: each value a string, or a secret reference.
    fn mcp_values(
        &mut self,
        raw: Option<&Spanned<toml::Table>>,
        name: &str,
        what: &str,
        valid_key: impl Fn(&str) -> bool,
    ) -> Option<Vec<(String, SettingValue)>> {
        let Some(table) = raw else {
            return Some(Vec::new());
        };
        let mut values = Vec::new();
        let mut ok = true;
        for (key, value) in table.get_ref() {
            if !valid_key(key) {
                self.mcp_problem(table.span(), name, format!("{what}: invalid name `{key}`"));
                ok = false;
                continue;
            }
            let value = match value {
                toml::Value::String(plain) => SettingValue::Plain(plain.clone()),
                toml::Value::Table(_) => match SecretRef::deserialize(value.clone()) {
                    Ok(reference) => SettingValue::Secret(reference),
                    Err(error) => {
                        self.mcp_problem(table.span(), name, format!("{what}.{key}: {error}"));
                        ok = false;
                        continue;
                    }
                },
                _ => {
                    self.mcp_problem(
                        table.span(),
                        name,
                        format!(
                            "{what}.{key}: expected a string or a secret reference \
                             ({{ credential = \"name\" }}, {{ file = \"/path\" }} or {{ env = \"VARIABLE\" }})"
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            values.push((key.clone(), value));
        }
        ok.then_some(values)
    }

    fn mcp_duration(
        &mut self,
        raw: Option<&Spanned<String>>,
        name: &str,
        what: &str,
    ) -> Option<Duration> {
        let raw = raw?;
        match PositiveDuration::parse(raw.get_ref()) {
            Ok(duration) => Some(duration.get()),
            Err(message) => {
                self.mcp_problem(raw.span(), name, format!("{what}: {message}"));
                None
            }
        }
    }

    fn mcp_count(
        &mut self,
        raw: Option<&Spanned<i64>>,
        name: &str,
        what: &str,
        max: i64,
    ) -> Option<usize> {
        let raw = raw?;
        let value = *raw.get_ref();
        if (1..=max).contains(&value) {
            usize::try_from(value).ok()
        } else {
            self.mcp_problem(
                raw.span(),
                name,
                format!("{what}: must be between 1 and {max}, got {value}"),
            );
            None
        }
    }
}

/// A portable environment variable name.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
