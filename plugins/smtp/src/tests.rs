//! Unit tests for message building, recipient policy, idempotency and option checks, run
//! against lettre's stub transport (no network).

use std::str::FromStr;
use std::time::Duration;

use agentd_sdk::testing;
use agentd_sdk::{CallContext, HandlerFactory, ToolCall, ToolHandler};
use lettre::message::Mailbox;
use lettre::transport::stub::AsyncStubTransport;
use serde_json::{Value, json};

use crate::SmtpFactory;
use crate::handler::{Delivery, SmtpHandler};
use crate::message::MessageLimits;
use crate::options::{
    FILE_KEYS, GENERAL_KEYS, SMTP_KEYS, Security, SmtpOptions, TransportOptions, is_loopback,
    relay_timeout,
};
use crate::policy::RecipientPolicy;

fn stub_handler(policy: RecipientPolicy) -> (SmtpHandler, AsyncStubTransport) {
    let stub = AsyncStubTransport::new_ok();
    let from = Mailbox::from_str("Agent <agent@corp.example>").unwrap();
    let handler = SmtpHandler::with_delivery(from, policy, Delivery::Stub(stub.clone()));
    (handler, stub)
}

fn open_policy() -> RecipientPolicy {
    RecipientPolicy::new(vec![], vec![], 10)
}

fn ctx(call_id: &str) -> CallContext {
    testing::context()
        .session("session-1")
        .call_id(call_id)
        .build()
}

fn call(arguments: Value) -> ToolCall {
    ToolCall {
        tool: "send_email".into(),
        arguments,
    }
}

/// The unfolded value of header `name` in a raw message, if present.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    let mut value: Option<String> = None;
    let mut in_header = false;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if in_header && let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim_start());
            }
            continue;
        }
        in_header = false;
        if let Some((field, rest)) = line.split_once(':')
            && field.eq_ignore_ascii_case(name)
        {
            value = Some(rest.trim().to_owned());
            in_header = true;
        }
    }
    value
}

