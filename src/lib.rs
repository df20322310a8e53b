//! agentd: a tool-execution agent runtime serving the Julep sessions/chat API.
//!
//! Modules in the order one chat request travels through them:
//! - [`api`]: HTTP routes, auth, request parsing, the one error type, SSE.
//! - [`session`]: the durable store (SQLite) and the message vocabulary.
//! - [`turn`]: the loop: model call, tool calls, results, until the model finishes.
//! - [`provider`]: model providers (OpenAI-compatible), retries.
//! - [`tool`]: the catalog from tools.toml, validation, handler registry, dispatch.
//!
//! Around them: [`config`] (agentd.toml and overrides), [`app`] (wiring and serving),
//! [`mock_model`] (the fake model for tests, demos and benchmarks).

pub mod mock_model;
pub mod provider;
pub mod session;
pub mod tool;
