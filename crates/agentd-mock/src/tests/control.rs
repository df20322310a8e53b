//! Recording and the `/_mock/` control endpoints.

use serde_json::{Value, json};

use super::{client, message, post, start, user_request};
use crate::{MockConfig, MockModel};

fn control_url(mock: &MockModel, path: &str) -> String {
    format!("http://{}/_mock/{path}", mock.addr())
}

async fn get_json(mock: &MockModel, path: &str) -> Value {
    client()
        .get(control_url(mock, path))
        .send()
        .await
        .expect("control endpoint answers")
        .json()
        .await
        .expect("control endpoint answers JSON")
}

#[tokio::test]
async fn every_request_is_recorded_with_headers_and_time() {
    let mock = start().await;
    let request = user_request("remember me");
    client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .bearer_auth("sk-test")
        .json(&request)
        .send()
        .await
        .expect("sent");
    let bad = post(&mock, &json!({"model": "m"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(mock.requests(), [request.clone(), json!({"model": "m"})]);
    assert_eq!(mock.request_count(), 2);
    assert_eq!(mock.last_request(), Some(json!({"model": "m"})));
    let recorded = mock.recorded();
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(recorded[0].header("Authorization"), Some("Bearer sk-test"));
    assert!(recorded[0].received_at <= recorded[1].received_at);
    mock.clear_requests();
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn recording_can_be_off_while_counting_goes_on() {
    let config = MockConfig {
        record: false,
        ..MockConfig::default()
    };
    let mock = MockModel::start(config).await.expect("starts");
    message(&mock, &user_request("a")).await;
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 1);
    mock.set_recording(true);
    message(&mock, &user_request("b")).await;
    assert_eq!(mock.requests(), [user_request("b")]);
}

#[tokio::test]
async fn control_endpoints_script_list_count_and_reset() {
    let mock = start().await;
    let http = client();
    let queued: Value = http
        .post(control_url(&mock, "script"))
        .json(&json!([
            {"text": "from the script"},
            {"status": 503, "body": {"error": {"message": "down"}}, "headers": {"retry-after": "3"}}
        ]))
        .send()
        .await
        .expect("script accepted")
        .json()
        .await
        .expect("JSON");
    assert_eq!(queued, json!({"pending": 2}));
    let refused = http
        .post(control_url(&mock, "script"))
        .json(&json!([{"text": "ok"}, {"texts": "typo"}]))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 400);
    assert_eq!(mock.pending_replies(), 2, "a bad script queues nothing");

    assert_eq!(
        message(&mock, &user_request("x")).await["content"],
        "from the script"
    );
    let down = post(&mock, &user_request("y")).await;
    assert_eq!(
        (down.status, &down.headers["retry-after"]),
        (503, &"3".parse().expect("header"))
    );

    let bodies = get_json(&mock, "requests").await;
    assert_eq!(bodies, json!([user_request("x"), user_request("y")]));
    let recorded = get_json(&mock, "recorded").await;
    assert_eq!(recorded[1]["path"], "/v1/chat/completions");
    assert!(recorded[1]["received_at"].as_u64().is_some());
    let stats = get_json(&mock, "stats").await;
    assert_eq!(stats["requests"], 2);
    assert!(stats["busy_ns_total"].as_u64().is_some_and(|ns| ns > 0));

    let cleared = http
        .delete(control_url(&mock, "requests"))
        .send()
        .await
        .expect("deleted");
    assert_eq!(cleared.status(), 204);
    assert_eq!(get_json(&mock, "requests").await, json!([]));
    assert_eq!(get_json(&mock, "stats").await["requests"], 2);

    http.post(control_url(&mock, "script"))
        .json(&json!({"text": "left over"}))
        .send()
        .await
        .expect("queued");
    let reset = http
        .post(control_url(&mock, "reset"))
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status(), 204);
    let stats = get_json(&mock, "stats").await;
    assert_eq!(
        stats,
        json!({"requests": 0, "busy_ns_total": 0, "pending_replies": 0, "recorded": 0})
    );
}

#[tokio::test]
async fn config_endpoint_switches_recording_and_latency() {
    let mock = start().await;
    let changed: Value = client()
        .post(control_url(&mock, "config"))
        .json(&json!({"record": false, "latency_ms": 7}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(changed, json!({"record": false, "latency_ms": 7}));
    message(&mock, &user_request("unseen")).await;
    assert!(mock.requests().is_empty());
    assert!(mock.stats().busy_ns_total >= 7_000_000);
}

#[tokio::test]
async fn shutdown_frees_the_port() {
    let mock = start().await;
    let addr = mock.addr();
    message(&mock, &user_request("hi")).await;
    mock.shutdown().await;
    let after = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&user_request("hi"))
        .send()
        .await;
    assert!(after.is_err(), "nothing listens after shutdown");
}
