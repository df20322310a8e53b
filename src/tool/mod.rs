//! Server tools: the catalog compiled from tools.toml, argument validation, the handler
//! registry, and dispatch (timeouts, concurrency, panic isolation, journal).

pub mod builtin;
mod catalog_compile;
pub mod catalog;
pub mod dispatch;
pub mod registry;
pub mod validate;

pub use catalog::{Catalog, CatalogError, CatalogTool};
pub use dispatch::{DispatchRequest, Dispatcher, Outcome, ToolRun};
pub use registry::Registry;
