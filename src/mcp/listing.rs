//! A server's `tools/list`, paged and bounded, turned into catalog tools: the allowlist
//! applied, names prefixed, each definition's size capped, each input schema checked against
//! its meta-schema and compiled (off the async workers), so the server's tools are enforced
//! exactly like tools.toml's. A tool that fails a check is left out and logged.

use std::sync::Arc;

use rmcp::RoleClient;
use rmcp::model::{PaginatedRequestParams, Tool};
use rmcp::service::Peer;
use serde_json::Value;

use super::call::McpToolHandler;
use super::server::Server;
use crate::tool::{CatalogTool, is_valid_tool_name};

/// Lists the server's tools (every page, up to `max_tools`) and compiles those it may offer.
pub(super) async fn list(
    server: &Arc<Server>,
    peer: &Peer<RoleClient>,
) -> Result<Vec<Arc<CatalogTool>>, String> {
    let spec = &server.spec;
    let mut listed: Vec<Tool> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = peer
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .map_err(|e| format!("tools/list failed: {e}"))?;
        let empty = page.tools.is_empty();
        listed.extend(page.tools);
        cursor = page.next_cursor;
        if empty && cursor.is_some() {
            tracing::warn!(mcp_server = %spec.name, "the server sent an empty page with a cursor; listing stopped there");
            break;
        }
        if listed.len() > spec.max_tools {
            tracing::warn!(
                mcp_server = %spec.name,
                max_tools = spec.max_tools,
                "the server lists more tools than max_tools; the rest are left out"
            );
            listed.truncate(spec.max_tools);
            break;
        }
        if cursor.is_none() {
            break;
        }
    }
    if let Some(allow) = &spec.allow {
        for wanted in allow {
            if !listed.iter().any(|t| t.name == wanted.as_str()) {
                tracing::warn!(mcp_server = %spec.name, tool = %wanted, "tool named in `tools` is not listed by the server");
            }
        }
    }
    let server_for_compile = Arc::clone(server);
    tokio::task::spawn_blocking(move || compile_all(&server_for_compile, listed))
        .await
        .map_err(|e| format!("compiling the tools' schemas failed: {e}"))
}

fn compile_all(server: &Arc<Server>, listed: Vec<Tool>) -> Vec<Arc<CatalogTool>> {
    listed
        .into_iter()
        .filter(|tool| server.spec.allows(&tool.name))
        .filter_map(|tool| match compile(server, &tool) {
            Ok(tool) => Some(Arc::new(tool)),
            Err(problem) => {
                tracing::warn!(mcp_server = %server.spec.name, tool = %tool.name, %problem, "tool left out");
                None
            }
        })
        .collect()
}

fn compile(server: &Arc<Server>, tool: &Tool) -> Result<CatalogTool, String> {
    let spec = &server.spec;
    let name = spec.tool_name(&tool.name);
    if !is_valid_tool_name(&name) {
        return Err(format!(
            "`{name}` is not a function name models accept (1 to 64 characters from a-z, A-Z, \
             0-9, `_` and `-`)"
        ));
    }
    let size = serde_json::to_vec(tool).map_or(usize::MAX, |json| json.len());
    if size > spec.max_tool_bytes {
        return Err(format!(
            "its definition is {size} bytes, over max_tool_bytes ({})",
            spec.max_tool_bytes
        ));
    }
    let schema = Value::Object((*tool.input_schema).clone());
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err("inputSchema: not an object schema (`type: object`)".into());
    }
    let meta = jsonschema::meta::validator_for(&schema)
        .map_err(|e| format!("inputSchema: cannot find its meta-schema: {e}"))?;
    if let Some(error) = meta.iter_errors(&schema).next() {
        return Err(format!(
            "inputSchema{}: not a valid JSON Schema: {error}",
            error.instance_path()
        ));
    }
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| format!("inputSchema: cannot compile: {e}"))?;
    let description = tool
        .description
        .as_deref()
        .or(tool.title.as_deref())
        .unwrap_or_default()
        .to_owned();
    Ok(CatalogTool {
        handler_name: format!("mcp:{}", spec.name),
        handler: Arc::new(McpToolHandler::new(Arc::clone(server), &tool.name)),
        concurrency: server.permit_for(&tool.name),
        timeout: spec.timeout,
        offer: spec.offer,
        approval: spec.approval.compile(),
        name,
        description,
        parameters: schema,
        validator,
    })
}
