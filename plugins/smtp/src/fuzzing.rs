//! The entry point of the `smtp_message` fuzz target (`fuzz/`): `send_email` arguments through
//! the size limits, the recipient policy and the message builder, as a call runs them before
//! delivery. Not part of the crate's API.

use lettre::message::Mailbox;
use serde_json::Value;

use crate::message::{MessageLimits, prepare};
use crate::policy::RecipientPolicy;

/// The one domain [`build_message`] allows recipients in when `restricted`.
pub const ALLOWED_DOMAIN: &str = "example.com";

/// A built message: its wire form and its envelope recipients.
#[derive(Debug)]
pub struct BuiltMessage {
    pub formatted: Vec<u8>,
    pub recipients: Vec<String>,
}

/// Builds the message `arguments` ask for, sent from `agentd@localhost` with the default
/// limits, to any address or (`restricted`) only to [`ALLOWED_DOMAIN`]. An error is its kind
/// and message, as the tool result reports them.
pub fn build_message(
    arguments: &Value,
    restricted: bool,
    idempotency_key: &str,
) -> Result<BuiltMessage, (String, String)> {
    let from: Mailbox = "agentd@localhost".parse().expect("a fixed address parses");
    let domains = if restricted {
        vec![ALLOWED_DOMAIN.to_owned()]
    } else {
        Vec::new()
    };
    let policy = RecipientPolicy::new(domains, Vec::new(), 50);
    let prepared = prepare(
        arguments,
        &from,
        &policy,
        &MessageLimits::default(),
        idempotency_key,
    )
    .map_err(|error| (error.kind, error.message))?;
    Ok(BuiltMessage {
        formatted: prepared.message.formatted(),
        recipients: prepared.recipients,
    })
}
