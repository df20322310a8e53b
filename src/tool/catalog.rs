//! tools.toml → a compiled [`Catalog`]: deserialize (unknown fields rejected, line/column in
//! errors), then compile every schema once and resolve every handler, reporting all problems.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentd_sdk::ToolHandler;
use serde_json::Value;

use super::mcp_spec::McpServerSpec;
use super::registry::Registry;

/// One compiled server tool.
pub struct CatalogTool {
    pub name: String,
    pub description: String,
    /// The JSON Schema of the arguments, as declared.
    pub parameters: Value,
    /// The compiled schema.
    pub validator: jsonschema::Validator,
    /// The handler name from tools.toml (`smtp`, `http`, ...).
    pub handler_name: String,
    pub handler: Arc<dyn ToolHandler>,
    pub timeout: Duration,
    /// Calls of this tool allowed to run at once across the daemon.
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// Offered to the model on every chat unless the request says otherwise.
    pub offer: bool,
    /// When a call must wait for a person's approval before it runs.
    pub approval: super::approval::ApprovalPolicy,
}

impl CatalogTool {
    /// The tool in OpenAI function form, as offered to the model.
    pub fn definition(&self) -> Value {
        serde_json::json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }
}

/// Every problem found in a catalog, one line each (`tools.toml:12:3: ...`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct CatalogError {
    pub problems: Vec<String>,
}

/// The compiled catalog. Immutable; a reload builds a new one and swaps it in.
#[derive(Default)]
pub struct Catalog {
    tools: Vec<Arc<CatalogTool>>,
    index: HashMap<String, usize>,
    /// The `[[mcp]]` servers declared beside the tools; their tools join a catalog derived
    /// from this one while they run ([`Catalog::with_tools`]).
    mcp_servers: Vec<McpServerSpec>,
}

impl Catalog {
    /// Reads and compiles a tools.toml file; relative `parameters_file` paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path, registry: &Registry) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError {
            problems: vec![format!("{}: {e}", path.display())],
        })?;
        Self::parse(&text, path, registry)
    }

    /// Compiles catalog text. `origin` names the file in messages and anchors relative paths.
    pub fn parse(text: &str, origin: &Path, registry: &Registry) -> Result<Self, CatalogError> {
        super::catalog_compile::compile(text, origin, registry)
    }

    pub fn from_tools(tools: Vec<CatalogTool>) -> Self {
        Self::from_shared(tools.into_iter().map(Arc::new).collect(), Vec::new())
    }

    fn from_shared(tools: Vec<Arc<CatalogTool>>, mcp_servers: Vec<McpServerSpec>) -> Self {
        let index = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Self {
            tools,
            index,
            mcp_servers,
        }
    }

    /// The same catalog declaring `servers`.
    pub fn with_mcp_servers(mut self, servers: Vec<McpServerSpec>) -> Self {
        self.mcp_servers = servers;
        self
    }

    /// This catalog's tools followed by `extra` (the tools of running MCP servers). A name
    /// already in the catalog keeps the catalog's tool.
    pub fn with_tools(&self, extra: impl IntoIterator<Item = Arc<CatalogTool>>) -> Self {
        let mut tools = self.tools.clone();
        tools.extend(extra.into_iter().filter(|t| self.get(&t.name).is_none()));
        Self::from_shared(tools, self.mcp_servers.clone())
    }

    /// Whether `name` is in the namespace of a declared MCP server (`<server>__...`): such a
    /// name is never a tool the client runs, even while the server is down.
    pub fn is_mcp_name(&self, name: &str) -> bool {
        self.mcp_servers.iter().any(|server| {
            name.strip_prefix(server.name.as_str())
                .is_some_and(|rest| rest.starts_with(super::mcp_spec::MCP_NAME_SEPARATOR))
        })
    }

    /// The declared `[[mcp]]` servers.
    pub fn mcp_servers(&self) -> &[McpServerSpec] {
        &self.mcp_servers
    }

    pub fn get(&self, name: &str) -> Option<&Arc<CatalogTool>> {
        self.index.get(name).map(|&i| &self.tools[i])
    }

    pub fn tools(&self) -> &[Arc<CatalogTool>] {
        &self.tools
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}
