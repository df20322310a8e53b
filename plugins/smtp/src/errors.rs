//! Turns lettre's SMTP errors into the kinds the model reads, using the phase that failed.
//!
//! lettre reports TCP, TLS-handshake and greeting failures all as connection errors, so the
//! phase the delivery was in, the reply code and the underlying `io::ErrorKind` decide the kind.
//! Texts come from lettre and the relay; neither ever contains the password.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use agentd_sdk::HandlerError;
use lettre::transport::smtp::Error as SmtpError;
use serde_json::{Value, json};

/// Where one delivery attempt was when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Waiting for a free connection slot or reusing an idle connection.
    Queue = 0,
    /// TCP connect, TLS handshake for `security = "tls"`, greeting and EHLO.
    Connect = 1,
    /// STARTTLS and the TLS handshake after it.
    StartTls = 2,
    /// AUTH.
    Auth = 3,
    /// MAIL, RCPT and the DATA command: the relay has nothing of the message yet.
    Send = 4,
    /// The message text and the relay's answer to it: from here on the relay may have
    /// accepted the message, so only its answer says whether it did.
    Data = 5,
}

impl Phase {
    pub(crate) fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::Connect,
            2 => Phase::StartTls,
            3 => Phase::Auth,
            4 => Phase::Send,
            5 => Phase::Data,
            _ => Phase::Queue,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Queue => "queue",
            Phase::Connect => "connect",
            Phase::StartTls => "starttls",
            Phase::Auth => "auth",
            Phase::Send => "send",
            Phase::Data => "data",
        }
    }
}

/// A failed attempt: what to tell the model, and whether another attempt in this call may help.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub error: HandlerError,
    pub retry: bool,
}

impl AttemptError {
    fn fatal(error: HandlerError) -> Self {
        Self {
            error,
            retry: false,
        }
    }
}

/// Classifies a lettre error raised during `phase`; `wrapped_tls` says the connect phase
/// includes a TLS handshake (`security = "tls"`).
pub(crate) fn classify(phase: Phase, err: &SmtpError, wrapped_tls: bool) -> AttemptError {
    let text = err.to_string();
    let details = |extra: Value| {
        let mut base = json!({ "phase": phase.name() });
        if let (Value::Object(map), Value::Object(more)) = (&mut base, extra) {
            map.extend(more);
        }
        base
    };
    if let Some(code) = err.status() {
        let code: u16 = code.to_string().parse().unwrap_or(0);
        let server = err.source().map(ToString::to_string).unwrap_or_default();
        let reply = format!("{code} {server}");
        let info = details(json!({ "code": code, "server": server }));
        if err.is_transient() {
            return AttemptError {
                error: HandlerError::new(
                    "rejected_transient",
                    format!(
                        "the relay deferred the message during {} ({reply}); it may be \
                         accepted later",
                        phase.name()
                    ),
                )
                .retryable()
                .with_details(info),
                retry: true,
            };
        }
        let error = if phase == Phase::Auth || matches!(code, 530 | 534 | 535 | 538) {
            HandlerError::new(
                "auth_failed",
                format!(
                    "the relay refused this tool's SMTP login ({reply}); the operator must fix \
                     the configured credentials, retrying will not help"
                ),
            )
        } else if phase == Phase::StartTls {
            HandlerError::new(
                "tls_failed",
                format!("the relay refused STARTTLS ({reply})"),
            )
        } else {
            HandlerError::new(
                "rejected_permanent",
                format!(
                    "the relay refused the message permanently ({reply}); do not resend it \
                     unchanged, check the recipients and content"
                ),
            )
        };
        return AttemptError::fatal(error.with_details(info));
    }

    if phase == Phase::Data {
        // The message went out and no answer came back: the relay may have queued it. Another
        // attempt, or a model told to retry, could deliver it twice.
        return AttemptError::fatal(
            HandlerError::new(
                "outcome_unknown",
                format!(
                    "the connection to the relay broke after the message was sent and before \
                     the relay answered ({text}); it may or may not have been accepted, so it \
                     was not sent again; do not resend it without checking"
                ),
            )
            .with_details(details(json!({}))),
        );
    }
    let io_kind = io_error_kind(err);
    if phase == Phase::StartTls
        || err.is_tls()
        || (phase == Phase::Connect && wrapped_tls && io_kind == Some(io::ErrorKind::InvalidData))
    {
        return AttemptError::fatal(
            HandlerError::new(
                "tls_failed",
                format!(
                    "could not establish TLS with the relay: {text}; the operator must check \
                     the relay's certificate or configure `ca_file`"
                ),
            )
            .with_details(details(json!({}))),
        );
    }
    if err.is_client() {
        let kind = match phase {
            Phase::Auth => "auth_failed",
            _ => "rejected_permanent",
        };
        return AttemptError::fatal(
            HandlerError::new(kind, format!("cannot deliver: {text}"))
                .with_details(details(json!({}))),
        );
    }
    let dropped = err.is_response()
        || matches!(
            io_kind,
            Some(
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        );
    if (dropped && phase != Phase::Connect) || err.is_response() {
        return AttemptError {
            error: HandlerError::new(
                "relay_unreachable",
                format!(
                    "the connection to the relay broke during {} ({text})",
                    phase.name()
                ),
            )
            .retryable()
            .with_details(details(json!({}))),
            retry: true,
        };
    }
    AttemptError::fatal(
        HandlerError::new(
            "relay_unreachable",
            format!("cannot reach the mail relay: {text}"),
        )
        .retryable()
        .with_details(details(json!({}))),
    )
}

/// The error for an attempt that ran out of time; `phase` says whether data may have gone out.
pub(crate) fn timed_out(phase: Phase, waited: Duration) -> HandlerError {
    let sent_maybe = phase == Phase::Data;
    let message = if sent_maybe {
        format!(
            "the relay did not finish answering within {}; the message may or may not \
             have been accepted",
            human(waited)
        )
    } else {
        format!(
            "the relay did not answer within {} (during {}); nothing was sent",
            human(waited),
            phase.name()
        )
    };
    let error = HandlerError::new("timeout", message)
        .with_details(json!({ "phase": phase.name(), "waited_ms": waited.as_millis() as u64 }));
    if sent_maybe { error } else { error.retryable() }
}

/// "800ms", "1s", "1.5s".
fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// The `io::ErrorKind` of the first I/O error in the source chain.
fn io_error_kind(err: &SmtpError) -> Option<io::ErrorKind> {
    let mut source = err.source();
    while let Some(inner) = source {
        if let Some(io_err) = inner.downcast_ref::<io::Error>() {
            return Some(io_err.kind());
        }
        source = inner.source();
    }
    None
}

/// The error for a call whose deadline passed before `what` could start; nothing was sent.
pub(crate) fn deadline_passed(what: &str) -> HandlerError {
    HandlerError::new(
        "timeout",
        format!("the call's deadline passed before {what}; nothing was sent"),
    )
    .retryable()
}
