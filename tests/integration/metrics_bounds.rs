//! `/metrics` stays bounded whatever clients and the model send: made-up HTTP methods and
//! paths (unauthenticated), made-up model names in chat requests and tool names the model
//! invents all end up in a fixed set of series, the overflow labelled `other`. It runs the real
//! binary: the metrics registry is per process, and the label limits are its configuration.

use crate::common;
use crate::systemd_support::{Daemon, Setup, write_tools};

use agentd_mock::{MockConfig, MockModel, Reply, ScriptedCall};
use common::{KEY, say};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Label values kept per open label in this test (`server.metrics_max_label_values`).
const MAX_VALUES: usize = 4;
/// Longest label value kept in this test (`server.metrics_max_label_bytes`).
const MAX_BYTES: usize = 24;

#[tokio::test]
async fn series_stay_bounded_under_made_up_methods_paths_models_and_tools() {
    let dir = tempfile::tempdir().unwrap();
    let tools = write_tools(dir.path(), "");
    let mock = MockModel::start(MockConfig::default()).await.unwrap();
    let sets = [
        format!("server.metrics_max_label_values={MAX_VALUES}"),
        format!("server.metrics_max_label_bytes={MAX_BYTES}"),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let d = Daemon::start(Setup::new(dir.path(), &tools, &mock).sets(&sets)).await;
    let session = d.session().await;
    // A model name with a quote and a line feed, admitted first so it is kept as a label.
    let mut quoted = say("hello");
    quoted["model"] = json!("q\"uo\nte");
    let (s, r) = d.chat(&session, quoted).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    // The scrape itself is a series; it exists before the first snapshot is compared.
    metrics(&d).await;

    hostile_round(&d, &mock, &session, "first").await;
    let first = metrics(&d).await;
    hostile_round(&d, &mock, &session, "second").await;
    let second = metrics(&d).await;

    let (before, after) = (series(&first), series(&second));
    let added: Vec<&&str> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(
        added.is_empty(),
        "a second round of new names added series: {added:?}"
    );
    assert_eq!(after.len(), before.len());
    for name in ["BREW0first", "BREW0second", "/made/up", "invented"] {
        assert!(!second.contains(name), "{name} became a label:\n{second}");
    }
    assert!(second.contains("method=\"other\""), "{second}");
    assert!(second.contains("route=\"unmatched\""), "{second}");
    assert!(second.contains("tool=\"other\""), "{second}");
    assert!(second.contains("model=\"other\""), "{second}");
    assert!(
        second.contains("model=\"llama3.2\""),
        "the configured model keeps its own series:\n{second}"
    );
    let models = label_values(&second, "agentd_model_calls_total", "model");
    assert!(models.len() <= MAX_VALUES + 1, "{models:?}");
    assert!(models.iter().all(|m| m.len() <= MAX_BYTES), "{models:?}");
    // The quote and the line feed of a kept model name are escaped, not written raw.
    assert!(second.contains(r#"model="q\"uo\nte""#), "{second}");
    assert!(
        second
            .lines()
            .all(|line| line.starts_with('#') || line.starts_with("agentd_")),
        "a label value broke a line:\n{second}"
    );
}

/// Unauthenticated requests with made-up methods and paths, chats naming made-up models and a
/// model that calls tools that do not exist; every name is new in each round.
async fn hostile_round(d: &Daemon, mock: &MockModel, session: &str, round: &str) {
    for i in 0..150 {
        let method = Method::from_bytes(format!("BREW{i}{round}").as_bytes()).expect("method");
        for url in [
            d.url(&format!("/made/up/{round}/{i}")),
            d.url(&format!("/api/made/up/{round}/{i}")),
            d.url("/api/agents"),
            d.url(&format!("/api/sessions/{round}-{i}/chat")),
        ] {
            let response = d
                .http
                .request(method.clone(), url)
                .send()
                .await
                .expect("request");
            assert!(response.status().is_client_error(), "{}", response.status());
        }
    }
    for i in 0..6 {
        let mut body = say("hello");
        body["model"] = json!(format!("model-{round}-{i}"));
        let (s, r) = d.chat(session, body).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let mut long = say("hello");
    long["model"] = json!(format!("{round}-{}", "x".repeat(MAX_BYTES)));
    let (s, r) = d.chat(session, long).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    for i in 0..6 {
        mock.push(Reply::tool_calls(vec![ScriptedCall::new(
            format!("invented_{round}_{i}"),
            json!({}),
        )]));
        mock.push(Reply::text("there is no such tool"));
        let (s, r) = d.chat(session, say("use a tool")).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["tool_runs"][0]["error_kind"], "unknown_tool", "{r}");
    }
}

async fn metrics(d: &Daemon) -> String {
    let response = d
        .http
        .get(d.url("/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics body")
}

/// Every sample line's name and labels (the series), without its value.
fn series(text: &str) -> Vec<&str> {
    let mut series: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series))
        .collect();
    series.sort_unstable();
    series
}

/// The distinct values of `label` among the samples of `metric`.
fn label_values(text: &str, metric: &str, label: &str) -> Vec<String> {
    let prefix = format!("{metric}{{");
    let key = format!("{label}=\"");
    let mut values: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|labels| labels.split_once(&key).map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(value, _)| value.to_owned()))
        .collect();
    values.sort();
    values.dedup();
    values
}
