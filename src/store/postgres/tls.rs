//! libpq's `sslmode` for agentd's PostgreSQL connections: the mode read from the URL, the
//! roots trusted (the system's CA certificates and `storage.ca_file`), and the rustls client
//! configuration each mode gets.
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it, else plain | no (chain only with `storage.ca_file`) |
//! | `require` | always | no (chain only with `storage.ca_file`) |
//! | `verify-ca` | always | chain to a trusted root; the host name is not checked |
//! | `verify-full` | always | chain to a trusted root and the host name of the URL |
//!
//! As in libpq, giving a CA file makes `prefer` and `require` check the chain too.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::store::postgres::tls_verify::ServerCheck;

/// The `sslmode` values agentd honours, as libpq spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            )),
        }
    }

    /// What tokio-postgres is told: it knows whether to ask for TLS, not what to check.
    pub(super) fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Negotiation;
        match self {
            Self::Disable => Negotiation::Disable,
            Self::Prefer => Negotiation::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Negotiation::Require,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Takes every `sslmode` option out of the URL's query (tokio-postgres does not know the
/// `verify-*` values) and returns the URL without it and the mode; the last one given wins,
/// and `prefer` is the default, as in libpq.
pub(super) fn take_ssl_mode(url: &str) -> Result<(String, SslMode), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), SslMode::Prefer));
    };
    let mut mode = SslMode::Prefer;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode = SslMode::parse(value)?,
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode))
}

/// The rustls configuration of `mode`; `None` for `disable`. Roots are loaded only when a
/// certificate is checked.
pub(super) fn client_config(
    mode: SslMode,
    ca_file: Option<&Path>,
) -> Result<Option<ClientConfig>, String> {
    // The daemon's one crypto provider (ring), whatever the process default is.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = match (mode, ca_file) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Prefer | SslMode::Require, None) => ServerCheck::nothing(provider.clone()),
        (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, _) => {
            ServerCheck::chain(roots(mode, ca_file)?, provider.clone())
        }
        (SslMode::VerifyFull, _) => {
            ServerCheck::chain_and_name(roots(mode, ca_file)?, provider.clone())
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(check))
        .with_no_client_auth();
    Ok(Some(config))
}

/// The system's CA certificates and those of `ca_file`.
fn roots(mode: SslMode, ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "storage.ca_file {}: not a usable CA certificate: {e}",
                    path.display()
                )
            })?;
        }
    }
    if roots.is_empty() {
        let why = system
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "sslmode={} needs trusted CA certificates: none found on the system{why} and \
             storage.ca_file is not set",
            mode.as_str()
        ));
    }
    Ok(Arc::new(roots))
}

/// The certificates of a PEM file; at least one.
pub(super) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let at = || format!("storage.ca_file {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", at()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in the file", at()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_of_the_query_and_the_last_one_wins() {
        let (url, mode) = take_ssl_mode(
            "postgres://u@h:5432/db?sslmode=require&connect_timeout=3&sslmode=verify-full",
        )
        .expect("parse");
        assert_eq!(url, "postgres://u@h:5432/db?connect_timeout=3");
        assert_eq!(mode, SslMode::VerifyFull);

        let (url, mode) = take_ssl_mode("postgres://u@h/db?sslmode=verify-ca").expect("parse");
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://u@h/db", SslMode::VerifyCa)
        );
    }

    #[test]
    fn sslmode_defaults_to_prefer_and_rejects_unknown_values() {
        let (url, mode) = take_ssl_mode("postgres://u@h/db").expect("parse");
        assert_eq!((url.as_str(), mode), ("postgres://u@h/db", SslMode::Prefer));
        let error = take_ssl_mode("postgres://u@h/db?sslmode=allow").expect_err("allow");
        assert!(
            error.contains("`allow`") && error.contains("verify-full"),
            "{error}"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let error = read_ca_file(&path).expect_err("no certificate");
        assert!(error.contains("no PEM certificate"), "{error}");
        let missing = read_ca_file(&dir.path().join("missing.pem")).expect_err("missing");
        assert!(missing.contains("storage.ca_file"), "{missing}");
    }
}
