//! The process around the data path: wiring the parts together and serving them with a drain
//! (`app.rs`), the accept loop (`server.rs`), signals (`signals.rs`), the systemd notify
//! protocol (`notify.rs`), the open-file limit (`rlimit.rs`) and API keys (`keys.rs`).

mod app;
pub(crate) mod keys;
pub(crate) mod notify;
mod reload;
pub(crate) mod rlimit;
pub(crate) mod server;
pub(crate) mod signals;

pub(crate) use app::install_crypto_provider;
pub use app::{App, StartError};
