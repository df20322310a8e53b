//! `send_email` arguments and the RFC 5322 message built from them. Every address the model
//! writes (to, cc, bcc, reply_to) is counted and checked by the recipient policy, every header
//! value it writes is kept on one line and bounded, and the body is bounded, before anything is
//! built.

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
    reply_to: Option<OneOrMany>,
}

/// Size limits on what the model writes into one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageLimits {
    /// `body` and `html` together, in bytes.
    pub max_body_bytes: usize,
    /// The subject, and each address with its display name, in bytes.
    pub max_header_bytes: usize,
}

/// Default of `max_body_bytes`.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default of `max_header_bytes`: RFC 5322's line length limit.
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 998;

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// A message ready for delivery, with what the result reports about it.
pub(crate) struct PreparedEmail {
    pub message: Message,
    /// `<key@domain>`, stable for one tool call.
    pub message_id: String,
    /// Every envelope recipient (to, cc, bcc), as plain addresses.
    pub recipients: Vec<String>,
}

/// The Message-ID for one call: `<{key}@{domain of from}>`, with the key reduced to characters
/// that are safe in a Message-ID and a file name.
pub(crate) fn message_id(idempotency_key: &str, from: &Mailbox) -> String {
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

/// Parses the arguments, applies the size limits and the recipient policy, and builds the
/// message.
pub(crate) fn prepare(
    arguments: &Value,
    from: &Mailbox,
    policy: &RecipientPolicy,
    limits: &MessageLimits,
    idempotency_key: &str,
) -> Result<PreparedEmail, HandlerError> {
    let args = EmailArgs::deserialize(arguments).map_err(|e| {
        HandlerError::new(
            "invalid_arguments",
            format!("send_email arguments do not fit: {e}"),
        )
    })?;
    let to = args.to.into_vec();
    let cc = args.cc.map(OneOrMany::into_vec).unwrap_or_default();
    let bcc = args.bcc.map(OneOrMany::into_vec).unwrap_or_default();
    let reply_to = args.reply_to.map(OneOrMany::into_vec).unwrap_or_default();
    // Counted before anything is parsed, so a huge list costs nothing more than its length.
    policy.check_count(to.len() + cc.len() + bcc.len() + reply_to.len())?;
    check_body_size(&args.body, args.html.as_deref(), limits)?;
    check_header_size("subject", &args.subject, limits)?;
    let to = parse_mailboxes("to", &to, limits)?;
    let cc = parse_mailboxes("cc", &cc, limits)?;
    let bcc = parse_mailboxes("bcc", &bcc, limits)?;
    let reply_to = parse_mailboxes("reply_to", &reply_to, limits)?;
    if to.is_empty() {
        return Err(HandlerError::new(
            "invalid_arguments",
            "`to` names no recipient; give at least one address",
        ));
    }
    let addressed = [
        ("to", &to),
        ("cc", &cc),
        ("bcc", &bcc),
        ("reply_to", &reply_to),
    ];
    policy.check(
        addressed
            .iter()
            .flat_map(|(field, list)| list.iter().map(move |mailbox| (*field, mailbox))),
    )?;

    let message_id = message_id(idempotency_key, from);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(single_line(&args.subject))
        .message_id(Some(message_id.clone()));
    for mailbox in reply_to {
        builder = builder.reply_to(mailbox);
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

fn check_body_size(
    body: &str,
    html: Option<&str>,
    limits: &MessageLimits,
) -> Result<(), HandlerError> {
    let size = body.len() + html.map_or(0, str::len);
    if size <= limits.max_body_bytes {
        return Ok(());
    }
    Err(HandlerError::new(
        "too_large",
        format!(
            "the message text is {size} bytes (body and html together) but this tool allows at \
             most {}; shorten it or send it in parts",
            limits.max_body_bytes
        ),
    )
    .with_details(json!({ "field": "body", "bytes": size, "max_bytes": limits.max_body_bytes })))
}

fn check_header_size(field: &str, value: &str, limits: &MessageLimits) -> Result<(), HandlerError> {
    if value.len() <= limits.max_header_bytes {
        return Ok(());
    }
    Err(HandlerError::new(
        "too_large",
        format!(
            "`{field}` is {} bytes but this tool allows at most {} per header value; shorten it",
            value.len(),
            limits.max_header_bytes
        ),
    )
    .with_details(json!({
        "field": field,
        "bytes": value.len(),
        "max_bytes": limits.max_header_bytes,
    })))
}

fn parse_mailboxes(
    field: &str,
    raw: &[String],
    limits: &MessageLimits,
) -> Result<Vec<Mailbox>, HandlerError> {
    raw.iter()
        .map(|s| {
            check_header_size(field, s, limits)?;
            parse_mailbox(field, s)
        })
        .collect()
}

/// One address. Control characters (CR and LF above all) are refused outright rather than left
/// to the address parser, so no address can carry a second header line.
fn parse_mailbox(field: &str, raw: &str) -> Result<Mailbox, HandlerError> {
    let parsed = if raw.contains(char::is_control) {
        Err("it contains a control character such as a line break".to_owned())
    } else {
        Mailbox::from_str(raw.trim()).map_err(|e| e.to_string())
    };
    parsed.map_err(|reason| {
        HandlerError::new(
            "invalid_address",
            format!(
                "`{field}`: {} is not an email address ({reason}); use \"name@example.com\" \
                 or \"Name <name@example.com>\"",
                json!(raw)
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
