//! End-to-end delivery through a real SMTP server (aiosmtpd, see `smtp_server.py`): clear text,
//! STARTTLS with a private CA, AUTH, relay failures, retries, policy, idempotency, file output.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentd_sdk::testing;
use agentd_sdk::{CallContext, HandlerError, HandlerFactory, ToolCall, ToolHandler, ToolOutput};
use agentd_smtp::SmtpFactory;
use serde_json::{Value, json};

use support::{ClosedPort, SmtpServer, TempDir, gen_certs, header};

fn build(options: Value) -> Arc<dyn ToolHandler> {
    match SmtpFactory.build(&options) {
        Ok(handler) => handler,
        Err(e) => panic!("options rejected: {e}"),
    }
}

fn plain_options(port: u16) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Agent <agent@corp.example>",
    })
}

fn with(mut options: Value, extra: Value) -> Value {
    if let (Value::Object(map), Value::Object(more)) = (&mut options, extra) {
        map.extend(more);
    }
    options
}

fn ctx(call_id: &str, timeout: Duration) -> CallContext {
    testing::context()
        .session("session-relay")
        .call_id(call_id)
        .timeout(timeout)
        .build()
}

fn email() -> Value {
    json!({
        "to": "ann@corp.example",
        "cc": ["Bob <bob@corp.example>"],
        "bcc": "audit@corp.example",
        "subject": "Status report",
        "body": "All systems nominal.",
    })
}

async fn send(
    handler: &Arc<dyn ToolHandler>,
    ctx: CallContext,
) -> Result<ToolOutput, HandlerError> {
    let call = ToolCall {
        tool: "send_email".into(),
        arguments: email(),
    };
    handler.call(call, ctx).await
}

#[tokio::test]
async fn clear_text_send_to_loopback_delivers_headers_and_envelope() {
    let dir = TempDir::new("plain");
    let server = SmtpServer::start(&dir, &[]);
    let handler = build(plain_options(server.port));
    let ctx = ctx("call_plain", Duration::from_secs(10));
    let out = send(&handler, ctx.clone()).await.unwrap().content;

    let message_id = format!("<{}@corp.example>", ctx.idempotency_key);
    assert_eq!(out["status"], "sent");
    assert_eq!(out["message_id"], json!(message_id));
    assert_eq!(out["attempts"], 1);
    assert!(
        out["response"].as_str().unwrap().starts_with("250"),
        "{out}"
    );
    assert_eq!(
        out["accepted"],
        json!(["ann@corp.example", "bob@corp.example", "audit@corp.example"])
    );

    let messages = server.events_of("message");
    assert_eq!(messages.len(), 1);
    let received = &messages[0];
    assert_eq!(received["mail_from"], "agent@corp.example");
    assert_eq!(
        received["rcpt_tos"],
        json!(["ann@corp.example", "bob@corp.example", "audit@corp.example"])
    );
    assert_eq!(received["tls"], false);
    let data = received["data"].as_str().unwrap();
    assert_eq!(header(data, "Message-ID"), Some(message_id));
    assert_eq!(header(data, "Subject").as_deref(), Some("Status report"));
    assert!(header(data, "To").unwrap().contains("ann@corp.example"));
    assert!(header(data, "Cc").unwrap().contains("bob@corp.example"));
    assert_eq!(header(data, "Bcc"), None);
    assert!(data.contains("All systems nominal."));

    // A second call reuses the pooled connection and is delivered as its own message.
    let again = send(&handler, self::ctx("call_plain_2", Duration::from_secs(10))).await;
    assert_eq!(again.unwrap().content["status"], "sent");
    assert_eq!(server.events_of("message").len(), 2);
}

#[tokio::test]
async fn starttls_with_private_ca_succeeds() {
    let dir = TempDir::new("starttls");
    let certs = gen_certs(&dir);
    let server = SmtpServer::start(
        &dir,
        &[
            "--starttls",
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
        ],
    );
    let handler = build(json!({
        "host": "127.0.0.1",
        "port": server.port,
        "security": "starttls",
        "ca_file": certs.ca,
        "from": "agent@corp.example",
    }));
    let out = send(&handler, ctx("call_tls", Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.content["status"], "sent");
    let messages = server.events_of("message");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["tls"], true, "the message travelled over TLS");
}

