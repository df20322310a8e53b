//! Tests of the `http` handler against a small HTTP/1.1 server on a loopback port.

use std::time::Duration;

use agentd_sdk::testing::{self, TestTool, expect_error_kind};
use agentd_sdk::{CallContext, HandlerFactory};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::HttpFactory;

/// A request as the server saw it.
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Serves one connection with `response` (raw bytes after the request is read) and reports the
/// request. `None` as response: read the request and never answer.
async fn serve_once(response: Option<Vec<u8>>) -> (String, oneshot::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before sending a request");
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed mid-body");
            buffer.extend_from_slice(&chunk[..n]);
        }
        let body = buffer[head_end..head_end + length].to_vec();
        let _ = tx.send(Seen { head, body });
        match response {
            Some(bytes) => {
                socket.write_all(&bytes).await.unwrap();
                socket.shutdown().await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_secs(30)).await,
        }
    });
    (format!("http://{address}/hook"), rx)
}

fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A body without Content-Length, ended by closing the connection.
fn unsized_response(body: &[u8]) -> Vec<u8> {
    let mut bytes =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn handler(options: Value) -> TestTool {
    testing::build(&HttpFactory, options).named("hook")
}

/// The context of every call but the cancelled ones.
fn context() -> CallContext {
    testing::context().session("s1").call_id("call_1").build()
}

async fn call(handler: &TestTool, arguments: Value) -> Result<Value, agentd_sdk::HandlerError> {
    handler
        .call_with(arguments, context())
        .await
        .map(|output| output.content)
}

#[tokio::test]
async fn success_posts_json_with_idempotency_key_and_returns_parsed_body() {
    let (url, seen) = serve_once(Some(response(
        "200 OK",
        "application/json",
        br#"{"ok":true,"id":7}"#,
    )))
    .await;
    let h = handler(json!({ "url": url, "headers": { "X-Source": "agentd" } }));
    let result = call(&h, json!({"to": "a@b.c"})).await.unwrap();
    assert_eq!(
        result,
        json!({"status": 200, "body": {"ok": true, "id": 7}})
    );
    let seen = seen.await.unwrap();
    assert!(
        seen.head.starts_with("POST /hook HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.header("idempotency-key").as_deref(),
        Some(context().idempotency_key.as_str())
    );
    assert_eq!(seen.header("x-source").as_deref(), Some("agentd"));
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/json")
    );
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent, json!({"to": "a@b.c"}));
}

