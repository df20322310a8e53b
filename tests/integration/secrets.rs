//! No configured secret reaches an API client or a log line: the user and password in
//! `provider.base_url`, the provider's API key, the API key, and a webhook tool's URL
//! credentials and bearer token. Every failure path is driven (model unreachable, 5xx, a
//! refused key, bad JSON, a timeout, a stream cut off, a tool failing, bad configuration),
//! every response body is kept, every log line is captured, and all of it is searched.

use crate::common;
use crate::smtp_support::ClosedPort;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use agentd::config::Config;
use agentd::daemon::App;
use agentd_mock::{Reply, ScriptedCall};
use common::binary::AGENTD;
use common::sse::stream_chat;
use common::{KEY, Options, TestDaemon, say, toml_str};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PROVIDER_USER: &str = "provider-user-5e1f";
const PROVIDER_PASSWORD: &str = "provider-password-8a7c";
const PROVIDER_KEY: &str = "sk-provider-key-3d9b";
const HOOK_USER: &str = "hook-user-21c4";
const HOOK_PASSWORD: &str = "hook-password-6f0e";
const HOOK_TOKEN: &str = "hook-token-9b2d";

/// Everything any test of this binary logged, at every level agentd and its libraries log.
static LOG: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Capture(buffer.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init();
    buffer
});

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_log() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

/// Fails naming the secret and where it showed up.
fn assert_no_secret(what: &str, text: &str) {
    for secret in [
        PROVIDER_USER,
        PROVIDER_PASSWORD,
        PROVIDER_KEY,
        HOOK_USER,
        HOOK_PASSWORD,
        HOOK_TOKEN,
        KEY,
    ] {
        assert!(!text.contains(secret), "{secret} leaked in {what}:\n{text}");
    }
}

/// A catalog with a webhook tool and an MCP server whose URLs carry credentials, whose
/// token is a secret reference, and whose endpoints are closed.
fn hook_catalog(dir: &Path, port: u16) -> String {
    let token = dir.join("hook-token");
    std::fs::write(&token, HOOK_TOKEN).unwrap();
    format!(
        r#"
[[tool]]
name = "notify"
description = "Post an event"
handler = "http"
offer = true
parameters = {{ type = "object", properties = {{ event = {{ type = "string" }} }} }}
[tool.options]
url = "http://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:{port}/hook"
bearer_token = {{ file = {token} }}
timeout = "2s"

[[mcp]]
name = "remote"
url = "http://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:{port}/mcp"
headers = {{ Authorization = {{ file = {token} }} }}
start_timeout = "2s"
"#,
        token = toml_str(&token.display().to_string()),
    )
}

/// Settings pointing the daemon at `host` with credentials in the URL and a provider key.
fn provider_sets(dir: &Path, host: &str) -> Vec<String> {
    let key = dir.join("provider-key");
    std::fs::write(&key, PROVIDER_KEY).unwrap();
    vec![
        format!(
            "provider.base_url={}",
            toml_str(&format!(
                "http://{PROVIDER_USER}:{PROVIDER_PASSWORD}@{host}/v1"
            ))
        ),
        format!(
            "provider.api_key={{ file = {} }}",
            toml_str(&key.display().to_string())
        ),
        "provider.max_attempts=2".to_owned(),
        "provider.read_timeout=\"300ms\"".to_owned(),
    ]
}

/// What a test's daemon needs kept alive: its directory and the port its hooks name.
struct Held {
    _dir: tempfile::TempDir,
    _hooks: ClosedPort,
}

async fn daemon(host: Option<&str>) -> (TestDaemon, Held) {
    LazyLock::force(&LOG);
    let dir = tempfile::tempdir().unwrap();
    let hooks = ClosedPort::new();
    let mock = agentd_mock::MockModel::start(Default::default())
        .await
        .unwrap();
    let host = host.map_or_else(|| mock.addr().to_string(), str::to_owned);
    let d = TestDaemon::start_with(Options {
        tools_toml: Some(hook_catalog(dir.path(), hooks.port())),
        sets: provider_sets(dir.path(), &host),
        mock: Some(mock),
        ..Options::default()
    })
    .await;
    (
        d,
        Held {
            _dir: dir,
            _hooks: hooks,
        },
    )
}