#[tokio::test]
async fn starttls_with_wrong_ca_fails_and_sends_nothing() {
    let dir = TempDir::new("wrongca");
    let certs = gen_certs(&dir);
    let server = SmtpServer::start(
        &dir,
        &[
            "--starttls",
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
        ],
    );
    let handler = build(json!({
        "host": "127.0.0.1",
        "port": server.port,
        "ca_file": certs.wrong_ca,
        "from": "agent@corp.example",
    }));
    let err = send(&handler, ctx("call_wrong_ca", Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "tls_failed", "{err:?}");
    assert!(!err.retryable);
    assert!(server.events().is_empty(), "{:?}", server.events());
}

fn auth_server(dir: &TempDir) -> (SmtpServer, support::Certs) {
    let certs = gen_certs(dir);
    let server = SmtpServer::start(
        dir,
        &[
            "--starttls",
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
            "--auth-user",
            "agent",
            "--auth-pass",
            "correct horse",
        ],
    );
    (server, certs)
}

fn auth_options(
    server: &SmtpServer,
    certs: &support::Certs,
    password_file: &std::path::Path,
) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": server.port,
        "ca_file": certs.ca,
        "from": "agent@corp.example",
        "username": "agent",
        "password": { "file": password_file },
    })
}

#[tokio::test]
async fn auth_with_password_from_secret_file_works() {
    let dir = TempDir::new("auth");
    let (server, certs) = auth_server(&dir);
    let password = dir.join("smtp_password");
    std::fs::write(&password, "correct horse\n").unwrap();
    let handler = build(auth_options(&server, &certs, &password));
    let out = send(&handler, ctx("call_auth", Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.content["status"], "sent");
    let messages = server.events_of("message");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["auth_user"], "agent");
}

