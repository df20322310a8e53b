//! The SMTP side's fault matrix, at the daemon level: a chat turn whose model asks for one
//! `send_email` against a real SMTP server process (aiosmtpd, `smtp_server.py`) that misbehaves
//! in one way per case. Each case checks the error kind the model reads in the tool result,
//! how many messages reached the server (never two), and that the session goes on: the next
//! chat on it succeeds and its history stays well-formed.

use crate::common;
use crate::smtp_support;

use agentd_mock::{Reply, ScriptedCall};
use common::{Options, TestDaemon, assert_history_valid, say, toml_str};
use reqwest::StatusCode;
use serde_json::{Value, json};
use smtp_support::{Certs, ClosedPort, SmtpServer, TempDir, gen_certs};

const PASSWORD: &str = "correct horse";

/// The shipped send_email entry with these handler options.
fn catalog(options: &str) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tools.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&shipped).unwrap();
    let tools = table["tool"].as_array_mut().unwrap();
    tools.retain(|t| t["name"].as_str() == Some("send_email"));
    tools[0]["options"] = toml::Value::Table(toml::from_str(options).unwrap());
    toml::to_string(&table).unwrap()
}

/// Options for a clear-text loopback relay on `port`, plus `extra` lines.
fn plain(port: u16, extra: &str) -> String {
    format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"agent@corp.example\"\n{extra}"
    )
}

/// Options for a STARTTLS relay trusting `ca`, logging in with the password in `password`.
fn secured(port: u16, ca: &std::path::Path, password: Option<&std::path::Path>) -> String {
    let mut options = format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"starttls\"\nca_file = {}\n\
         from = \"agent@corp.example\"\nsend_timeout = \"5s\"\n",
        toml_str(ca.to_str().unwrap())
    );
    if let Some(password) = password {
        options.push_str(&format!(
            "username = \"agent\"\npassword = {{ file = {} }}\n",
            toml_str(password.to_str().unwrap())
        ));
    }
    options
}

/// Server arguments for STARTTLS (and AUTH with [`PASSWORD`] when `auth`).
fn tls_server_args(certs: &Certs, auth: bool) -> Vec<String> {
    let mut args = vec![
        "--starttls".to_owned(),
        "--cert".to_owned(),
        certs.cert.display().to_string(),
        "--key".to_owned(),
        certs.key.display().to_string(),
    ];
    if auth {
        args.extend(["--auth-user", "agent", "--auth-pass", PASSWORD].map(str::to_owned));
    }
    args
}

/// What one faulty turn produced.
struct Outcome {
    /// The tool result the model received, parsed.
    result: Value,
    /// The turn's `tool_runs[0]`.
    run: Value,
}

/// Runs one chat turn whose model asks for one send_email, then a second chat on the same
/// session; checks both answered 201, the second one finished, and the history.
async fn faulty_turn(options: &str) -> Outcome {
    let d = TestDaemon::start_with(Options {
        tools_toml: Some(catalog(options)),
        ..Default::default()
    })
    .await;
    let session = d.session().await;
    d.mock.push(Reply::tool_calls(vec![
        ScriptedCall::new(
            "send_email",
            json!({"to": "ann@corp.example", "subject": "Quarterly report", "body": "Attached."}),
        )
        .with_id("call_mail"),
    ]));
    d.mock.push(Reply::text("I tried to send it."));
    let (status, turn) = d.chat(&session, say("Mail the report to Ann.")).await;
    assert_eq!(status, StatusCode::CREATED, "{turn}");
    assert_eq!(turn["choices"][0]["finish_reason"], "stop", "{turn}");
    let result = result_sent_for(&d, "call_mail");

    d.mock.push(Reply::text("Noted."));
    let (status, next) = d.chat(&session, say("Thanks, anything else?")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the session is not stuck: {next}"
    );
    assert_eq!(next["choices"][0]["message"]["content"], "Noted.");
    let history = d.history(&session).await;
    assert_history_valid(&history);
    let results: Vec<&Value> = history
        .iter()
        .filter(|e| e["role"] == "tool" && e["tool_call_id"] == "call_mail")
        .collect();
    assert_eq!(
        results.len(),
        1,
        "one stored result for the call: {history:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(results[0]["content"].as_str().unwrap()).unwrap(),
        result,
        "history stores what the model read"
    );
    assert_eq!(history.len(), 6, "user, call, result, answer, user, answer");
    Outcome {
        result,
        run: turn["tool_runs"][0].clone(),
    }
}

/// The result the model was sent for `call_id`, parsed.
fn result_sent_for(d: &TestDaemon, call_id: &str) -> Value {
    let sent = d.mock.requests().last().cloned().unwrap();
    let message = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .cloned()
        .expect("the model got a result for the call");
    serde_json::from_str(message["content"].as_str().unwrap()).unwrap()
}

/// Asserts the result is the error `kind` with `retryable`; returns the error object, whose
/// details (`phase`, `attempts`, `code`) sit beside `kind`.
fn assert_error(outcome: &Outcome, kind: &str, retryable: bool) -> Value {
    let error = &outcome.result["error"];
    assert_eq!(error["kind"], kind, "{}", outcome.result);
    assert_eq!(error["retryable"], retryable, "{}", outcome.result);
    assert_eq!(outcome.run["status"], "error", "{}", outcome.run);
    assert_eq!(outcome.run["error_kind"], kind, "{}", outcome.run);
    error.clone()
}