#[tokio::test]
async fn message_carries_headers_and_envelope_includes_bcc() {
    let (handler, stub) = stub_handler(open_policy());
    let ctx = ctx("call_1");
    let out = handler
        .call(
            call(json!({
                "to": ["Ann <ann@a.example>", "bob@b.example"],
                "cc": "carol@c.example",
                "bcc": ["dave@d.example"],
                "subject": "Quarterly numbers",
                "body": "See attached.",
                "reply_to": "desk@corp.example",
                "unknown_extra": 1
            })),
            ctx.clone(),
        )
        .await
        .unwrap();
    let expected_id = format!("<{}@corp.example>", ctx.idempotency_key);
    assert_eq!(out.content["status"], "sent");
    assert_eq!(out.content["message_id"], json!(expected_id));
    assert_eq!(
        out.content["accepted"],
        json!([
            "ann@a.example",
            "bob@b.example",
            "carol@c.example",
            "dave@d.example"
        ])
    );

    let sent = stub.messages().await;
    assert_eq!(sent.len(), 1);
    let (envelope, raw) = &sent[0];
    let rcpt: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
    assert!(rcpt.contains(&"dave@d.example".to_owned()), "{rcpt:?}");
    assert_eq!(rcpt.len(), 4);
    assert_eq!(
        envelope.from().map(ToString::to_string).as_deref(),
        Some("agent@corp.example")
    );
    assert!(header(raw, "From").unwrap().contains("agent@corp.example"));
    let to = header(raw, "To").unwrap();
    assert!(
        to.contains("ann@a.example") && to.contains("bob@b.example"),
        "{to}"
    );
    assert!(header(raw, "Cc").unwrap().contains("carol@c.example"));
    assert_eq!(header(raw, "Bcc"), None, "Bcc must not be in the headers");
    assert!(!raw.contains("dave@d.example"), "bcc address leaked: {raw}");
    assert_eq!(header(raw, "Subject").as_deref(), Some("Quarterly numbers"));
    assert!(
        header(raw, "Reply-To")
            .unwrap()
            .contains("desk@corp.example")
    );
    assert_eq!(header(raw, "Message-ID"), Some(expected_id));
    assert!(
        header(raw, "Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(raw.contains("See attached."));
}

#[tokio::test]
async fn html_makes_multipart_alternative() {
    let (handler, stub) = stub_handler(open_policy());
    handler
        .call(
            call(json!({
                "to": "ann@a.example",
                "subject": "Hi",
                "body": "plain words",
                "html": "<p>html words</p>"
            })),
            ctx("call_html"),
        )
        .await
        .unwrap();
    let (_, raw) = &stub.messages().await[0];
    let content_type = header(raw, "Content-Type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let plain = raw.find("text/plain").expect("text part");
    let html = raw.find("text/html").expect("html part");
    assert!(plain < html, "plain part comes first");
    assert!(raw.contains("plain words") && raw.contains("<p>html words</p>"));
}

#[tokio::test]
async fn header_values_cannot_inject_lines() {
    let (handler, stub) = stub_handler(open_policy());
    handler
        .call(
            call(json!({
                "to": "ann@a.example",
                "subject": "Hello\r\nBcc: spy@evil.example",
                "body": "x"
            })),
            ctx("call_inject"),
        )
        .await
        .unwrap();
    let (envelope, raw) = &stub.messages().await[0];
    assert_eq!(header(raw, "Bcc"), None);
    assert_eq!(envelope.to().len(), 1);
    assert!(header(raw, "Subject").unwrap().contains("Hello"));
}

#[tokio::test]
async fn policy_allows_listed_domain_and_denies_others_without_sending() {
    let policy = RecipientPolicy::new(vec!["a.example".into()], vec![], 10);
    let (handler, stub) = stub_handler(policy);
    handler
        .call(
            call(json!({"to": "ann@A.example", "subject": "s", "body": "b"})),
            ctx("ok"),
        )
        .await
        .unwrap();
    let err = handler
        .call(
            call(json!({
                "to": "ann@a.example",
                "bcc": "eve@other.example",
                "subject": "s",
                "body": "b"
            })),
            ctx("denied"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, "denied");
    assert!(err.message.contains("eve@other.example"), "{}", err.message);
    assert!(err.message.contains("a.example"), "{}", err.message);
    assert!(!err.retryable);
    assert_eq!(
        stub.messages().await.len(),
        1,
        "the denied message was not sent"
    );
}

#[tokio::test]
async fn too_many_recipients_is_refused() {
    let (handler, stub) = stub_handler(RecipientPolicy::new(vec![], vec![], 2));
    let err = handler
        .call(
            call(json!({
                "to": ["a@x.example", "b@x.example"],
                "cc": ["c@x.example"],
                "subject": "s",
                "body": "b"
            })),
            ctx("many"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, "too_many_recipients");
    assert!(stub.messages().await.is_empty());
}

#[tokio::test]
async fn unparseable_address_is_named() {
    let (handler, stub) = stub_handler(open_policy());
    let err = handler
        .call(
            call(json!({"to": ["ok@x.example", "not an address"], "subject": "s", "body": "b"})),
            ctx("bad"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, "invalid_address");
    assert!(err.message.contains("not an address"), "{}", err.message);
    assert!(stub.messages().await.is_empty());
}

#[tokio::test]
async fn same_key_twice_sends_once_and_reports_duplicate() {
    let (handler, stub) = stub_handler(open_policy());
    let args = json!({"to": "ann@a.example", "subject": "once", "body": "b"});
    let first = handler.call(call(args.clone()), ctx("same")).await.unwrap();
    let second = handler.call(call(args), ctx("same")).await.unwrap();
    assert_eq!(stub.messages().await.len(), 1);
    assert_eq!(first.content.get("duplicate"), None);
    assert_eq!(second.content["duplicate"], true);
    assert_eq!(second.content["message_id"], first.content["message_id"]);
}

#[test]
fn factory_is_named_smtp_and_builds_outside_a_runtime() {
    assert_eq!(SmtpFactory.name(), "smtp");
    let built = SmtpFactory.build(&json!({
        "host": "127.0.0.1", "port": 2525, "security": "none", "from": "a@b.example"
    }));
    assert!(built.is_ok(), "{:?}", built.err());
}

#[test]
fn the_options_schema_names_every_option_the_parser_knows() {
    let schema = SmtpFactory.options_schema();
    let mut declared: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut known: Vec<&str> = [GENERAL_KEYS, SMTP_KEYS, FILE_KEYS].concat();
    declared.sort_unstable();
    known.sort_unstable();
    assert_eq!(declared, known);
    assert_eq!(schema["required"], json!(["from"]));
}

fn problems(options: Value) -> Vec<String> {
    match SmtpOptions::parse(&options, None) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

#[test]
fn inline_password_is_rejected_without_echoing_it() {
    let found = problems(json!({
        "host": "smtp.example.com", "from": "a@b.example",
        "username": "agent", "password": "hunter2-secret"
    }));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("secret reference"), "{}", found[0]);
    assert!(found[0].contains("credential"), "{}", found[0]);
    assert!(
        !found[0].contains("hunter2"),
        "password echoed: {}",
        found[0]
    );
}

#[test]
fn clear_text_is_only_for_loopback() {
    let found =
        problems(json!({"host": "smtp.example.com", "security": "none", "from": "a@b.example"}));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("loopback"), "{}", found[0]);
    for host in ["127.0.0.1", "127.8.9.10", "localhost", "::1"] {
        let found = problems(json!({"host": host, "security": "none", "from": "a@b.example"}));
        assert!(found.is_empty(), "{host}: {found:?}");
    }
    assert!(is_loopback("[::1]") && !is_loopback("10.0.0.1") && !is_loopback("localhost.evil"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let found = problems(json!({
        "host": "smtp.example.com",
        "security": "ssl",
        "pool_size": 0,
        "send_timeout": "soon",
        "allowed_domains": ["*.example.com"],
        "dir": "/tmp/x",
        "colour": "blue"
    }));
    let all = found.join("\n");
    for needle in [
        "`from` is required",
        "`security`",
        "`pool_size`",
        "`send_timeout`",
        "invalid duration `soon`",
        "*.example.com",
        "option `dir` does not apply",
        "unknown option `colour`",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(found.len(), 7, "{all}");
}

#[test]
fn defaults_follow_security_and_secrets_resolve_from_files() {
    let dir = std::env::temp_dir().join(format!("agentd-smtp-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("pw");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let parsed = SmtpOptions::parse(
        &json!({
            "host": "smtp.example.com", "security": "tls", "from": "Bot <bot@b.example>",
            "username": "bot", "password": { "file": secret }
        }),
        None,
    )
    .unwrap();
    let TransportOptions::Smtp(relay) = parsed.transport else {
        panic!("smtp transport expected");
    };
    assert_eq!((relay.port, relay.security), (465, Security::Tls));
    assert_eq!(relay.credentials, Some(("bot".into(), "s3cret".into())));
    assert_eq!(
        (relay.pool_size, relay.max_attempts),
        (4, 3),
        "documented defaults"
    );
    assert_eq!(relay.send_timeout, Duration::from_secs(30));
    let starttls =
        SmtpOptions::parse(&json!({"host": "h.example", "from": "a@b.example"}), None).unwrap();
    let TransportOptions::Smtp(relay) = starttls.transport else {
        panic!("smtp transport expected");
    };
    assert_eq!((relay.port, relay.security), (587, Security::StartTls));
    let missing = problems(json!({
        "host": "h.example", "from": "a@b.example",
        "username": "bot", "password": { "file": dir.join("absent") }
    }));
    assert!(missing[0].contains("absent"), "{missing:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations_parse_with_units() {
    let parse_duration = |text| {
        agentd_sdk::PositiveDuration::parse(text)
            .ok()
            .and_then(|d| relay_timeout(d).ok())
    };
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("0s"), None);
    assert_eq!(parse_duration("10 parsecs"), None);
}

#[tokio::test]
async fn non_ascii_text_is_encoded_for_seven_bit_relays() {
    let (handler, stub) = stub_handler(open_policy());
    handler
        .call(
            call(json!({
                "to": "Jürgen <juergen@a.example>",
                "subject": "Grüße aus Köln",
                "body": "Schöne Grüße, bis später."
            })),
            ctx("call_utf8"),
        )
        .await
        .unwrap();
    let (_, raw) = &stub.messages().await[0];
    assert!(raw.is_ascii(), "{raw}");
    let subject = header(raw, "Subject").unwrap();
    assert!(subject.starts_with("=?utf-8?"), "{subject}");
}

#[tokio::test]
async fn reply_to_is_under_the_recipient_policy() {
    let policy = RecipientPolicy::new(vec!["example.com".into()], vec![], 10);
    let (handler, stub) = stub_handler(policy);
    for reply_to in [
        json!("Boss <boss@evil.org>"),
        json!(["ok@example.com", "x@evil.org"]),
    ] {
        let err = handler
            .call(
                call(json!({
                    "to": "ann@example.com",
                    "reply_to": reply_to,
                    "subject": "s",
                    "body": "b"
                })),
                ctx("reply_denied"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, "denied", "{err:?}");
        assert!(err.message.contains("evil.org"), "{}", err.message);
        assert!(err.message.contains("reply_to"), "{}", err.message);
        assert_eq!(err.details.unwrap()["field"], "reply_to");
    }
    assert!(stub.messages().await.is_empty(), "nothing was sent");

    handler
        .call(
            call(json!({
                "to": "ann@example.com",
                "reply_to": ["Desk <desk@example.com>", "ops@EXAMPLE.com"],
                "subject": "s",
                "body": "b"
            })),
            ctx("reply_ok"),
        )
        .await
        .unwrap();
    let (envelope, raw) = &stub.messages().await[0];
    let reply_to = header(raw, "Reply-To").unwrap();
    assert!(
        reply_to.contains("desk@example.com") && reply_to.contains("ops@EXAMPLE.com"),
        "{reply_to}"
    );
    assert_eq!(envelope.to().len(), 1, "reply_to is not a recipient");
}

#[tokio::test]
async fn line_breaks_in_addresses_are_refused_in_every_field() {
    let (handler, stub) = stub_handler(open_policy());
    let injected = [
        "\"Boss\r\nBcc: spy@evil.example\" <ann@a.example>",
        "Boss\r\n <ann@a.example>",
        "ann@a.example\r\nBcc: spy@evil.example",
        "ann@a.example\nX-Injected: 1",
    ];
    for field in ["to", "cc", "bcc", "reply_to"] {
        for address in injected {
            let mut args = json!({"to": "ann@a.example", "subject": "s", "body": "b"});
            args[field] = json!(address);
            let err = handler.call(call(args), ctx("inject")).await.unwrap_err();
            assert_eq!(err.kind, "invalid_address", "{field} {address:?}: {err:?}");
            assert!(err.message.contains(field), "{}", err.message);
            assert!(
                !err.message.contains('\r') && !err.message.contains('\n'),
                "the result quotes the address escaped: {:?}",
                err.message
            );
        }
    }
    assert!(stub.messages().await.is_empty());
}

#[tokio::test]
async fn reply_to_counts_against_max_recipients_before_any_parsing() {
    let (handler, stub) = stub_handler(RecipientPolicy::new(vec![], vec![], 3));
    let err = handler
        .call(
            call(json!({
                "to": ["a@x.example", "b@x.example"],
                "reply_to": ["c@x.example", "d@x.example"],
                "subject": "s",
                "body": "b"
            })),
            ctx("count"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, "too_many_recipients");
    assert_eq!(err.details.unwrap()["recipients"], 4);
    // A huge list of garbage is refused by its length, not parsed entry by entry.
    let garbage = vec!["not an address"; 50_000];
    let err = handler
        .call(
            call(json!({"to": garbage, "subject": "s", "body": "b"})),
            ctx("garbage"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, "too_many_recipients", "{err:?}");
    assert!(stub.messages().await.is_empty());
}

#[tokio::test]
async fn body_and_header_values_are_bounded() {
    let (handler, stub) = stub_handler(open_policy());
    let handler = handler.with_limits(MessageLimits {
        max_body_bytes: 100,
        max_header_bytes: 80,
    });
    let cases = [
        (
            json!({"to": "a@x.example", "subject": "s", "body": "x".repeat(101)}),
            "body",
        ),
        (
            json!({"to": "a@x.example", "subject": "s", "body": "x".repeat(60), "html": "y".repeat(41)}),
            "body",
        ),
        (
            json!({"to": "a@x.example", "subject": "s".repeat(81), "body": "b"}),
            "subject",
        ),
        (
            json!({"to": format!("{} <a@x.example>", "N".repeat(80)), "subject": "s", "body": "b"}),
            "to",
        ),
        (
            json!({"to": "a@x.example", "reply_to": format!("{} <a@x.example>", "N".repeat(80)), "subject": "s", "body": "b"}),
            "reply_to",
        ),
    ];
    for (args, field) in cases {
        let err = handler.call(call(args), ctx("big")).await.unwrap_err();
        assert_eq!(err.kind, "too_large", "{field}: {err:?}");
        assert!(!err.retryable);
        assert_eq!(err.details.unwrap()["field"], field);
    }
    assert!(stub.messages().await.is_empty());
    // At the limits the message goes out.
    handler
        .call(
            call(json!({
                "to": "a@x.example",
                "subject": "s".repeat(80),
                "body": "x".repeat(60),
                "html": "y".repeat(40)
            })),
            ctx("fits"),
        )
        .await
        .unwrap();
    assert_eq!(stub.messages().await.len(), 1);
}

#[test]
fn size_limits_have_defaults_and_are_checked() {
    let parsed =
        SmtpOptions::parse(&json!({"host": "h.example", "from": "a@b.example"}), None).unwrap();
    assert_eq!(parsed.limits, MessageLimits::default());
    assert_eq!(
        (parsed.limits.max_body_bytes, parsed.limits.max_header_bytes),
        (1 << 20, 998),
        "documented defaults"
    );
    let parsed = SmtpOptions::parse(
        &json!({
            "host": "h.example", "from": "a@b.example", "max_body_bytes": 10, "max_header_bytes": 100
        }),
        None,
    )
    .unwrap();
    assert_eq!(
        parsed.limits,
        MessageLimits {
            max_body_bytes: 10,
            max_header_bytes: 100
        }
    );
    let found = problems(json!({
        "host": "h.example", "from": "a@b.example", "max_body_bytes": 0, "max_header_bytes": 3
    }));
    let all = found.join("\n");
    assert!(
        all.contains("`max_body_bytes`") && all.contains("`max_header_bytes`"),
        "{all}"
    );
}
