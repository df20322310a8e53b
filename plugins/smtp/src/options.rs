//! `[tool.options]` of an `smtp` tool: parsed and checked in one pass that reports every problem.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use agentd_sdk::{OptionsError, PositiveDuration, SecretRef, resolve_secret};
use lettre::Address;
use lettre::message::Mailbox;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::message::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES, MessageLimits};
use crate::policy::RecipientPolicy;

pub(crate) const GENERAL_KEYS: &[&str] = &[
    "transport",
    "from",
    "allowed_domains",
    "allowed_addresses",
    "max_recipients",
    "max_body_bytes",
    "max_header_bytes",
];
pub(crate) const SMTP_KEYS: &[&str] = &[
    "host",
    "port",
    "security",
    "username",
    "password",
    "ca_file",
    "pool_size",
    "connect_timeout",
    "send_timeout",
    "max_attempts",
];
pub(crate) const FILE_KEYS: &[&str] = &["dir"];

/// How the relay connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// Plain connection upgraded with STARTTLS, which the relay must offer (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Clear text; accepted only for loopback relays.
    None,
}

impl Security {
    fn default_port(self) -> u16 {
        match self {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

/// Settings for delivery through an SMTP relay.
pub(crate) struct RelayOptions {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Username and resolved password.
    pub credentials: Option<(String, String)>,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub max_attempts: u32,
}

/// Where messages go.
pub(crate) enum TransportOptions {
    Smtp(RelayOptions),
    /// One `.eml` file per message in this directory (absolute, or relative to the working
    /// directory when built without a data directory).
    File {
        dir: PathBuf,
    },
}

/// Every option of one `smtp` tool, checked.
pub(crate) struct SmtpOptions {
    pub transport: TransportOptions,
    pub from: Mailbox,
    pub policy: RecipientPolicy,
    pub limits: MessageLimits,
}

impl SmtpOptions {
    /// Parses the options table, collecting every problem before failing. A relative `dir` is
    /// resolved against `data_dir` (it stays relative to the working directory without one).
    pub(crate) fn parse(options: &Value, data_dir: Option<&Path>) -> Result<Self, OptionsError> {
        let empty = Map::new();
        let map = match options {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => {
                return Err(OptionsError::one(format!(
                    "options must be a table, got {}",
                    json_type(other)
                )));
            }
        };
        let mut reader = Reader {
            map,
            problems: Vec::new(),
        };

        let transport_name: String = reader.get("transport").unwrap_or_else(|| "smtp".into());
        let (is_file, foreign_keys) = match transport_name.as_str() {
            "smtp" => (false, FILE_KEYS),
            "file" => (true, SMTP_KEYS),
            other => {
                reader.problem(format!(
                    "`transport`: unknown transport \"{other}\"; expected \"smtp\" or \"file\""
                ));
                (false, &[][..])
            }
        };
        for key in map.keys() {
            let known = [GENERAL_KEYS, SMTP_KEYS, FILE_KEYS]
                .iter()
                .any(|keys| keys.contains(&key.as_str()));
            if !known {
                reader.problem(format!(
                    "unknown option `{key}`; known options: {}",
                    [GENERAL_KEYS, SMTP_KEYS, FILE_KEYS].concat().join(", ")
                ));
            } else if foreign_keys.contains(&key.as_str()) {
                reader.problem(format!(
                    "option `{key}` does not apply to transport = \"{transport_name}\""
                ));
            }
        }

        let from = reader.required::<String>("from").and_then(|raw| {
            Mailbox::from_str(&raw)
                .map_err(|e| reader.problem(format!("`from`: \"{raw}\" is not an address: {e}")))
                .ok()
        });
        let policy = parse_policy(&mut reader);
        let limits = parse_limits(&mut reader);
        let transport = if is_file {
            reader
                .required::<PathBuf>("dir")
                .and_then(|dir| file_dir(&mut reader, dir, data_dir))
                .map(|dir| TransportOptions::File { dir })
        } else {
            parse_relay(&mut reader).map(TransportOptions::Smtp)
        };

        match (transport, from, policy) {
            (Some(transport), Some(from), Some(policy)) if reader.problems.is_empty() => Ok(Self {
                transport,
                from,
                policy,
                limits,
            }),
            _ => Err(OptionsError(reader.problems)),
        }
    }
}

/// The outbox: `dir` resolved against the data directory, refused when other users could
/// read or replace what is written there.
fn file_dir(reader: &mut Reader<'_>, dir: PathBuf, data_dir: Option<&Path>) -> Option<PathBuf> {
    let dir = match data_dir {
        Some(base) if dir.is_relative() => base.join(dir),
        _ => dir,
    };
    match crate::outbox::unsafe_reason(&dir) {
        None => Some(dir),
        Some(reason) => {
            reader.problem(format!("`dir`: {reason}"));
            None
        }
    }
}

fn parse_policy(reader: &mut Reader<'_>) -> Option<RecipientPolicy> {
    let domains: Vec<String> = reader.get("allowed_domains").unwrap_or_default();
    let mut clean_domains = Vec::new();
    for domain in domains {
        let d = domain.trim().to_ascii_lowercase();
        if d.is_empty() || d.contains(['@', '*', ' ']) || d.starts_with('.') {
            reader.problem(format!(
                "`allowed_domains`: \"{domain}\" is not a domain; list exact domains such as \
                 \"example.com\" (subdomains are not implied, list each one)"
            ));
        } else {
            clean_domains.push(d);
        }
    }
    let addresses: Vec<String> = reader.get("allowed_addresses").unwrap_or_default();
    let mut clean_addresses = Vec::new();
    for address in addresses {
        match Address::from_str(address.trim()) {
            Ok(a) => clean_addresses.push(a.to_string().to_ascii_lowercase()),
            Err(e) => reader.problem(format!(
                "`allowed_addresses`: \"{address}\" is not an address: {e}"
            )),
        }
    }
    let max_recipients: usize = reader
        .get("max_recipients")
        .unwrap_or(DEFAULT_MAX_RECIPIENTS);
    if max_recipients == 0 {
        reader.problem("`max_recipients` must be at least 1");
        return None;
    }
    Some(RecipientPolicy::new(
        clean_domains,
        clean_addresses,
        max_recipients,
    ))
}

fn parse_limits(reader: &mut Reader<'_>) -> MessageLimits {
    let max_body_bytes: usize = reader
        .get("max_body_bytes")
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let max_header_bytes: usize = reader
        .get("max_header_bytes")
        .unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if max_body_bytes == 0 {
        reader.problem("`max_body_bytes` must be at least 1");
    }
    if max_header_bytes < 64 {
        reader.problem("`max_header_bytes` must be at least 64 (an address alone may need that)");
    }
    MessageLimits {
        max_body_bytes,
        max_header_bytes,
    }
}

fn parse_relay(reader: &mut Reader<'_>) -> Option<RelayOptions> {
    let host: Option<String> = reader.required("host");
    let host = host.and_then(|h| {
        let h = h.trim().to_owned();
        if h.is_empty() || h.contains([':', '/', ' ']) && h.parse::<IpAddr>().is_err() {
            reader.problem(format!(
                "`host`: \"{h}\" is not a host name or IP address (give the port in `port`)"
            ));
            None
        } else {
            Some(h)
        }
    });
    let security = match reader.get::<String>("security").as_deref() {
        None | Some("starttls") => Some(Security::StartTls),
        Some("tls") => Some(Security::Tls),
        Some("none") => Some(Security::None),
        Some(other) => {
            reader.problem(format!(
                "`security`: unknown value \"{other}\"; expected \"starttls\", \"tls\" or \"none\""
            ));
            None
        }
    };
    if let (Some(host), Some(Security::None)) = (&host, security)
        && !is_loopback(host)
    {
        reader.problem(format!(
            "`security = \"none\"` sends mail and credentials in clear text, so it is only \
             allowed for a loopback relay (127.0.0.0/8, ::1, localhost), not \"{host}\"; \
             use \"starttls\" or \"tls\""
        ));
    }
    let port: Option<u16> = reader.get("port");
    if port == Some(0) {
        reader.problem("`port` must be between 1 and 65535");
    }
    let credentials = parse_credentials(reader);
    let ca_pem = reader.get::<PathBuf>("ca_file").and_then(|path| {
        if security == Some(Security::None) {
            reader.problem("`ca_file` has no effect with security = \"none\"");
        }
        match std::fs::read(&path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
            Ok(_) => {
                reader.problem(format!(
                    "`ca_file`: {} holds no PEM certificate",
                    path.display()
                ));
                None
            }
            Err(e) => {
                reader.problem(format!("`ca_file`: cannot read {}: {e}", path.display()));
                None
            }
        }
    });
    let pool_size: usize = reader.get("pool_size").unwrap_or(DEFAULT_POOL_SIZE);
    if pool_size == 0 {
        reader.problem("`pool_size` must be at least 1");
    }
    let max_attempts: u32 = reader.get("max_attempts").unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=10).contains(&max_attempts) {
        reader.problem("`max_attempts` must be between 1 and 10");
    }
    let connect_timeout = reader.duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT);
    let send_timeout = reader.duration("send_timeout", DEFAULT_SEND_TIMEOUT);

    let (host, security) = (host?, security?);
    Some(RelayOptions {
        port: port.unwrap_or(security.default_port()),
        host,
        security,
        credentials,
        ca_pem,
        pool_size,
        connect_timeout: connect_timeout?,
        send_timeout: send_timeout?,
        max_attempts,
    })
}

fn parse_credentials(reader: &mut Reader<'_>) -> Option<(String, String)> {
    let username: Option<String> = reader.get("username");
    let password = match reader.map.get("password") {
        None => None,
        Some(Value::String(_)) => {
            reader.problem(
                "`password` must be a secret reference, not the password itself: write \
                 { credential = \"smtp_password\" } (systemd LoadCredential), \
                 { file = \"/etc/agentd/smtp_password\" } or { env = \"SMTP_PASSWORD\" }; \
                 an inline password ends up in version control, backups and logs",
            );
            None
        }
        Some(_) => reader.get::<SecretRef>("password").and_then(|reference| {
            match resolve_secret(&reference) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    reader.problem(format!("`password`: {e}"));
                    None
                }
            }
        }),
    };
    match (username, password) {
        (Some(user), Some(pass)) => Some((user, pass)),
        (Some(_), None) if !reader.map.contains_key("password") => {
            reader.problem("`username` is set but `password` is missing");
            None
        }
        (None, _) if reader.map.contains_key("password") => {
            reader.problem("`password` is set but `username` is missing");
            None
        }
        _ => None,
    }
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Recipients of one message (to + cc + bcc + reply_to) when `max_recipients` is not set.
pub(crate) const DEFAULT_MAX_RECIPIENTS: usize = 10;
/// Relay connections kept open when `pool_size` is not set.
pub(crate) const DEFAULT_POOL_SIZE: usize = 4;
/// Attempts for a transient failure when `max_attempts` is not set.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// TCP connect time to the relay when `connect_timeout` is not set.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One whole delivery attempt when `send_timeout` is not set.
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Relay timeouts are shorter than this: a longer one is a typo (`"10h"` for `"10s"`).
const MAX_RELAY_TIMEOUT: Duration = Duration::from_secs(86_400);

