//! Serde adapter for durations in agentd.toml: a duration string (`"250ms"`, `"30s"`, `"2m"`)
//! or a number of seconds, zero allowed; the SDK's parser, shared with tools.toml and plugins.
//! Settings that must be positive are checked with their own message when the configuration is loaded.

pub use agentd_sdk::deserialize_duration as deserialize;
