//! MCP servers as tool sources: each `[[mcp]]` entry of tools.toml is a server agentd starts
//! (stdio) or connects to (streamable HTTP) with the daemon, supervises and restarts; the
//! tools it lists join the catalog as `<server>__<tool>` and run through the same dispatch as
//! any catalog tool (offer, schema, journal, timeout, concurrency, metrics).

mod call;
mod connect;
mod hub;
mod listing;
mod server;

pub(crate) use hub::{McpHub, summary};
pub(crate) use server::ServerStatus;
