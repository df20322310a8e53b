//! One MCP tool call: `tools/call` on the server's live connection, `notifications/cancelled`
//! sent when the call is given up (timeout, cancelled turn), and the server's answer turned
//! into a tool result: text as text, structured content as JSON, images, audio and resources
//! described in a line each; `isError`, protocol errors and a lost server as error results
//! the model can act on.

use std::sync::{Arc, Weak};

use agentd_sdk::{CallContext, HandlerError, ToolCall, ToolHandler, ToolOutput};
use async_trait::async_trait;
use rmcp::ServiceError;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ResourceContents};
use serde_json::{Value, json};

use super::server::Server;

/// Longest server error message passed on to the model.
const MAX_ERROR_MESSAGE: usize = 2000;

/// Runs one of a server's tools. Holds the server weakly: a reload that removes the server
/// leaves turns that still have the tool with an `mcp_unavailable` answer.
pub(super) struct McpToolHandler {
    server: Weak<Server>,
    /// The tool's name on the server (without agentd's prefix).
    remote: String,
}

impl McpToolHandler {
    pub(super) fn new(server: Arc<Server>, remote: &str) -> Self {
        Self {
            server: Arc::downgrade(&server),
            remote: remote.to_owned(),
        }
    }
}

#[async_trait]
impl ToolHandler for McpToolHandler {
    async fn call(&self, call: ToolCall, _ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        let server = self.server.upgrade();
        let name = server
            .as_ref()
            .map_or_else(String::new, |s| s.spec.name.clone());
        let Some(peer) = server.as_ref().and_then(|s| s.peer()) else {
            return Err(unavailable(&name));
        };
        drop(server);
        let mut params = CallToolRequestParams::new(self.remote.clone());
        params.arguments = match call.arguments {
            Value::Object(arguments) => Some(arguments),
            _ => None,
        };
        // Dropping this future (timeout, cancelled turn) sends `notifications/cancelled`.
        let answer = peer.call_tool(params).await;
        if answer
            .as_ref()
            .is_err_and(|e| !matches!(e, ServiceError::McpError(_)))
            && let Some(server) = self.server.upgrade()
        {
            server.suspect();
        }
        match answer {
            Ok(result) => into_output(result),
            Err(ServiceError::McpError(error)) => Err(HandlerError::new(
                "mcp_error",
                format!(
                    "the MCP server `{name}` refused the call (code {}): {}",
                    error.code.0,
                    capped(&error.message)
                ),
            )),
            Err(ServiceError::TransportClosed) if peer.is_transport_closed() => {
                Err(HandlerError::new(
                    "mcp_server_exited",
                    format!(
                        "the MCP server `{name}` went away while the call ran; whether the call \
                         took effect is unknown, so check before repeating it"
                    ),
                ))
            }
            Err(ServiceError::TransportSend(_) | ServiceError::TransportClosed) => {
                Err(unavailable(&name))
            }
            Err(other) => Err(HandlerError::new(
                "mcp_error",
                format!(
                    "the MCP server `{name}` answered the call in a way agentd cannot use: {}",
                    capped(&other.to_string())
                ),
            )),
        }
    }
}

fn unavailable(server: &str) -> HandlerError {
    HandlerError::new(
        "mcp_unavailable",
        format!("the MCP server `{server}` is not running; the call was not made"),
    )
    .retryable()
}

/// The server's answer as a tool result. Structured content is the result when present (its
/// text blocks repeat it); otherwise the blocks, one after another, as text.
fn into_output(result: CallToolResult) -> Result<ToolOutput, HandlerError> {
    let text = render_blocks(&result.content, result.structured_content.is_some());
    if result.is_error == Some(true) {
        let message = if text.is_empty() {
            "the tool reported an error without a message".to_owned()
        } else {
            text
        };
        let mut error = HandlerError::new("tool_error", message);
        if let Some(structured) = result.structured_content {
            error = error.with_details(json!({ "structured": structured }));
        }
        return Err(error);
    }
    Ok(ToolOutput::new(match result.structured_content {
        Some(structured) if text.is_empty() => structured,
        Some(structured) => json!({ "structured": structured, "content": text }),
        None => Value::String(text),
    }))
}

/// Each block on its own line: text as is, anything else as a short description. With
/// `structured` set, text blocks are left out (they carry the structured content again).
fn render_blocks(blocks: &[ContentBlock], structured: bool) -> String {
    let mut out = String::new();
    for block in blocks {
        let line = match block {
            ContentBlock::Text(text) if structured => continue,
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(image) => format!(
                "[image {}, {} bytes, not shown]",
                image.mime_type,
                base64_len(&image.data)
            ),
            ContentBlock::Audio(audio) => format!(
                "[audio {}, {} bytes, not shown]",
                audio.mime_type,
                base64_len(&audio.data)
            ),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {uri}]\n{text}")
                }
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => format!(
                    "[resource {uri} ({}), {} bytes, not shown]",
                    mime_type.as_deref().unwrap_or("binary"),
                    base64_len(blob)
                ),
                _ => "[resource of an unknown kind, not shown]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => {
                format!("[resource link {} ({})]", link.uri, link.name)
            }
            _ => "[content of an unknown kind, not shown]".to_owned(),
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

/// Decoded size of base64 text.
fn base64_len(data: &str) -> usize {
    let padding = data.bytes().rev().take_while(|&b| b == b'=').count();
    (data.len() / 4 * 3).saturating_sub(padding)
}

fn capped(message: &str) -> &str {
    if message.len() <= MAX_ERROR_MESSAGE {
        return message;
    }
    let mut end = MAX_ERROR_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(content: Vec<ContentBlock>, structured: Option<Value>) -> CallToolResult {
        let mut result = CallToolResult::success(content);
        result.structured_content = structured;
        result
    }

    #[test]
    fn text_blocks_become_text() {
        let output = into_output(result(
            vec![ContentBlock::text("one"), ContentBlock::text("two")],
            None,
        ))
        .unwrap();
        assert_eq!(output.content, Value::String("one\ntwo".into()));
    }

    #[test]
    fn structured_content_is_the_result_and_images_are_described() {
        let output = into_output(result(
            vec![ContentBlock::text("{\"sum\":3}")],
            Some(json!({"sum": 3})),
        ))
        .unwrap();
        assert_eq!(output.content, json!({"sum": 3}));
        let output = into_output(result(
            vec![ContentBlock::image("aGVsbG8=", "image/png")],
            None,
        ))
        .unwrap();
        assert_eq!(
            output.content,
            Value::String("[image image/png, 5 bytes, not shown]".into())
        );
    }

    #[test]
    fn is_error_becomes_a_tool_error_with_the_text() {
        let mut failed = result(vec![ContentBlock::text("disk full")], None);
        failed.is_error = Some(true);
        let error = into_output(failed).unwrap_err();
        assert_eq!(error.kind, "tool_error");
        assert_eq!(error.message, "disk full");
    }
}
