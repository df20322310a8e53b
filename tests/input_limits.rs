//! Hostile input from API clients end to end: system templates expand once and the system
//! prompt is bounded.
mod common;

use agentd::mock_model::Reply;
use common::{Options, TestDaemon, say};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn daemon(sets: &[&str]) -> TestDaemon {
    TestDaemon::start_with(Options {
        sets: sets.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await
}

/// An agent with these fields and a session on it with `session` fields; returns the session id.
async fn session_with(d: &TestDaemon, agent: Value, session: Value) -> String {
    let (s, agent) = d.post("/agents", agent).await;
    assert_eq!(s, StatusCode::CREATED, "{agent}");
    let mut body = session;
    body["agent_id"] = agent["id"].clone();
    let (s, session) = d.post("/sessions", body).await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    session["id"].as_str().expect("session id").to_owned()
}

fn first_loc(body: &Value) -> &str {
    body["error"]["details"][0]["loc"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn template_values_are_inserted_once_not_expanded_again() {
    let d = daemon(&[]).await;
    // Each field names the others: expanded again, 11 KB of this rendered 100 MB per turn.
    let nested = "{{agent.about}}{{agent.instructions}}{{session.situation}}".repeat(40);
    let session = session_with(
        &d,
        json!({"name": nested, "about": nested, "instructions": [nested]}),
        json!({"situation": nested, "system_template": "N={{agent.name}} A={{ agent.about }}"}),
    )
    .await;
    d.mock.push(Reply::text("ok"));
    let (s, r) = d.chat(&session, say("hi")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let sent = d.mock.last_request().expect("the model was called");
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(
        sent["messages"][0]["content"],
        json!(format!("N={nested} A={nested}"))
    );
}

#[tokio::test]
async fn a_system_prompt_over_the_limit_is_a_422_and_stores_nothing() {
    let d = daemon(&["turn.max_system_prompt_bytes=1000"]).await;
    let about = "a".repeat(600);
    let session = session_with(
        &d,
        json!({"name": "Ada", "about": about}),
        json!({"system_template": "{{agent.about}} and again {{agent.about}}"}),
    )
    .await;
    for stream in [false, true] {
        let mut body = say("hi");
        body["stream"] = json!(stream);
        let (s, r) = d.chat(&session, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(first_loc(&r), "system_prompt", "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("turn.max_system_prompt_bytes"),
            "{message}"
        );
    }
    assert_eq!(d.mock.request_count(), 0, "the model was not called");
    assert!(d.history(&session).await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn prompt_text_that_cannot_fit_is_refused_when_stored() {
    let d = daemon(&["turn.max_system_prompt_bytes=1000"]).await;
    let long = "x".repeat(1001);
    let (s, r) = d
        .post("/agents", json!({"name": "Ada", "instructions": long}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(first_loc(&r), "instructions");

    let (s, agent) = d
        .post("/agents", json!({"name": "Ada", "about": "y".repeat(600)}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{agent}");
    let agent_path = format!("/agents/{}", agent["id"].as_str().unwrap());
    // A PATCH is judged on the merged agent: 600 bytes of about plus 500 of instructions.
    let (s, r) = d
        .send(
            reqwest::Method::PATCH,
            &agent_path,
            Some(json!({"instructions": ["z".repeat(500)]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(first_loc(&r), "about");
    let (s, r) = d
        .send(
            reqwest::Method::PATCH,
            &agent_path,
            Some(json!({"instructions": ["z".repeat(100)]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");

    for field in ["situation", "system_template"] {
        let mut body = json!({"agent_id": agent["id"]});
        body[field] = json!(long);
        let (s, r) = d.post("/sessions", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(first_loc(&r), field);
    }
}
