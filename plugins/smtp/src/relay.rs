//! Connections to the SMTP relay: connect, STARTTLS, AUTH, one message per attempt, and a small
//! pool of idle connections.
//!
//! lettre's own pool returns a connection to the pool when a send is dropped half-way (as a
//! timeout or cancel does), which can leave the connection in the middle of a DATA transfer.
//! Here a connection goes back to the pool only after a complete, successful send; any other
//! ending drops it, which closes the socket. Creating the handler spawns nothing, so it can be
//! built outside a runtime.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use agentd_sdk::{HandlerError, OptionsError};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::errors::{AttemptError, Phase, classify};
use crate::options::{RelayOptions, Security};

/// Idle connections older than this are closed instead of reused.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

struct Parked {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// One configured relay with its connection pool.
pub(crate) struct Relay {
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    connect_timeout: Duration,
    pool_size: usize,
    /// At most `pool_size` connections are open or being opened at once.
    permits: Semaphore,
    idle: Mutex<Vec<Parked>>,
}

impl Relay {
    pub(crate) fn new(options: &RelayOptions) -> Result<Self, OptionsError> {
        let tls = match options.security {
            Security::None => None,
            Security::StartTls | Security::Tls => {
                let mut builder = TlsParameters::builder(options.host.clone());
                if let Some(pem) = &options.ca_pem {
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| OptionsError::one(format!("`ca_file`: {e}")))?;
                    builder = builder.add_root_certificate(cert);
                }
                Some(builder.build().map_err(|e| {
                    OptionsError::one(format!("cannot set up TLS for the relay: {e}"))
                })?)
            }
        };
        Ok(Self {
            host: options.host.clone(),
            port: options.port,
            security: options.security,
            tls,
            credentials: options
                .credentials
                .as_ref()
                .map(|(user, pass)| Credentials::new(user.clone(), pass.clone())),
            hello: ClientId::default(),
            connect_timeout: options.connect_timeout,
            pool_size: options.pool_size,
            permits: Semaphore::new(options.pool_size),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Delivers one message in one attempt. `phase` is updated as the attempt advances, so a
    /// caller that abandons the attempt (timeout, cancel) knows how far it got.
    pub(crate) async fn send(
        &self,
        envelope: &Envelope,
        email: &[u8],
        phase: &AtomicU8,
    ) -> Result<Response, AttemptError> {
        phase.store(Phase::Queue as u8, Ordering::Relaxed);
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await.ok();
        let mut conn = match self.reuse().await {
            Some(conn) => conn,
            None => self.connect(phase).await?,
        };
        phase.store(Phase::Send as u8, Ordering::Relaxed);
        let commands = envelope_commands(&conn, envelope, email)?;
        let sent = async {
            for command in commands {
                conn.command(command).await?;
            }
            conn.command(Data).await?;
            phase.store(Phase::Data as u8, Ordering::Relaxed);
            conn.message(email).await
        };
        match sent.await {
            Ok(response) => {
                self.park(conn);
                Ok(response)
            }
            // A failed connection is dropped, never parked: that closes it.
            Err(e) => Err(classify(
                Phase::from_u8(phase.load(Ordering::Relaxed)),
                &e,
                false,
            )),
        }
    }

    /// Opens, secures and authenticates a new connection.
    async fn connect(&self, phase: &AtomicU8) -> Result<AsyncSmtpConnection, AttemptError> {
        phase.store(Phase::Connect as u8, Ordering::Relaxed);
        let wrapped = self.security == Security::Tls;
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.connect_timeout),
            &self.hello,
            if wrapped { self.tls.clone() } else { None },
            None,
        )
        .await
        .map_err(|e| classify(Phase::Connect, &e, wrapped))?;
        if let (Security::StartTls, Some(tls)) = (self.security, &self.tls) {
            phase.store(Phase::StartTls as u8, Ordering::Relaxed);
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(|e| classify(Phase::StartTls, &e, false))?;
        }
        if let Some(credentials) = &self.credentials {
            phase.store(Phase::Auth as u8, Ordering::Relaxed);
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| classify(Phase::Auth, &e, false))?;
        }
        Ok(conn)
    }

    /// An idle connection that still answers NOOP, if there is one.
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let parked = self.lock_idle().pop()?;
            if parked.since.elapsed() > IDLE_LIMIT {
                continue;
            }
            let mut conn = parked.conn;
            let probe = tokio::time::timeout(self.connect_timeout, conn.test_connected());
            if probe.await.unwrap_or(false) {
                return Some(conn);
            }
        }
    }

    fn park(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < self.pool_size {
            idle.push(Parked {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        // A pool of idle sockets has no invariant a panic could break.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// MAIL and one RCPT per recipient, as lettre's own `send` writes them (with SMTPUTF8 and
/// 8BITMIME when needed and offered). The steps are taken one by one here so the phase can
/// tell the commands, after which nothing of the message has gone out, from the data.
fn envelope_commands(
    conn: &AsyncSmtpConnection,
    envelope: &Envelope,
    email: &[u8],
) -> Result<Vec<String>, AttemptError> {
    let mut mail_options = Vec::new();
    let non_ascii_address = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|address| !AsRef::<str>::as_ref(address).is_ascii());
    let server = conn.server_info();
    if non_ascii_address {
        if !server.supports_feature(Extension::SmtpUtfEight) {
            return Err(unsendable(
                "an address is not ASCII and the relay does not offer SMTPUTF8",
            ));
        }
        mail_options.push(MailParameter::SmtpUtfEight);
    }
    if !email.is_ascii() {
        if !server.supports_feature(Extension::EightBitMime) {
            return Err(unsendable(
                "the message is not ASCII and the relay does not offer 8BITMIME",
            ));
        }
        mail_options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mut commands = vec![Mail::new(envelope.from().cloned(), mail_options).to_string()];
    commands.extend(
        envelope
            .to()
            .iter()
            .map(|to| Rcpt::new(to.clone(), Vec::new()).to_string()),
    );
    Ok(commands)
}

/// A message this relay cannot take as it is; nothing was sent.
fn unsendable(reason: &str) -> AttemptError {
    AttemptError {
        error: HandlerError::new("rejected_permanent", format!("cannot deliver: {reason}"))
            .with_details(json!({ "phase": "send" })),
        retry: false,
    }
}
