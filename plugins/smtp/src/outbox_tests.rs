//! The file transport's directory: resolved inside the data directory, created private, and
//! refused where other users could read or replace the messages.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agentd_sdk::testing;
use agentd_sdk::{BuildContext, HandlerFactory, ToolCall};
use serde_json::json;

use crate::SmtpFactory;

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("agentd-smtp-outbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn file_options(dir: &str) -> serde_json::Value {
    json!({"transport": "file", "dir": dir, "from": "agent@corp.example"})
}

fn in_data_dir(data_dir: &Path) -> BuildContext {
    BuildContext {
        data_dir: Some(data_dir.to_path_buf()),
    }
}

fn build_problems(dir: &str, context: &BuildContext) -> String {
    match SmtpFactory.build_with(&file_options(dir), context) {
        Ok(_) => String::new(),
        Err(error) => error.0.join("\n"),
    }
}

async fn send(handler: &dyn agentd_sdk::ToolHandler) -> Result<serde_json::Value, String> {
    let call = ToolCall {
        tool: "send_email".into(),
        arguments: json!({"to": "john@example.com", "subject": "Hi", "body": "Hello"}),
    };
    let ctx = testing::context()
        .session("session-1")
        .call_id("call-1")
        .build();
    handler
        .call(call, ctx)
        .await
        .map(|out| out.content)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_relative_dir_lives_in_the_data_dir_and_messages_are_private() {
    let data = Scratch::new("relative");
    let handler = SmtpFactory
        .build_with(&file_options("outbox"), &in_data_dir(&data.0))
        .unwrap_or_else(|e| panic!("{e}"));
    let written = send(handler.as_ref()).await.unwrap();
    let path = PathBuf::from(written["path"].as_str().unwrap());
    assert_eq!(path.parent(), Some(data.0.join("outbox").as_path()));
    assert_eq!(mode(&data.0.join("outbox")), 0o700);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn directories_others_can_write_are_refused() {
    let scratch = Scratch::new("shared");
    let context = in_data_dir(&scratch.0);

    let shared = scratch.0.join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    let problems = build_problems(shared.to_str().unwrap(), &context);
    assert!(
        problems.contains("writable by every user (mode 777)"),
        "{problems}"
    );

    // Sticky or not, a directory every user can write is not an outbox.
    chmod(&shared, 0o1777);
    let problems = build_problems(shared.to_str().unwrap(), &context);
    assert!(
        problems.contains("writable by every user (mode 1777)"),
        "{problems}"
    );

    // Below a sticky one, a directory agentd creates itself is fine ...
    assert_eq!(build_problems("shared/outbox", &context), "");
    // ... but not below one without the sticky bit: anyone could replace it.
    chmod(&shared, 0o777);
    let problems = build_problems("shared/outbox", &context);
    assert!(
        problems.contains("writable by every user without the sticky bit"),
        "{problems}"
    );

    let file = scratch.0.join("file");
    std::fs::write(&file, "x").unwrap();
    let problems = build_problems(file.to_str().unwrap(), &context);
    assert!(problems.contains("is not a directory"), "{problems}");
}

#[tokio::test]
async fn a_directory_opened_up_after_the_load_is_not_written_to() {
    let data = Scratch::new("later");
    let handler = SmtpFactory
        .build_with(&file_options("outbox"), &in_data_dir(&data.0))
        .unwrap_or_else(|e| panic!("{e}"));
    let outbox = data.0.join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    chmod(&outbox, 0o777);
    let error = send(handler.as_ref()).await.unwrap_err();
    assert!(error.starts_with("write_failed"), "{error}");
    assert!(error.contains("writable by every user"), "{error}");
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 0);
}
