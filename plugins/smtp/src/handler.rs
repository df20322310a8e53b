//! The `send_email` handler: one call becomes one message, delivered at most once per
//! idempotency key, retried on transient failures within the call's deadline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use agentd_sdk::{CallContext, HandlerError, ToolCall, ToolHandler, ToolOutput};
use async_trait::async_trait;
use lettre::message::Mailbox;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::errors::{Phase, deadline_passed, timed_out};
use crate::message::{MessageLimits, PreparedEmail, prepare};
use crate::options::{SmtpOptions, TransportOptions};
use crate::policy::RecipientPolicy;
use crate::relay::Relay;
use crate::sent::{REMEMBERED_CALLS, SentLog};

/// First pause between attempts; it doubles after each attempt, up to `RETRY_CAP`.
const RETRY_BASE: Duration = Duration::from_millis(250);
const RETRY_CAP: Duration = Duration::from_secs(4);

/// Where the handler hands messages over.
pub(crate) enum Delivery {
    Smtp {
        relay: Box<Relay>,
        send_timeout: Duration,
        max_attempts: u32,
    },
    File {
        dir: PathBuf,
    },
    #[cfg(test)]
    Stub(lettre::transport::stub::AsyncStubTransport),
}

/// A built `smtp` tool.
pub struct SmtpHandler {
    from: Mailbox,
    policy: RecipientPolicy,
    limits: MessageLimits,
    delivery: Delivery,
    sent: SentLog,
}

impl SmtpHandler {
    pub(crate) fn new(options: SmtpOptions) -> Result<Self, agentd_sdk::OptionsError> {
        let delivery = match options.transport {
            TransportOptions::Smtp(relay) => Delivery::Smtp {
                send_timeout: relay.send_timeout,
                max_attempts: relay.max_attempts,
                relay: Box::new(Relay::new(&relay)?),
            },
            TransportOptions::File { dir } => Delivery::File { dir },
        };
        Ok(Self::with_delivery(options.from, options.policy, delivery).with_limits(options.limits))
    }

    pub(crate) fn with_delivery(
        from: Mailbox,
        policy: RecipientPolicy,
        delivery: Delivery,
    ) -> Self {
        Self {
            from,
            policy,
            limits: MessageLimits::default(),
            delivery,
            sent: SentLog::new(REMEMBERED_CALLS),
        }
    }

    pub(crate) fn with_limits(self, limits: MessageLimits) -> Self {
        Self { limits, ..self }
    }

    async fn deliver(
        &self,
        email: &PreparedEmail,
        ctx: &CallContext,
    ) -> Result<Value, HandlerError> {
        match &self.delivery {
            Delivery::Smtp {
                relay,
                send_timeout,
                max_attempts,
            } => {
                let (response, attempts) =
                    send_with_retries(relay, email, ctx, *send_timeout, *max_attempts).await?;
                Ok(json!({
                    "status": "sent",
                    "message_id": email.message_id,
                    "accepted": email.recipients,
                    "response": response,
                    "attempts": attempts,
                }))
            }
            Delivery::File { dir } => {
                let path = write_eml(dir, email, ctx).await?;
                Ok(json!({
                    "status": "written",
                    "message_id": email.message_id,
                    "accepted": email.recipients,
                    "path": path.display().to_string(),
                }))
            }
            #[cfg(test)]
            Delivery::Stub(stub) => {
                use lettre::AsyncTransport;
                stub.send(email.message.clone())
                    .await
                    .map_err(|e| HandlerError::new("rejected_permanent", e.to_string()))?;
                Ok(json!({
                    "status": "sent",
                    "message_id": email.message_id,
                    "accepted": email.recipients,
                    "response": "250 stub",
                }))
            }
        }
    }
}

#[async_trait]
impl ToolHandler for SmtpHandler {
    async fn call(&self, call: ToolCall, ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        let key = ctx.idempotency_key.clone();
        let email = prepare(
            &call.arguments,
            &self.from,
            &self.policy,
            &self.limits,
            &key,
        )?;
        let gate = self.sent.gate(&key);
        let _held = tokio::select! {
            _ = ctx.cancel.cancelled() => return Err(cancelled(Phase::Queue)),
            held = tokio::time::timeout_at(ctx.deadline, gate.lock()) => {
                held.map_err(|_| deadline_passed("an earlier call with the same key finished"))?
            }
        };
        if let Some(mut first) = self.sent.get(&key) {
            first["duplicate"] = json!(true);
            return Ok(ToolOutput::new(first));
        }
        let result = self.deliver(&email, &ctx).await?;
        self.sent.record(&key, result.clone());
        Ok(ToolOutput::new(result))
    }
}