/// A relay timeout: a positive duration shorter than a day.
pub(crate) fn relay_timeout(duration: PositiveDuration) -> Result<Duration, String> {
    if duration.get() < MAX_RELAY_TIMEOUT {
        Ok(duration.get())
    } else {
        Err(format!(
            "`{duration}` is too long: a relay timeout is shorter than a day"
        ))
    }
}

/// A value's kind as an options table (TOML) calls it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "a table",
        other => agentd_sdk::json_kind(other),
    }
}

/// Reads typed fields out of the options table, recording each problem instead of stopping.
struct Reader<'a> {
    map: &'a Map<String, Value>,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    fn get<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.map.get(key)?;
        match T::deserialize(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(format!("`{key}`: {e}"));
                None
            }
        }
    }

    fn required<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.map.contains_key(key) {
            self.problem(format!("`{key}` is required"));
            return None;
        }
        self.get(key)
    }

    /// A relay timeout (a string or a number of seconds), or `default` when absent.
    fn duration(&mut self, key: &str, default: Duration) -> Option<Duration> {
        let Some(value) = self.map.get(key) else {
            return Some(default);
        };
        let checked = match PositiveDuration::deserialize(value) {
            Ok(duration) => relay_timeout(duration),
            Err(error) => Err(error.to_string()),
        };
        checked
            .map_err(|reason| {
                self.problem(format!(
                    "`{key}` must be a positive duration such as \"500ms\", \"10s\" or \"2m\": \
                     {reason}"
                ));
            })
            .ok()
    }
}
