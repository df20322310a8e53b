//! `agentd demo`, README's first command: the main job end to end on embedded defaults, run as
//! the built binary, leaving nothing behind when it succeeds.

#![cfg(feature = "demo")]

use std::process::Command;

#[test]
fn the_demo_sends_one_email_and_removes_its_scratch_directory() {
    let child = Command::new(env!("CARGO_BIN_EXE_agentd"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agentd starts");
    let scratch = std::env::temp_dir().join(format!("agentd-demo-{}", child.id()));
    let output = child.wait_with_output().expect("agentd demo ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok: one tool call validated and run, one message on disk"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&scratch.display().to_string()),
        "the demo names its data directory: {stdout}"
    );
    assert!(!scratch.exists(), "{} is left behind", scratch.display());
}
