//! send_email end to end: a chat turn whose tool call is validated and sent over SMTP to a real
//! SMTP server process (aiosmtpd), with STARTTLS and AUTH; a replayed call sends nothing twice.

use crate::common;
use crate::smtp_support;

use agentd_mock::{Reply, ScriptedCall};
use common::{Options, TestDaemon, assert_history_valid, say, toml_str};
use reqwest::StatusCode;
use serde_json::{Value, json};
use smtp_support::{SmtpServer, TempDir, gen_certs, header};

/// The shipped send_email entry, pointed at the test relay.
fn catalog(options: &str) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tools.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&shipped).unwrap();
    let tools = table["tool"].as_array_mut().unwrap();
    tools.retain(|t| t["name"].as_str() == Some("send_email"));
    tools[0]["options"] = toml::Value::Table(toml::from_str(options).unwrap());
    toml::to_string(&table).unwrap()
}

fn tool_result(d: &TestDaemon) -> Value {
    let sent = d.mock.requests().last().cloned().unwrap();
    let tool = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    serde_json::from_str(tool["content"].as_str().unwrap()).unwrap()
}

/// A daemon whose send_email talks plain SMTP to a fresh relay (no TLS, no AUTH).
async fn plain_relay_daemon(name: &str) -> (TempDir, SmtpServer, TestDaemon) {
    let dir = TempDir::new(name);
    let server = SmtpServer::start(&dir, &[]);
    let options = format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"agent@corp.example\"\n",
        server.port
    );
    let d = TestDaemon::start_with(Options {
        tools_toml: Some(catalog(&options)),
        ..Default::default()
    })
    .await;
    (dir, server, d)
}

#[tokio::test]
async fn a_chat_turn_sends_the_email_over_starttls_with_auth() {
    let dir = TempDir::new("agentd-send-email");
    let certs = gen_certs(&dir);
    let server = SmtpServer::start(
        &dir,
        &[
            "--starttls",
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
            "--auth-user",
            "agent",
            "--auth-pass",
            "s3cret",
        ],
    );
    let password = dir.join("smtp_password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let options = format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nca_file = {}\nusername = \"agent\"\npassword = {{ file = {} }}\nfrom = \"Agent <agent@corp.example>\"\nallowed_domains = [\"example.com\"]\nsend_timeout = \"10s\"\n",
        server.port,
        toml_str(certs.ca.to_str().unwrap()),
        toml_str(password.to_str().unwrap()),
    );
    let d = TestDaemon::start_with(Options {
        tools_toml: Some(catalog(&options)),
        ..Default::default()
    })
    .await;
    let session = d.session().await;
    let (s, r) = d
        .chat(
            &session,
            say("Send an email to john@example.com about our meeting tomorrow."),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["tool_runs"][0]["name"], "send_email");
    assert_eq!(r["tool_runs"][0]["status"], "ok", "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");

    let messages = server.events_of("message");
    assert_eq!(messages.len(), 1, "exactly one message reached the relay");
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["rcpt_tos"], json!(["john@example.com"]));
    let data = messages[0]["data"].as_str().unwrap();
    assert_eq!(
        header(data, "Subject").as_deref(),
        Some("our meeting tomorrow")
    );
    let result = tool_result(&d);
    assert_eq!(result["status"], "sent");
    assert_eq!(
        header(data, "Message-ID").as_deref(),
        result["message_id"].as_str()
    );
    assert_history_valid(&d.history(&session).await);

    // A recipient outside the policy is denied and nothing is sent.
    let (s, _) = d
        .chat(
            &session,
            say("Send an email to eve@evil.example about the keys."),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(tool_result(&d)["error"]["kind"], "denied");
    assert_eq!(server.events_of("message").len(), 1);
}

#[tokio::test]
async fn a_replayed_call_is_answered_from_the_journal_and_sent_once() {
    let (_dir, server, d) = plain_relay_daemon("agentd-send-email-replay").await;
    let session = d.session().await;
    let call = || {
        Reply::tool_calls(vec![
            ScriptedCall::new(
                "send_email",
                json!({"to": "a@example.com", "subject": "Hi", "body": "Hello"}),
            )
            .with_id("call_same"),
        ])
    };
    d.mock.push(call());
    d.mock.push(Reply::text("sent"));
    // Not saved: the call is journaled (every server call is) but not in history, so the
    // same id coming back is taken for the same call.
    let mut unsaved = say("mail a");
    unsaved["save"] = json!(false);
    let (s, r) = d.chat(&session, unsaved).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let first = tool_result(&d);
    // The model sends the very same call (same id) again.
    d.mock.push(call());
    d.mock.push(Reply::text("sent again?"));
    let (s, r) = d.chat(&session, say("mail a again")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["tool_runs"][0]["status"], "replayed", "{r}");
    assert_eq!(
        tool_result(&d),
        first,
        "the journal's result is given again"
    );
    assert_eq!(
        server.events_of("message").len(),
        1,
        "exactly one message received"
    );
}

/// A provider that numbers calls per response sends `call_0` every time. With nothing in
/// history to rename it against (`save: false`), a second email to another recipient under the
/// same id is a new call: it is sent, not answered with the first call's result.
#[tokio::test]
async fn a_reused_call_id_with_other_arguments_sends_again() {
    let (_dir, server, d) = plain_relay_daemon("agentd-send-email-reused-id").await;
    let session = d.session().await;
    for to in ["a@example.com", "b@example.com"] {
        d.mock.push(Reply::tool_calls(vec![
            ScriptedCall::new(
                "send_email",
                json!({"to": to, "subject": "Hi", "body": "Hello"}),
            )
            .with_id("call_0"),
        ]));
        d.mock.push(Reply::text("sent"));
        let mut body = say(&format!("mail {to}"));
        body["save"] = json!(false);
        let (s, r) = d.chat(&session, body).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["tool_runs"][0]["status"], "ok", "{to}: {r}");
        assert_eq!(tool_result(&d)["status"], "sent");
    }
    let messages = server.events_of("message");
    let recipients: Vec<&Value> = messages.iter().map(|m| &m["rcpt_tos"]).collect();
    assert_eq!(
        recipients,
        [&json!(["a@example.com"]), &json!(["b@example.com"])]
    );
}
