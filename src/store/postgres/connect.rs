//! From a connection URL to a pool of PostgreSQL connections: the URL parsed, the password
//! (given apart from the URL) applied, timeouts defaulted, and the transport chosen.
//!
//! Only plain TCP (or a Unix socket) is offered for now. The transport is picked in one place
//! ([`Transport`]), so TLS is added there as a variant with its connector; the pool does not
//! depend on which one it was built with.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Config, NoTls};

use crate::store::StoreResult;
use crate::store::postgres::codec::backend;

/// How long opening one connection may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for a free connection of the pool before failing.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The name the server shows for agentd's connections, unless the URL gives one.
const APPLICATION_NAME: &str = "agentd";

/// How connections reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// TCP or a Unix socket without encryption (`sslmode=disable`, or `prefer` falling back).
    Plain,
}

/// Parses `url` (`postgres://user@host:port/db?options`), sets `password` when given, and
/// builds a pool of at most `pool_size` connections. No connection is opened yet.
pub(super) fn pool(url: &str, password: Option<String>, pool_size: usize) -> StoreResult<Pool> {
    const OPERATION: &str = "connect";
    let mut config: Config = url
        .parse()
        .map_err(|e| backend(OPERATION, format!("invalid connection URL: {e}")))?;
    if let Some(password) = password {
        config.password(password);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    let transport = transport_for(&config)?;
    if pool_size == 0 {
        return Err(backend(OPERATION, "the pool size must be at least 1"));
    }
    let manager_config = ManagerConfig {
        // A connection that broke is found by the next statement on it; checking every
        // checkout would cost a round trip per store call.
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match transport {
        Transport::Plain => Manager::from_config(config, NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| backend(OPERATION, e))
}

/// The transport the URL asks for; TLS is refused until it is supported, rather than
/// silently falling back to plain text.
fn transport_for(config: &Config) -> StoreResult<Transport> {
    match config.get_ssl_mode() {
        SslMode::Disable | SslMode::Prefer => Ok(Transport::Plain),
        _ => Err(backend(
            "connect",
            "TLS connections to PostgreSQL are not supported yet: use sslmode=disable",
        )),
    }
}
