//! The official `julep` Python SDK (2.21.0) against agentd: `tests/julep_sdk.py` creates an
//! agent, a user and a session, chats plainly and streamed, and reads the history, validating
//! every response with the SDK's own models. Needs `python3` with `julep==2.21.0`
//! (`.ci/requirements.txt`); the test fails, not skips, when they are missing.

use crate::common;

use std::process::{Command, Output};
use std::time::Duration;

use agentd_mock::{Reply, ScriptedCall};
use common::{KEY, TestDaemon, assert_history_valid};
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/julep_sdk.py");

fn run_script(base: String) -> Output {
    Command::new("python3")
        .arg(SCRIPT)
        .arg(base)
        .arg(KEY)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is required for this test (pip install -r .ci/requirements.txt): {e}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn julep_python_sdk_drives_the_daemon() {
    let d = TestDaemon::start().await;
    d.mock.push(Reply::default_answer());
    d.mock
        .push(Reply::text("Here it comes, piece by piece.").split_chars());
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "echo",
        json!({"text": "sdk"}),
    )]));
    d.mock.push(Reply::text("Echoed."));
    for _ in 0..3 {
        d.mock
            .push(Reply::error(500, json!({"error": {"message": "boom"}})));
    }
    d.mock.push(Reply::tool_calls(vec![ScriptedCall::new(
        "get_weather",
        json!({"city": "Oslo"}),
    )]));
    d.mock.push(Reply::text("Sunny in Oslo."));
    d.mock.push(
        Reply::text("a long answer that the upstream never finishes sending")
            .die_after(3)
            .chunk_delay(Duration::from_millis(5)),
    );

    let base = d.base.clone();
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || run_script(base)),
    )
    .await
    .expect("the SDK script finishes in time")
    .expect("script task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let summary: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}\nstderr:\n{stderr}"));

    assert_eq!(
        summary["session_agents"][0], summary["agent_id"],
        "{summary}"
    );

    let chat = &summary["chat"];
    assert_eq!(chat["role"], "assistant", "{summary}");
    assert_eq!(
        chat["content"], "You said: Hello, can you help me with a task?",
        "{summary}"
    );
    assert_eq!(chat["finish_reason"], "stop");
    assert!(chat["total_tokens"].as_u64().unwrap() > 0);

    let stream = &summary["stream"];
    assert_eq!(
        stream["text"], "Here it comes, piece by piece.",
        "{summary}"
    );
    assert!(stream["chunks"].as_u64().unwrap() > 2, "{summary}");
    let finishes = stream["finish_reasons"].as_array().unwrap();
    let (last, rest) = finishes.split_last().unwrap();
    assert_eq!(last, "stop", "{summary}");
    assert!(rest.iter().all(Value::is_null), "{summary}");
    assert!(
        stream["last_usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{summary}"
    );

    let tool_stream = summary["tool_stream"].as_array().unwrap();
    assert_eq!(tool_stream.len(), 3, "{summary}");
    assert_eq!(tool_stream[0]["calls"], json!(["echo"]), "{summary}");
    let call_id = &tool_stream[0]["ids"][0];
    assert_eq!(tool_stream[1]["name"], "echo", "{summary}");
    assert_eq!(&tool_stream[1]["tool_call_id"], call_id, "{summary}");
    let echoed: Value = serde_json::from_str(tool_stream[1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(echoed, json!({"echo": {"text": "sdk"}}));
    assert_eq!(tool_stream[2]["text"], "Echoed.", "{summary}");

    assert_eq!(summary["upstream_error"]["status"], 502, "{summary}");
    assert!(
        summary["upstream_error"]["message"].is_string(),
        "{summary}"
    );

    let client_tool = &summary["client_tool"];
    assert_eq!(client_tool["finish_reason"], "tool_calls", "{summary}");
    assert_eq!(client_tool["name"], "get_weather");
    let args: Value = serde_json::from_str(client_tool["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Oslo"}));
    assert_eq!(client_tool["answer"], "Sunny in Oslo.");

    let cut = &summary["cut_stream"];
    assert!(cut["chunks"].as_u64().unwrap() >= 2, "{summary}");
    assert!(!cut["text"].as_str().unwrap().is_empty(), "{summary}");
    assert!(cut["last_error"]["message"].is_string(), "{summary}");

    let history = &summary["history"];
    assert_eq!(history["session_id"], summary["session_id"]);
    assert_eq!(
        history["roles"],
        json!([
            "user",
            "assistant", // plain chat
            "user",
            "assistant", // streamed text
            "user",
            "assistant",
            "tool",
            "assistant", // streamed server tool
            // upstream down: the turn leaves no trace
            "user",
            "assistant",
            "tool",
            "assistant" // client tool round trip
                        // upstream cut off mid-answer: no trace either
        ]),
        "{summary}"
    );
    assert_eq!(
        history["contents"][3], "Here it comes, piece by piece.",
        "{summary}"
    );

    let stored = d.history(summary["session_id"].as_str().unwrap()).await;
    assert_eq!(stored.len(), 12);
    assert_history_valid(&stored);

    let sent = d.mock.requests();
    assert_eq!(sent.len(), 10);
    assert_eq!(sent[0]["max_tokens"], 150);
    assert_eq!(sent[1]["stream"], true);
}
