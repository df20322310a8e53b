//! `agentd demo`: the main job end to end, offline. Starts the mock model and the daemon on
//! loopback ports, then plays the curl flow of Julep's chat guide over real HTTP (agent, user,
//! session, a chat whose `send_email` call is validated and run), and prints what happened:
//! the tool run, the answer, the message written to disk and the stored history.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentd_mock::{MockConfig, MockModel};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::App;
use crate::tool::Registry;

/// The shipped catalog, used as is: its file transport writes into the data directory.
const SHIPPED_TOOLS: &str = include_str!("../../tools.toml");

pub(super) fn run() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo in a scratch directory of its own, removed once the demo succeeded; kept, and
/// named, when it failed, for a look at what agentd wrote.
async fn demo() -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("agentd-demo-{}", std::process::id()));
    let outcome = demo_in(&scratch).await;
    match &outcome {
        Ok(()) => {
            if let Err(e) = std::fs::remove_dir_all(&scratch) {
                eprintln!("could not remove {}: {e}", scratch.display());
            }
        }
        Err(_) => eprintln!("agentd's files are kept in {}", scratch.display()),
    }
    outcome
}

async fn demo_in(scratch: &Path) -> Result<(), String> {
    let data_dir = scratch.join("data");
    // The shipped catalog's relative `dir`, which agentd resolves against the data directory.
    let outbox = data_dir.join("outbox");
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    println!(
        "agentd demo: the main job end to end, offline (mock model, real HTTP, SQLite, tool)\n"
    );

    let mock = MockModel::start(MockConfig::default())
        .await
        .map_err(|e| format!("mock model: {e}"))?;
    println!("mock model   {}", mock.base_url());

    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    config.storage.data_dir = data_dir;
    config.provider.base_url = mock.base_url();
    config.provider.model = "mock-model".into();
    config.auth.api_keys = Vec::new();
    let tools_path = scratch.join("tools.toml");
    std::fs::write(&tools_path, SHIPPED_TOOLS)
        .map_err(|e| format!("{}: {e}", tools_path.display()))?;
    config.tools.catalog = Some(tools_path.clone());
    let app = App::build(config, Registry::builtin())
        .await
        .map_err(|e| e.to_string())?;
    let listener = app.bind().await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let key = std::fs::read_to_string(
        app.config
            .storage
            .data_dir
            .join(crate::daemon::keys::GENERATED_KEY_FILE),
    )
    .map_err(|e| format!("generated key: {e}"))?;
    let shutdown = CancellationToken::new();
    let app = std::sync::Arc::new(app);
    let server = {
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tokio::spawn(async move { app.serve(listener, shutdown).await })
    };
    let base = format!("http://{addr}/api");
    println!("agentd       {base}   (data: {})\n", scratch.display());

    let client = Client {
        http: reqwest::Client::new(),
        base,
        key: key.trim().to_owned(),
    };
    let agent = client
        .post("/agents", json!({"name": "Mailer", "about": "Sends email for the user", "instructions": ["Use send_email when asked to email someone."]}))
        .await?;
    let user = client.post("/users", json!({"name": "Ada"})).await?;
    let session = client
        .post(
            "/sessions",
            json!({"agent_id": agent["id"], "user_id": user["id"]}),
        )
        .await?;
    let session_id = session["id"].as_str().unwrap_or_default().to_owned();
    let chat = client
        .post(
            &format!("/sessions/{session_id}/chat"),
            json!({
                "messages": [{"role": "user", "content": "Send an email to john@example.com about our meeting tomorrow."}],
                "tools": [{"type": "function", "function": {
                    "name": "send_email",
                    "description": "Send an email to a recipient",
                    "parameters": {"type": "object", "properties": {
                        "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
                        "required": ["to", "subject", "body"]}}}],
                "max_tokens": 150
            }),
        )
        .await?;
    for run in chat["tool_runs"].as_array().into_iter().flatten() {
        println!(
            "   tool run    {} {} ({:.1} ms)",
            run["name"].as_str().unwrap_or_default(),
            run["status"].as_str().unwrap_or_default(),
            run["duration_ms"].as_f64().unwrap_or_default()
        );
    }
    let choice = &chat["choices"][0];
    println!("   answer      {}", choice["message"]["content"]);
    println!(
        "   finish      {} after {} model calls\n",
        choice["finish_reason"], chat["steps"]
    );

    for file in eml_files(&outbox) {
        println!("message written by send_email: {}", file.display());
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines().take(14) {
            println!("   | {line}");
        }
        println!();
    }

    let history = client
        .get(&format!("/sessions/{session_id}/history"))
        .await?;
    let entries = history["entries"].as_array().cloned().unwrap_or_default();
    println!("stored history ({} entries, oldest first):", entries.len());
    for entry in &entries {
        let content = match (&entry["content"], &entry["tool_calls"]) {
            (_, Value::Array(calls)) if !calls.is_empty() => {
                format!("tool calls: {}", entry["tool_calls"])
            }
            (Value::String(s), _) => s.clone(),
            (other, _) => other.to_string(),
        };
        let short: String = content.chars().take(110).collect();
        println!(
            "   {:<9} {:<13} {short}",
            entry["role"].as_str().unwrap_or_default(),
            entry["source"].as_str().unwrap_or_default()
        );
    }

    shutdown.cancel();
    let _ = server.await;
    mock.shutdown().await;
    let sent = eml_files(&outbox).len();
    if sent == 1 && choice["finish_reason"] == "stop" {
        println!("\nok: one tool call validated and run, one message on disk, answer returned");
        Ok(())
    } else {
        Err(format!(
            "expected one message and a final answer; got {sent} message(s), finish_reason {}",
            choice["finish_reason"]
        ))
    }
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect()
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        println!("-> POST {path} {}", short(&body));
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        self.read(response).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        self.read(response).await
    }

    async fn read(&self, response: reqwest::Response) -> Result<Value, String> {
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        let id = body["id"]
            .as_str()
            .map(|id| format!(" id={id}"))
            .unwrap_or_default();
        println!("<- {status}{id}");
        Ok(body)
    }
}

fn short(body: &Value) -> String {
    let text = body.to_string();
    if text.chars().count() > 100 {
        format!("{}…", text.chars().take(100).collect::<String>())
    } else {
        text
    }
}