/// Sends with up to `max_attempts` attempts; each is bounded by `send_timeout` and the deadline.
/// Returns the relay's reply and the number of attempts made.
async fn send_with_retries(
    relay: &Relay,
    email: &PreparedEmail,
    ctx: &CallContext,
    send_timeout: Duration,
    max_attempts: u32,
) -> Result<(String, u32), HandlerError> {
    let envelope = email.message.envelope();
    let bytes = email.message.formatted();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let budget = send_timeout.min(ctx.remaining());
        if budget.is_zero() {
            return Err(with_attempts(
                deadline_passed("the next attempt"),
                attempt - 1,
            ));
        }
        let phase = AtomicU8::new(Phase::Queue as u8);
        let outcome = tokio::select! {
            _ = ctx.cancel.cancelled() => {
                return Err(cancelled(Phase::from_u8(phase.load(Ordering::Relaxed))));
            }
            outcome = tokio::time::timeout(budget, relay.send(envelope, &bytes, &phase)) => outcome,
        };
        let failure = match outcome {
            Ok(Ok(response)) => {
                let lines: Vec<&str> = response.message().collect();
                return Ok((format!("{} {}", response.code(), lines.join(" ")), attempt));
            }
            Err(_) => {
                let phase = Phase::from_u8(phase.load(Ordering::Relaxed));
                return Err(with_attempts(timed_out(phase, budget), attempt));
            }
            Ok(Err(failure)) => failure,
        };
        let pause = RETRY_BASE
            .saturating_mul(1 << (attempt - 1).min(8))
            .min(RETRY_CAP);
        if !failure.retry || attempt >= max_attempts || pause >= ctx.remaining() {
            return Err(with_attempts(failure.error, attempt));
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Err(cancelled(Phase::Queue)),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

fn with_attempts(mut error: HandlerError, attempts: u32) -> HandlerError {
    match &mut error.details {
        Some(Value::Object(map)) => {
            map.insert("attempts".into(), json!(attempts));
        }
        _ => error.details = Some(json!({ "attempts": attempts })),
    }
    error
}

fn cancelled(phase: Phase) -> HandlerError {
    let message = if phase == Phase::Data {
        "the call was cancelled while the relay was receiving the message; it may or may not \
         have been accepted"
    } else {
        "the call was cancelled before the message was handed over; nothing was sent"
    };
    HandlerError::new("cancelled", message)
}

/// Writes the message to `<dir>/<message id>.eml` (through a temporary file and a rename, so a
/// reader never sees half a message and a replay replaces the file), readable by agentd's
/// user only.
async fn write_eml(
    dir: &Path,
    email: &PreparedEmail,
    ctx: &CallContext,
) -> Result<PathBuf, HandlerError> {
    let name = email
        .message_id
        .trim_start_matches('<')
        .trim_end_matches('>')
        .replace(['/', '\\'], "_");
    let path = dir.join(format!("{name}.eml"));
    let partial = dir.join(format!(".{name}.eml.partial"));
    let bytes = email.message.formatted();
    let write = async {
        crate::outbox::create_private_dir(dir).await?;
        // Checked again at every write: the directory may have been replaced since the load.
        crate::outbox::check_before_writing(dir).await?;
        let mut file = crate::outbox::create_private_file(&partial).await?;
        file.write_all(&bytes).await?;
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&partial, &path).await
    };
    let failed = |e: std::io::Error| {
        HandlerError::new(
            "write_failed",
            format!("cannot write {}: {e}", path.display()),
        )
    };
    tokio::select! {
        _ = ctx.cancel.cancelled() => Err(cancelled(Phase::Queue)),
        done = tokio::time::timeout_at(ctx.deadline, write) => match done {
            Ok(Ok(())) => Ok(path.clone()),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(deadline_passed("the file was written")),
        },
    }
}
