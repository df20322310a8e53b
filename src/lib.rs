//! agentd: a tool-execution agent runtime serving the Julep sessions/chat API.
//!
//! Modules in the order one chat request travels through them:
//! - [`api`]: HTTP routes, auth, request parsing, the one error type, SSE.
//! - [`session`]: the conversation's vocabulary (messages, entries), a call's identity, the
//!   per-session turn lock.
//! - [`turn`]: the loop: model call, tool calls, results, until the model finishes.
//! - [`provider`]: model providers (OpenAI-compatible), retries, streaming.
//! - [`tool`]: the catalog from tools.toml, validation, handler registry, dispatch.
//! - [`store`]: everything durable (SQLite): resources, history, the tool-call journal.
//!
//! Around them: [`daemon`] (wiring, the accept loop, signals, systemd notify, API keys),
//! [`config`] (agentd.toml and overrides), [`telemetry`] (logs and metrics) and [`cli`] (the
//! commands of the binary). The fake model for tests, the demo and benchmarks is its own
//! crate, `agentd-mock`.

mod api;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod mcp;
mod provider;
pub mod session;
pub mod store;
mod telemetry;
pub mod tool;
mod turn;
