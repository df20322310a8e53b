//! The shipped catalog's `send_email` writes into the daemon's own data directory, privately,
//! and `agentd validate` refuses an outbox other users could write.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::binary::AGENTD;
use common::{Options, TestDaemon, say};
use reqwest::StatusCode;

const SHIPPED_TOOLS: &str = include_str!("../../tools.toml");

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_shipped_catalog_writes_mail_into_the_data_dir() {
    let d = TestDaemon::start_with(Options {
        tools_toml: Some(SHIPPED_TOOLS.to_owned()),
        ..Options::default()
    })
    .await;
    let session = d.session().await;
    let (status, body) = d
        .chat(
            &session,
            say("Send an email to john@example.com about our meeting tomorrow."),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["tool_runs"][0]["name"], "send_email", "{body}");
    assert_eq!(body["tool_runs"][0]["status"], "ok", "{body}");

    let outbox = d.data_dir.join("outbox");
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap_or_else(|e| panic!("{}: {e}", outbox.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].extension().is_some_and(|x| x == "eml"),
        "{files:?}"
    );
    assert_eq!(mode(&outbox), 0o700);
    assert_eq!(mode(&files[0]), 0o600);
}

#[test]
fn validate_refuses_an_outbox_every_user_can_write() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let tools = dir.path().join("tools.toml");
    let catalog = SHIPPED_TOOLS.replace(
        "dir = \"outbox\"",
        &format!("dir = {}", common::toml_str(&shared.display().to_string())),
    );
    assert_ne!(catalog, SHIPPED_TOOLS, "the shipped outbox setting moved");
    std::fs::write(&tools, catalog).unwrap();
    let output = Command::new(AGENTD)
        .arg("--tools")
        .arg(&tools)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("validate")
        .env_remove("AGENTD_CONFIG")
        .output()
        .expect("run agentd");
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{text}");
    assert!(text.contains("tool `send_email`"), "{text}");
    assert!(text.contains("writable by every user"), "{text}");
}
