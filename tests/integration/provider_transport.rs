//! How model calls travel. A plain-http model is called directly, and `provider.read_timeout`
//! bounds its silence before the answer and between streamed chunks. With a proxy named in the
//! environment (`HTTP_PROXY`), calls to a plain-http model go through that proxy.

use crate::common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentd_mock::{MockConfig, MockModel, Reply};
use common::binary::{self, AGENTD, BinaryStore};
use common::sse::stream_chat;
use common::{Options, TestDaemon, say, toml_str};
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "proxy-test-key";

async fn daemon_with_read_timeout() -> TestDaemon {
    TestDaemon::start_with(Options {
        sets: vec![
            "provider.read_timeout=\"300ms\"".into(),
            // The wait for an answer's head covers connecting too: at most 800 ms here.
            "provider.connect_timeout=\"500ms\"".into(),
            "provider.max_attempts=1".into(),
        ],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_model_silent_past_the_read_timeout_fails_the_call_as_timed_out() {
    let d = daemon_with_read_timeout().await;
    let session = d.session().await;
    d.mock
        .push(Reply::text("too late").with_delay(Duration::from_secs(3)));
    let started = Instant::now();
    let (status, body) = d.chat(&session, say("hi")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("timed out after 300ms"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cut off at the read timeout, not when the model answered"
    );

    // The next call is answered on time.
    let (status, body) = d.chat(&session, say("again")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_stream_silent_between_chunks_past_the_read_timeout_ends_in_an_error() {
    let d = daemon_with_read_timeout().await;
    let session = d.session().await;
    // Each chunk 100 ms apart is within the timeout; 1 s apart is not.
    d.mock
        .push(Reply::text("one two three").chunk_delay(Duration::from_millis(100)));
    let s = stream_chat(&d, &session, say("hi")).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.raw);
    assert!(s.raw.contains("three"), "{}", s.raw);

    // Nothing was forwarded yet, so the client gets the failure as a 502.
    d.mock
        .push(Reply::text("one two three").chunk_delay(Duration::from_secs(1)));
    let started = Instant::now();
    let s = stream_chat(&d, &session, say("hi")).await;
    assert_eq!(s.status, StatusCode::BAD_GATEWAY, "{}", s.raw);
    assert!(
        s.raw.contains("stream broken: operation timed out"),
        "{}",
        s.raw
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A forward proxy: records each request line it is sent, then relays the connection to
/// `upstream` byte for byte.
async fn recording_proxy(upstream: std::net::SocketAddr) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = lines.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut first = String::new();
                if client.read_line(&mut first).await.is_err() {
                    return;
                }
                record.lock().unwrap().push(first.trim_end().to_owned());
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                if server.write_all(first.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (port, lines)
}

#[tokio::test]
async fn a_proxy_in_the_environment_carries_calls_to_a_plain_http_model() {
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let (proxy_port, lines) = recording_proxy(mock.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BinaryStore::new().await;
    let mut command = Command::new(AGENTD);
    store.configure(&mut command);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args([
            "--set",
            // A host no resolver knows: only the proxy can reach it.
            &format!("provider.base_url={}", toml_str("http://model.invalid/v1")),
            "--set",
            "provider.max_attempts=1",
        ])
        .arg("serve")
        .env("AGENTD_API_KEY", KEY)
        .env("HTTP_PROXY", format!("http://127.0.0.1:{proxy_port}"));
    let daemon = binary::spawn(command);
    let http = reqwest::Client::new();
    let session = daemon.new_session(&http, KEY).await;
    mock.push(Reply::text("through the proxy"));
    let chat = format!("/sessions/{session}/chat");
    let (status, body) = daemon.post(&http, KEY, &chat, say("hi")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}\n{}", daemon.log());
    assert!(body.to_string().contains("through the proxy"), "{body}");
    assert_eq!(
        lines.lock().unwrap().as_slice(),
        ["POST http://model.invalid/v1/chat/completions HTTP/1.1"],
        "the call went through the proxy, in absolute form"
    );
}
