//! agentd: a tool-execution agent runtime serving the Julep sessions/chat API.
//!
//! Modules in the order one chat request travels through them:
//! - [`api`]: HTTP routes, auth, request parsing, the one error type, SSE.
//! - [`session`]: the durable store (SQLite) and the message vocabulary.
//! - [`turn`]: the loop: model call, tool calls, results, until the model finishes.
//! - [`provider`]: model providers (OpenAI-compatible), retries, streaming.
//! - [`tool`]: the catalog from tools.toml, validation, handler registry, dispatch.
//!
//! Around them: [`config`] (agentd.toml and overrides), [`keys`] (API keys), [`app`] (wiring
//! and serving), [`cli`] (the commands of the binary), [`mock_model`] (the fake model for
//! tests, demos and benchmarks).

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod http_server;
pub mod ids;
pub mod keys;
pub mod mock_model;
pub mod notify;
pub mod provider;
pub mod rlimit;
pub mod session;
pub mod signals;
pub mod telemetry;
pub mod tool;
pub mod turn;