#[tokio::test]
async fn wrong_password_is_auth_failed_and_not_echoed() {
    let dir = TempDir::new("badauth");
    let (server, certs) = auth_server(&dir);
    let password = dir.join("smtp_password");
    std::fs::write(&password, "battery staple").unwrap();
    let handler = build(auth_options(&server, &certs, &password));
    let err = send(&handler, ctx("call_badauth", Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "auth_failed", "{err:?}");
    assert!(!err.retryable);
    let shown = err.to_result_json().to_string();
    assert!(shown.contains("535"), "{shown}");
    assert!(!shown.contains("battery"), "password leaked: {shown}");
    assert!(server.events().is_empty());
}

#[tokio::test]
async fn relay_down_is_reported_quickly() {
    let closed = ClosedPort::new();
    let handler = build(plain_options(closed.port()));
    let started = Instant::now();
    let err = send(&handler, ctx("call_down", Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "relay_unreachable", "{err:?}");
    assert!(err.retryable);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hanging_relay_times_out_within_send_timeout_and_deadline() {
    let dir = TempDir::new("hang");
    let server = SmtpServer::start(&dir, &["--hang"]);
    let handler = build(with(
        plain_options(server.port),
        json!({"send_timeout": "1s"}),
    ));

    let started = Instant::now();
    let err = send(&handler, ctx("call_hang", Duration::from_secs(10)))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind, "timeout", "{err:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // A deadline shorter than send_timeout wins.
    let patient = build(with(
        plain_options(server.port),
        json!({"send_timeout": "30s"}),
    ));
    let started = Instant::now();
    let err = send(&patient, ctx("call_hang_2", Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "timeout", "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(server.events_of("message").is_empty());
}

#[tokio::test]
async fn cancel_stops_a_hanging_send() {
    let dir = TempDir::new("cancel");
    let server = SmtpServer::start(&dir, &["--hang"]);
    let handler = build(plain_options(server.port));
    let ctx = ctx("call_cancel", Duration::from_secs(30));
    let token = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel();
    });
    let started = Instant::now();
    let err = send(&handler, ctx).await.unwrap_err();
    assert_eq!(err.kind, "cancelled", "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn transient_refusal_is_retried_then_delivered() {
    let dir = TempDir::new("retry");
    let server = SmtpServer::start(&dir, &["--fail-first-rcpt", "451"]);
    let handler = build(plain_options(server.port));
    let out = send(&handler, ctx("call_retry", Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.content["status"], "sent");
    assert_eq!(out.content["attempts"], 2);
    let refusals = server.events_of("rcpt");
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["code"], 451);
    assert_eq!(server.events_of("message").len(), 1);
}

#[tokio::test]
async fn permanent_refusal_is_not_retried() {
    let dir = TempDir::new("reject");
    let server = SmtpServer::start(&dir, &["--reject", "550"]);
    let handler = build(plain_options(server.port));
    let err = send(&handler, ctx("call_reject", Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "rejected_permanent", "{err:?}");
    assert!(!err.retryable);
    let details = err.details.clone().unwrap();
    assert_eq!(details["code"], 550);
    assert!(
        details["server"]
            .as_str()
            .unwrap()
            .contains("mailbox unavailable"),
        "{details}"
    );
    assert_eq!(details["attempts"], 1);
    assert_eq!(
        server.events_of("mail").len(),
        1,
        "exactly one attempt reached the relay"
    );
    assert!(server.events_of("message").is_empty());
}

#[tokio::test]
async fn denied_recipient_never_reaches_the_relay() {
    let dir = TempDir::new("denied");
    let server = SmtpServer::start(&dir, &[]);
    let handler = build(with(
        plain_options(server.port),
        json!({"allowed_domains": ["partner.example"]}),
    ));
    let err = send(&handler, ctx("call_denied", Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "denied");
    assert!(err.message.contains("ann@corp.example"), "{}", err.message);
    assert!(server.events().is_empty());
}

#[tokio::test]
async fn same_call_twice_is_delivered_once() {
    let dir = TempDir::new("idem");
    let server = SmtpServer::start(&dir, &[]);
    let handler = build(plain_options(server.port));
    let ctx = ctx("call_idem", Duration::from_secs(10));
    let first = send(&handler, ctx.clone()).await.unwrap().content;
    let second = send(&handler, ctx).await.unwrap().content;
    assert_eq!(server.events_of("message").len(), 1);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["message_id"], first["message_id"]);
    assert_eq!(second["response"], first["response"]);
}

#[tokio::test]
async fn file_transport_writes_one_eml_per_message_id() {
    let dir = TempDir::new("file");
    let outbox = dir.join("outbox");
    let options = json!({"transport": "file", "dir": outbox, "from": "agent@corp.example"});
    let ctx = ctx("call_file", Duration::from_secs(10));
    let out = send(&build(options.clone()), ctx.clone())
        .await
        .unwrap()
        .content;
    assert_eq!(out["status"], "written");
    let path = std::path::PathBuf::from(out["path"].as_str().unwrap());
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("{}@corp.example.eml", ctx.idempotency_key)
    );
    let raw = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        header(&raw, "Message-ID").unwrap(),
        out["message_id"].as_str().unwrap()
    );

    // A replay through a new handler (as after a restart) replaces the file.
    send(&build(options), ctx).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(&outbox).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[tokio::test]
async fn concurrent_calls_with_one_key_send_once() {
    let dir = TempDir::new("race");
    // The first attempt is deferred, so the first call is still busy when the second arrives.
    let server = SmtpServer::start(&dir, &["--fail-first-rcpt", "451"]);
    let handler = build(plain_options(server.port));
    let ctx = ctx("call_race", Duration::from_secs(10));
    let (a, b) = tokio::join!(send(&handler, ctx.clone()), send(&handler, ctx));
    let (a, b) = (a.unwrap().content, b.unwrap().content);
    assert_eq!(server.events_of("message").len(), 1);
    let duplicates = [&a, &b].iter().filter(|r| r["duplicate"] == true).count();
    assert_eq!(duplicates, 1, "{a} {b}");
}

#[tokio::test]
async fn every_address_the_model_writes_is_checked_before_the_relay_sees_it() {
    let dir = TempDir::new("addresses");
    let server = SmtpServer::start(&dir, &[]);
    let handler = build(with(
        plain_options(server.port),
        json!({"allowed_domains": ["corp.example"], "max_recipients": 4}),
    ));
    let refused = [
        (json!({"reply_to": "Boss <boss@evil.example>"}), "denied"),
        (
            json!({"cc": "\"Ann\r\nBcc: spy@evil.example\" <ann@corp.example>"}),
            "invalid_address",
        ),
        (
            json!({"reply_to": "desk@corp.example\r\nBcc: spy@evil.example"}),
            "invalid_address",
        ),
        (
            json!({"reply_to": ["a@corp.example", "b@corp.example"]}),
            "too_many_recipients",
        ),
    ];
    for (i, (extra, kind)) in refused.into_iter().enumerate() {
        let call = ToolCall {
            tool: "send_email".into(),
            arguments: with(email(), extra),
        };
        let err = handler
            .call(
                call,
                ctx(&format!("call_refused_{i}"), Duration::from_secs(10)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{err:?}");
    }
    assert!(server.events().is_empty(), "{:?}", server.events());

    let call = ToolCall {
        tool: "send_email".into(),
        arguments: with(email(), json!({"reply_to": "Desk <desk@corp.example>"})),
    };
    let out = handler
        .call(call, ctx("call_reply_ok", Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.content["status"], "sent");
    let messages = server.events_of("message");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0]["rcpt_tos"],
        json!(["ann@corp.example", "bob@corp.example", "audit@corp.example"]),
        "reply_to is not an envelope recipient"
    );
    let data = messages[0]["data"].as_str().unwrap();
    assert!(
        header(data, "Reply-To")
            .unwrap()
            .contains("desk@corp.example")
    );
}

#[tokio::test]
async fn an_oversized_body_never_reaches_the_relay() {
    let dir = TempDir::new("bigbody");
    let server = SmtpServer::start(&dir, &[]);
    let handler = build(with(
        plain_options(server.port),
        json!({"max_body_bytes": 1000}),
    ));
    let call = ToolCall {
        tool: "send_email".into(),
        arguments: with(email(), json!({"body": "x".repeat(1001)})),
    };
    let err = handler
        .call(call, ctx("call_big", Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "too_large", "{err:?}");
    assert!(err.message.contains("1000"), "{}", err.message);
    assert!(server.events().is_empty());
}

#[tokio::test]
async fn a_connection_dropped_after_the_data_is_outcome_unknown_and_not_retried() {
    let dir = TempDir::new("drop");
    // Only the first message is dropped: a second attempt would be accepted and delivered.
    let server = SmtpServer::start(&dir, &["--drop-after-data"]);
    let handler = build(with(plain_options(server.port), json!({"max_attempts": 3})));
    let err = send(&handler, ctx("call_drop", Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, "outcome_unknown", "{err:?}");
    assert!(!err.retryable);
    let details = err.details.clone().unwrap();
    assert_eq!(details["phase"], "data", "{details}");
    assert_eq!(details["attempts"], 1, "{details}");
    let messages = server.events_of("message");
    assert_eq!(messages.len(), 1, "sent once, not again: {messages:?}");
    assert_eq!(messages[0]["answered"], false);
}

#[tokio::test]
async fn a_refusal_before_the_data_is_still_retried() {
    let dir = TempDir::new("drop-early");
    // A 421 at RCPT comes before any of the message went out: another attempt is safe.
    let server = SmtpServer::start(&dir, &["--fail-first-rcpt", "421"]);
    let handler = build(plain_options(server.port));
    let out = send(&handler, ctx("call_drop_early", Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.content["status"], "sent");
    assert_eq!(out.content["attempts"], 2);
    assert_eq!(server.events_of("message").len(), 1);
}
