//! The TLS connector the pool is built with: tokio-postgres-rustls's, with a handshake that
//! failed on the server's certificate explained in terms of agentd's settings.

use std::future::Future;
use std::pin::Pin;

use rustls::{CertificateError, ClientConfig};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::postgres::tls::SslMode;

/// Makes one TLS connection per pooled connection.
#[derive(Clone)]
pub(super) struct PostgresTls {
    inner: MakeRustlsConnect,
    mode: SslMode,
}

impl PostgresTls {
    pub(super) fn new(config: ClientConfig, mode: SslMode) -> Self {
        Self {
            inner: MakeRustlsConnect::new(config),
            mode,
        }
    }
}

type Inner = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

impl MakeTlsConnect<Socket> for PostgresTls {
    type Stream = Stream;
    type TlsConnect = Handshake;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, host: &str) -> Result<Handshake, Self::Error> {
        let Ok(inner) = MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, host);
        Ok(Handshake {
            inner,
            mode: self.mode,
            host: host.to_owned(),
        })
    }
}

/// One handshake with the server `host`.
pub(super) struct Handshake {
    inner: Inner,
    mode: SslMode,
    host: String,
}

impl TlsConnect<Socket> for Handshake {
    type Stream = Stream;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, HandshakeError>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        let Self { inner, mode, host } = self;
        Box::pin(async move {
            inner
                .connect(socket)
                .await
                .map_err(|source| HandshakeError {
                    hint: hint(&source, mode, &host),
                    source,
                })
        })
    }
}

/// A failed handshake: what to change, when the cause is the server's certificate.
#[derive(Debug)]
pub(super) struct HandshakeError {
    hint: Option<String>,
    source: std::io::Error,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hint {
            Some(hint) => write!(f, "{hint}: {}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

impl std::error::Error for HandshakeError {}

fn hint(error: &std::io::Error, mode: SslMode, host: &str) -> Option<String> {
    let rustls::Error::InvalidCertificate(cause) =
        error.get_ref()?.downcast_ref::<rustls::Error>()?
    else {
        return None;
    };
    let mode = mode.as_str();
    match cause {
        CertificateError::UnknownIssuer => Some(format!(
            "the certificate of PostgreSQL server {host} is not signed by a trusted CA \
             (sslmode={mode}): add its CA certificate (PEM) to storage.ca_file"
        )),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Some(format!(
                "the certificate of PostgreSQL server {host} is not issued for that name \
                 (sslmode={mode}): put a name the certificate lists in storage.url, or use \
                 sslmode=verify-ca"
            ))
        }
        _ => None,
    }
}