#[tokio::test]
async fn nothing_listening_is_relay_unreachable_and_retryable() {
    let closed = ClosedPort::new();
    let outcome = faulty_turn(&plain(
        closed.port(),
        "max_attempts = 2\nsend_timeout = \"5s\"\n",
    ))
    .await;
    let details = assert_error(&outcome, "relay_unreachable", true);
    assert_eq!(details["phase"], "connect", "{details}");
}

#[tokio::test]
async fn a_relay_that_hangs_before_the_data_times_out_and_nothing_was_sent() {
    let dir = TempDir::new("faults-hang");
    let server = SmtpServer::start(&dir, &["--hang"]);
    let outcome = faulty_turn(&plain(server.port, "send_timeout = \"1s\"\n")).await;
    let details = assert_error(&outcome, "timeout", true);
    assert_eq!(details["phase"], "send", "{details}");
    let message = outcome.result["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was sent"), "{message}");
    assert_eq!(
        server.events_of("mail").len(),
        1,
        "one attempt, not retried"
    );
    assert!(server.events_of("message").is_empty());
}

#[tokio::test]
async fn a_relay_that_takes_the_data_and_never_answers_times_out_without_inviting_a_resend() {
    let dir = TempDir::new("faults-slow-data");
    let server = SmtpServer::start(&dir, &["--data-delay", "30"]);
    let outcome = faulty_turn(&plain(server.port, "send_timeout = \"1s\"\n")).await;
    let details = assert_error(&outcome, "timeout", false);
    assert_eq!(details["phase"], "data", "{details}");
    let message = outcome.result["error"]["message"].as_str().unwrap();
    assert!(message.contains("may or may not"), "{message}");
    assert_eq!(
        server.events_of("data_start").len(),
        1,
        "the data went out once and was not sent again"
    );
}

#[tokio::test]
async fn a_transient_refusal_is_retried_and_the_message_delivered_once() {
    let dir = TempDir::new("faults-4xx");
    let server = SmtpServer::start(&dir, &["--fail-first-rcpt", "451"]);
    let outcome = faulty_turn(&plain(server.port, "send_timeout = \"5s\"\n")).await;
    assert_eq!(outcome.result["status"], "sent", "{}", outcome.result);
    assert_eq!(outcome.result["attempts"], 2, "{}", outcome.result);
    assert_eq!(outcome.run["status"], "ok");
    assert_eq!(server.events_of("rcpt")[0]["code"], 451);
    let messages = server.events_of("message");
    assert_eq!(messages.len(), 1, "delivered once");
    assert_eq!(messages[0]["subject"], "Quarterly report");
}

#[tokio::test]
async fn a_permanent_refusal_is_not_retried() {
    let dir = TempDir::new("faults-5xx");
    let server = SmtpServer::start(&dir, &["--reject", "550"]);
    let outcome = faulty_turn(&plain(server.port, "send_timeout = \"5s\"\n")).await;
    let details = assert_error(&outcome, "rejected_permanent", false);
    assert_eq!(details["code"], 550, "{details}");
    assert_eq!(details["attempts"], 1, "{details}");
    assert_eq!(
        server.events_of("mail").len(),
        1,
        "one attempt reached the relay"
    );
    assert!(server.events_of("message").is_empty());
}

#[tokio::test]
async fn a_refused_login_is_auth_failed_without_the_password() {
    let dir = TempDir::new("faults-auth");
    let certs = gen_certs(&dir);
    let args = tls_server_args(&certs, true);
    let server = SmtpServer::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let password = dir.join("smtp_password");
    std::fs::write(&password, "battery staple").unwrap();
    let outcome = faulty_turn(&secured(server.port, &certs.ca, Some(&password))).await;
    let details = assert_error(&outcome, "auth_failed", false);
    assert_eq!(details["phase"], "auth", "{details}");
    assert!(!outcome.result.to_string().contains("battery"));
    assert!(server.events_of("mail").is_empty());
}

#[tokio::test]
async fn a_relay_certificate_from_another_ca_is_tls_failed() {
    let dir = TempDir::new("faults-wrong-ca");
    let certs = gen_certs(&dir);
    let args = tls_server_args(&certs, false);
    let server = SmtpServer::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let outcome = faulty_turn(&secured(server.port, &certs.wrong_ca, None)).await;
    assert_error(&outcome, "tls_failed", false);
    assert!(server.events().is_empty(), "{:?}", server.events());
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_tls_failed() {
    let dir = TempDir::new("faults-no-starttls");
    let certs = gen_certs(&dir);
    let server = SmtpServer::start(&dir, &[]);
    let outcome = faulty_turn(&secured(server.port, &certs.ca, None)).await;
    assert_error(&outcome, "tls_failed", false);
    assert!(server.events().is_empty(), "{:?}", server.events());
}

/// The relay receives the whole message, then closes the connection without answering. It may
/// have accepted the message: the model must read that the outcome is unknown, and neither the
/// handler nor the model may be invited to send it again.
#[tokio::test]
async fn a_connection_dropped_after_the_data_is_outcome_unknown_and_not_resent() {
    let dir = TempDir::new("faults-drop");
    let server = SmtpServer::start(&dir, &["--drop-after-data"]);
    let outcome = faulty_turn(&plain(
        server.port,
        "max_attempts = 3\nsend_timeout = \"5s\"\n",
    ))
    .await;
    let details = assert_error(&outcome, "outcome_unknown", false);
    assert_eq!(details["phase"], "data", "{details}");
    assert_eq!(details["attempts"], 1, "{details}");
    let messages = server.events_of("message");
    assert_eq!(
        messages.len(),
        1,
        "the message went to the relay once and was not sent again: {messages:?}"
    );
    assert_eq!(messages[0]["answered"], false);
}