#[tokio::test]
async fn put_and_bearer_token_from_a_secret_file() {
    let dir = tempfile_dir("bearer");
    let path = dir.join("token");
    std::fs::write(&path, "s3cret\n").unwrap();
    let (url, seen) = serve_once(Some(response("201 Created", "text/plain", b"made"))).await;
    let h = handler(json!({ "url": url, "method": "put", "bearer_token": { "file": path } }));
    let result = call(&h, json!({})).await.unwrap();
    assert_eq!(result, json!({"status": 201, "body": "made"}));
    let seen = seen.await.unwrap();
    assert!(seen.head.starts_with("PUT /hook"), "{}", seen.head);
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer s3cret")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn non_2xx_is_an_http_status_error_retryable_only_for_429_and_5xx() {
    let (url, _seen) = serve_once(Some(response(
        "503 Service Unavailable",
        "text/plain",
        b"try later",
    )))
    .await;
    let error = call(&handler(json!({ "url": url })), json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.kind, "http_status");
    assert!(error.retryable);
    let result = error.to_result_json();
    assert_eq!(result["error"]["status"], 503);
    assert_eq!(result["error"]["body"], "try later");

    let (url, _seen) = serve_once(Some(response(
        "400 Bad Request",
        "application/json",
        b"{\"e\":1}",
    )))
    .await;
    let error = call(&handler(json!({ "url": url })), json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.kind, "http_status");
    assert!(!error.retryable);

    let redirect =
        b"HTTP/1.1 302 Found\r\nLocation: http://example.org/\r\nContent-Length: 0\r\n\r\n"
            .to_vec();
    let (url, _seen) = serve_once(Some(redirect)).await;
    let error = call(&handler(json!({ "url": url })), json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.kind, "http_status");
    assert!(
        error.message.contains("redirects are not followed"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn responses_past_the_cap_are_refused_with_or_without_a_length() {
    let big = vec![b'x'; 4096];
    let (url, _seen) = serve_once(Some(response("200 OK", "text/plain", &big))).await;
    let h = handler(json!({ "url": url, "max_response_bytes": 1024 }));
    let error = call(&h, json!({})).await.unwrap_err();
    assert_eq!(error.kind, "response_too_large");

    let (url, _seen) = serve_once(Some(unsized_response(&big))).await;
    let h = handler(json!({ "url": url, "max_response_bytes": 1024 }));
    let error = call(&h, json!({})).await.unwrap_err();
    assert_eq!(error.kind, "response_too_large");

    let (url, _seen) = serve_once(Some(unsized_response(&big[..1000]))).await;
    let h = handler(json!({ "url": url, "max_response_bytes": 1024 }));
    let result = call(&h, json!({})).await.unwrap();
    assert_eq!(result["body"].as_str().map(str::len), Some(1000));
}

#[tokio::test]
async fn closed_port_is_unreachable_and_silence_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let h = handler(json!({ "url": format!("http://{address}/hook") }));
    let error = call(&h, json!({})).await.unwrap_err();
    assert_eq!(error.kind, "unreachable", "{error}");
    assert!(error.retryable);

    let (url, _seen) = serve_once(None).await;
    let h = handler(json!({ "url": url, "timeout": "200ms" }));
    let error = call(&h, json!({})).await.unwrap_err();
    assert_eq!(error.kind, "timeout");
}

#[tokio::test]
async fn cancel_stops_the_wait_and_a_passed_deadline_is_a_timeout() {
    let (url, _seen) = serve_once(None).await;
    let h = handler(json!({ "url": url }));
    let cancelled = h
        .cancel_mid_call(json!({}), Duration::from_millis(50))
        .await;
    expect_error_kind(cancelled, "cancelled");

    let (url, _seen) = serve_once(None).await;
    let h = handler(json!({ "url": url }));
    let late = h.call_past_deadline(json!({})).await;
    let error = expect_error_kind(late, "timeout");
    assert!(error.retryable, "{error}");
}

#[test]
fn build_rejects_hosts_not_allowed_and_other_bad_options_all_at_once() {
    let Err(error) = HttpFactory.build(&json!({
        "url": "http://127.0.0.1:9/hook",
        "allowed_hosts": ["hooks.example.org"],
        "method": "DELETE",
        "timeout": "soon",
        "headers": { "Idempotency-Key": "x" },
    })) else {
        panic!("expected the options to be refused");
    };
    let all = error.0.join("\n");
    assert!(
        all.contains("host `127.0.0.1` is not in allowed_hosts"),
        "{all}"
    );
    assert!(all.contains("method: `DELETE`"), "{all}");
    assert!(all.contains("timeout: invalid duration `soon`"), "{all}");
    assert!(
        all.contains("`Idempotency-Key` is set by the handler"),
        "{all}"
    );

    for (options, expected) in [
        (json!({ "url": "ftp://127.0.0.1/x" }), "scheme `ftp`"),
        (json!({ "url": "not a url" }), "not a valid URL"),
        (json!({ "method": "POST" }), "missing field `url`"),
        (
            json!({ "url": "http://127.0.0.1/", "verb": "POST" }),
            "unknown field `verb`",
        ),
        (
            json!({ "url": "http://127.0.0.1/", "bearer_token": { "env": "AGENTD_HTTP_TEST_UNSET" } }),
            "bearer_token: secret not found",
        ),
    ] {
        let Err(error) = HttpFactory.build(&options) else {
            panic!("{options} should be refused");
        };
        assert!(error.to_string().contains(expected), "{options}: {error}");
    }
    assert!(
        HttpFactory
            .build(&json!({ "url": "http://127.0.0.1:9/hook", "allowed_hosts": ["127.0.0.1"] }))
            .is_ok()
    );
}

#[test]
fn the_options_schema_names_only_options_the_handler_reads() {
    let schema = HttpFactory.options_schema();
    let properties = schema["properties"].as_object().unwrap();
    assert_eq!(properties.len(), 7);
    for name in properties.keys().filter(|name| *name != "url") {
        let options = json!({ "url": "http://127.0.0.1:9/hook", name.as_str(): null });
        if let Err(error) = HttpFactory.build(&options) {
            assert!(
                !error.to_string().contains("unknown field"),
                "{name}: {error}"
            );
        }
    }
    let Err(error) = HttpFactory.build(&json!({ "url": "http://127.0.0.1:9/", "extra": 1 })) else {
        panic!("an option outside the schema is refused");
    };
    assert!(
        error.to_string().contains("unknown field `extra`"),
        "{error}"
    );
}

#[test]
fn option_errors_never_repeat_credentials() {
    let Err(error) = HttpFactory.build(&json!({
        "url": "http://hookuser:hook-password@[::1/hook",
        "bearer_token": "inline-bearer-token",
    })) else {
        panic!("expected the options to be refused");
    };
    let all = error.0.join("\n");
    assert!(all.contains("not the secret itself"), "{all}");
    for secret in ["hookuser", "hook-password", "inline-bearer-token"] {
        assert!(!all.contains(secret), "{secret} in: {all}");
    }
    let Err(error) =
        HttpFactory.build(&json!({ "url": "http://hookuser:hook-password@[::1/hook" }))
    else {
        panic!("expected the URL to be refused");
    };
    let all = error.0.join("\n");
    assert!(all.contains("http://***@[::1/hook"), "{all}");
}

#[tokio::test]
async fn an_endpoint_echoing_credentials_does_not_pass_them_to_the_model() {
    let dir = tempfile_dir("echo");
    let path = dir.join("token");
    std::fs::write(&path, "bearer-token-value\n").unwrap();
    let echo = b"denied: Bearer bearer-token-value for hookuser:hook-password";
    let (url, _seen) = serve_once(Some(response("401 Unauthorized", "text/plain", echo))).await;
    let url = url.replace("http://", "http://hookuser:hook-password@");
    let h = handler(json!({ "url": url, "bearer_token": { "file": path } }));
    let error = call(&h, json!({})).await.unwrap_err();
    let result = error.to_result_json().to_string();
    assert_eq!(error.kind, "http_status", "{result}");
    for secret in ["bearer-token-value", "hookuser", "hook-password"] {
        assert!(!result.contains(secret), "{secret} in: {result}");
    }
    assert!(result.contains("denied: Bearer ***"), "{result}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("agentd-http-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
