//! From a connection URL to a pool of PostgreSQL connections: the URL parsed, the password
//! (given apart from the URL) applied, timeouts defaulted, and the transport chosen from the
//! URL's `sslmode` ([`tls`](super::tls) says what each one checks); the pool does not depend
//! on which transport it was built with.

use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Config, NoTls};

use crate::store::StoreResult;
use crate::store::postgres::codec::backend;
use crate::store::postgres::tls;
use crate::store::postgres::tls_connect::PostgresTls;

/// How long opening one connection may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for a free connection of the pool before failing.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The name the server shows for agentd's connections, unless the URL gives one.
const APPLICATION_NAME: &str = "agentd";

/// Parses `url` (`postgres://user@host:port/db?options`), sets `password` when given, and
/// builds a pool of at most `pool_size` connections, over TLS as `sslmode` asks, trusting
/// the system's CA certificates and those of `ca_file`. No connection is opened yet.
pub(super) fn pool(
    url: &str,
    password: Option<String>,
    pool_size: usize,
    ca_file: Option<&Path>,
) -> StoreResult<Pool> {
    const OPERATION: &str = "connect";
    let invalid_url = |e: String| backend(OPERATION, format!("invalid connection URL: {e}"));
    let (url, ssl_mode) = tls::take_ssl_mode(url).map_err(invalid_url)?;
    let mut config: Config = url.parse().map_err(|e| invalid_url(format!("{e}")))?;
    config.ssl_mode(ssl_mode.negotiation());
    if let Some(password) = password {
        config.password(password);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    let tls_config = tls::client_config(ssl_mode, ca_file).map_err(|e| backend(OPERATION, e))?;
    if pool_size == 0 {
        return Err(backend(OPERATION, "the pool size must be at least 1"));
    }
    let manager_config = ManagerConfig {
        // A connection that broke is found by the next statement on it; checking every
        // checkout would cost a round trip per store call.
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls_config {
        None => Manager::from_config(config, NoTls, manager_config),
        Some(tls_config) => Manager::from_config(
            config,
            PostgresTls::new(tls_config, ssl_mode),
            manager_config,
        ),
    };
    Pool::builder(manager)
        .max_size(pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| backend(OPERATION, e))
}