#[tokio::test]
async fn an_unreachable_model_names_no_credentials() {
    let provider = ClosedPort::new();
    let (d, _held) = daemon(Some(&format!("127.0.0.1:{}", provider.port()))).await;
    let session = d.session().await;
    let (status, body) = d.chat(&session, say("hello")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("unreachable"), "{body}");
    assert!(
        !message.contains("127.0.0.1"),
        "no provider address: {body}"
    );
    assert_no_secret("a 502 body", &body.to_string());

    let streamed = stream_chat(&d, &session, say("hello")).await;
    assert_eq!(streamed.status, StatusCode::BAD_GATEWAY, "{}", streamed.raw);
    assert_no_secret("a streamed 502 body", &streamed.raw);

    let log = captured_log();
    assert!(log.contains("model call failed"), "{log}");
    assert!(
        log.contains("url=http://127.0.0.1:"),
        "the operator sees where: {log}"
    );
    assert_no_secret("the log", &log);
}

#[tokio::test]
async fn failing_models_and_tools_leak_nothing() {
    let (d, _held) = daemon(None).await;
    let session = d.session().await;
    let mut bodies = Vec::new();

    // 5xx twice (every attempt), with a provider that echoes the key it was sent.
    for _ in 0..2 {
        d.mock.push(Reply::error(
            503,
            json!({"error": {"message": format!("overloaded; your key {PROVIDER_KEY} is fine")}}),
        ));
    }
    let (status, body) = d.chat(&session, say("hello")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("overloaded"),
        "{body}"
    );
    bodies.push(body);

    // The provider refuses the key.
    d.mock.push(Reply::error(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {PROVIDER_KEY}")}}),
    ));
    let (status, body) = d.chat(&session, say("hello")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    bodies.push(body);

    // An answer that is not JSON.
    d.mock
        .push(Reply::raw_body(200, format!("<html>{PROVIDER_KEY}")));
    let (status, body) = d.chat(&session, say("hello")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    bodies.push(body);

    // Too slow on every attempt.
    for _ in 0..2 {
        d.mock
            .push(Reply::text("late").with_delay(Duration::from_secs(1)));
    }
    let (status, body) = d.chat(&session, say("hello")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{body}"
    );
    bodies.push(body);

    // A stream cut off after its first chunk.
    d.mock.push(Reply::text("one two three four").die_after(1));
    let streamed = stream_chat(&d, &session, say("hello")).await;
    bodies.push(Value::String(streamed.raw));

    // A webhook tool whose endpoint is closed, then the answer.
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "notify",
        json!({"event": "x"}),
    )]));
    d.mock.push(Reply::text("the hook failed"));
    let (status, body) = d.chat(&session, say("notify them")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["tool_runs"][0]["error_kind"], "unreachable", "{body}");
    bodies.push(body);
    let history = d.history(&session).await;
    bodies.push(Value::Array(history));

    // A wrong key and no key.
    for key in [Some("not-the-key"), None] {
        let mut request = d.http.get(d.url("/agents"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        bodies.push(Value::String(response.text().await.unwrap()));
    }

    // The secrets were in use: the model was called with the key.
    let recorded = d.mock.recorded();
    assert!(
        recorded
            .iter()
            .any(|r| format!("{:?}", r.headers).contains(PROVIDER_KEY)),
        "the provider key was never sent"
    );
    for (i, body) in bodies.iter().enumerate() {
        assert_no_secret(&format!("response {i}"), &body.to_string());
    }
    // What the model was sent back as the tool's result carries no hook credentials either.
    for request in d.mock.requests() {
        assert_no_secret("a model request", &request.to_string());
    }
    let log = captured_log();
    assert!(
        log.contains("model provider refused agentd's credentials"),
        "{log}"
    );
    assert_no_secret("the log", &log);
}

/// Every way a configuration can be refused, in process and by the real binary.
#[tokio::test]
async fn configuration_errors_name_no_secret() {
    LazyLock::force(&LOG);
    let dir = tempfile::tempdir().unwrap();
    let url = |scheme: &str| format!("{scheme}://{PROVIDER_USER}:{PROVIDER_PASSWORD}@host/v1");
    let mut messages = Vec::new();
    for sets in [
        vec![format!("provider.base_url={}", toml_str(&url("ftp")))],
        vec![format!(
            "provider.base_url={}",
            toml_str(&format!("{PROVIDER_USER}:{PROVIDER_PASSWORD}@host/v1"))
        )],
        vec![format!("provider.api_key={}", toml_str(PROVIDER_KEY))],
        vec![format!("auth.api_keys=[{}]", toml_str(KEY))],
    ] {
        let error = Config::load(None, &sets).expect_err("refused");
        messages.push(error.to_string());
    }
    let bad_url = format!("http://{PROVIDER_USER}:{PROVIDER_PASSWORD}@[::1/v1");
    let sets = vec![
        format!("provider.base_url={}", toml_str(&bad_url)),
        format!(
            "storage.data_dir={}",
            toml_str(&dir.path().display().to_string())
        ),
    ];
    let config = Config::load(None, &sets).expect("the URL is checked when the client is built");
    match App::build(config, agentd::tool::Registry::builtin()).await {
        Ok(_) => panic!("an invalid URL must be refused"),
        Err(error) => messages.push(error.to_string()),
    }
    assert!(
        messages.iter().any(|m| m.contains("not the secret itself")),
        "{messages:?}"
    );
    for message in &messages {
        assert_no_secret("a configuration error", message);
    }

    // The real binary: `validate` and `serve` print what is wrong, never the secret.
    let tools = dir.path().join("tools.toml");
    std::fs::write(
        &tools,
        format!(
            r#"
[[tool]]
name = "notify"
description = "Post an event"
handler = "http"
parameters = {{ type = "object" }}
[tool.options]
url = "http://{HOOK_USER}:{HOOK_PASSWORD}@[::1/hook"
bearer_token = "{HOOK_TOKEN}"
"#
        ),
    )
    .unwrap();
    for (sets, command) in [
        (
            vec![format!("provider.base_url={}", toml_str(&url("ftp")))],
            "validate",
        ),
        (
            vec![format!("provider.base_url={}", toml_str(&bad_url))],
            "validate",
        ),
        (
            vec![format!("provider.api_key={}", toml_str(PROVIDER_KEY))],
            "serve",
        ),
        (Vec::new(), "validate"),
    ] {
        let output = Command::new(AGENTD)
            .args(sets.iter().flat_map(|set| ["--set", set.as_str()]))
            .arg("--tools")
            .arg(&tools)
            .arg("--data-dir")
            .arg(dir.path())
            .arg(command)
            .env_remove("AGENTD_CONFIG")
            .env("RUST_LOG", "debug")
            .output()
            .expect("run agentd");
        assert_eq!(output.status.code(), Some(64), "{output:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.trim().is_empty());
        assert_no_secret(&format!("`agentd {command}` output"), &text);
    }
    assert_no_secret("the log", &captured_log());
}

#[tokio::test]
async fn an_unreachable_mcp_server_names_no_credentials() {
    let (d, _held) = daemon(None).await;
    let status = d
        .wait_mcp("remote", |s| s["failures"].as_u64() >= Some(1))
        .await;
    assert_eq!(status["state"], "down", "{status}");
    assert_no_secret("/readyz", &status.to_string());
    let log = captured_log();
    assert!(log.contains("MCP server did not start"), "{log}");
    assert!(
        log.contains("MCP handshake with http://***@127.0.0.1:"),
        "the server is named, its credentials redacted: {log}"
    );
    assert_no_secret("the log", &log);
}
