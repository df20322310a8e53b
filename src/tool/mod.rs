//! Server tools: the catalog compiled from tools.toml, argument validation, the handler
//! registry, and dispatch (timeouts, concurrency, panic isolation, journal).

pub mod approval;
pub mod builtin;
pub mod catalog;
mod catalog_compile;
mod catalog_mcp;
mod catalog_raw;
pub mod dispatch;
mod failure;
pub mod mcp_spec;
pub mod registry;
pub mod validate;

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod dispatch_tests;
#[cfg(test)]
mod test_support;

pub use approval::{ApprovalPolicy, ApprovalSpec};
pub use catalog::{Catalog, CatalogError, CatalogTool};
pub use catalog_compile::{DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT};
pub use catalog_mcp::{DEFAULT_MAX_TOOL_BYTES, DEFAULT_MAX_TOOLS, DEFAULT_START_TIMEOUT};
pub use catalog_raw::is_valid_tool_name;
pub use dispatch::{DispatchRequest, Dispatcher, HeldCall, Outcome, Progress, StepRuns, ToolRun};
pub use failure::{DispatchFailure, FailureKind};
pub use mcp_spec::{McpServerSpec, McpTransport, SettingValue};
pub use registry::Registry;
