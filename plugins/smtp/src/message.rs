//! `send_email` arguments and the RFC 5322 message built from them.

use std::str::FromStr;

use agentd_sdk::HandlerError;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::policy::RecipientPolicy;

/// A recipient field: one address or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The tool's arguments. Fields the handler does not know are ignored.
#[derive(Debug, Clone, Deserialize)]
struct EmailArgs {
    to: OneOrMany,
    #[serde(default)]
    cc: Option<OneOrMany>,
    #[serde(default)]
    bcc: Option<OneOrMany>,
    subject: String,
    body: String,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
}

/// A message ready for delivery, with what the result reports about it.
pub struct PreparedEmail {
    pub message: Message,
    /// `<key@domain>`, stable for one tool call.
    pub message_id: String,
    /// Every envelope recipient (to, cc, bcc), as plain addresses.
    pub recipients: Vec<String>,
}

/// The Message-ID for one call: `<{key}@{domain of from}>`, with the key reduced to characters
/// that are safe in a Message-ID and a file name.
pub fn message_id(idempotency_key: &str, from: &Mailbox) -> String {
    let key: String = idempotency_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("<{key}@{}>", from.email.domain())
}

/// Parses the arguments, applies the recipient policy and builds the message.
pub fn prepare(
    arguments: &Value,
    from: &Mailbox,
    policy: &RecipientPolicy,
    idempotency_key: &str,
) -> Result<PreparedEmail, HandlerError> {
    let args = EmailArgs::deserialize(arguments).map_err(|e| {
        HandlerError::new(
            "invalid_arguments",
            format!("send_email arguments do not fit: {e}"),
        )
    })?;
    let to = parse_mailboxes("to", args.to.into_vec())?;
    let cc = parse_mailboxes("cc", args.cc.map(OneOrMany::into_vec).unwrap_or_default())?;
    let bcc = parse_mailboxes("bcc", args.bcc.map(OneOrMany::into_vec).unwrap_or_default())?;
    if to.is_empty() {
        return Err(HandlerError::new(
            "invalid_arguments",
            "`to` names no recipient; give at least one address",
        ));
    }
    let all: Vec<Mailbox> = to.iter().chain(&cc).chain(&bcc).cloned().collect();
    policy.check(&all)?;

    let message_id = message_id(idempotency_key, from);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(single_line(&args.subject))
        .message_id(Some(message_id.clone()));
    if let Some(reply_to) = &args.reply_to {
        builder = builder.reply_to(parse_mailbox("reply_to", reply_to)?);
    }
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    for mailbox in cc {
        builder = builder.cc(mailbox);
    }
    for mailbox in bcc {
        builder = builder.bcc(mailbox);
    }
    let built = match args.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(args.body, html)),
        None => builder.singlepart(SinglePart::plain(args.body)),
    };
    let message = built.map_err(|e| {
        HandlerError::new(
            "invalid_arguments",
            format!("cannot build the message: {e}"),
        )
    })?;
    let recipients = message
        .envelope()
        .to()
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(PreparedEmail {
        message,
        message_id,
        recipients,
    })
}

fn parse_mailboxes(field: &str, raw: Vec<String>) -> Result<Vec<Mailbox>, HandlerError> {
    raw.iter().map(|s| parse_mailbox(field, s)).collect()
}

fn parse_mailbox(field: &str, raw: &str) -> Result<Mailbox, HandlerError> {
    Mailbox::from_str(raw.trim()).map_err(|e| {
        HandlerError::new(
            "invalid_address",
            format!(
                "`{field}`: \"{raw}\" is not an email address ({e}); use \"name@example.com\" \
                 or \"Name <name@example.com>\""
            ),
        )
        .with_details(json!({ "field": field, "address": raw }))
    })
}

/// Header values stay on one line whatever the model sends.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
