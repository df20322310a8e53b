//! A private test server that accepts TLS connections only: the test's certificate and key
//! in its data directory (owned by `postgres`, mode 0600, as the server demands), `ssl=on`,
//! and a `pg_hba.conf` allowing TCP clients over TLS only (`hostssl`); the admin connection
//! goes through the Unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::{SUPERUSER, TestServer, run, start_private};

const CERT_FILE: &str = "server.crt";
const KEY_FILE: &str = "server.key";

/// Who may connect: over the Unix socket (the admin connection), or over TCP with TLS.
const HBA: &str = "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n";

impl TestServer {
    /// Starts a private server of the calling test's own (whatever `AGENTD_TEST_POSTGRES_URL`
    /// says) presenting `cert_pem` (the server's certificate, then any intermediates) with
    /// `key_pem`, on 127.0.0.1. Keep it in a `static` to create databases on it.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Self {
        let install = |data: &Path| {
            write_private(&data.join(CERT_FILE), cert_pem);
            write_private(&data.join(KEY_FILE), key_pem);
            std::fs::write(data.join("pg_hba.conf"), HBA).expect("write pg_hba.conf");
            format!("-c ssl=on -c ssl_cert_file={CERT_FILE} -c ssl_key_file={KEY_FILE}")
        };
        start_private(Some(&install))
    }
}

/// Writes `text` to `path`, readable by the server's user only.
fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    run(Command::new("chown").arg(SUPERUSER).arg(path));
}
