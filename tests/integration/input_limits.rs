//! Hostile input from API clients end to end: system templates expand once and the system
//! prompt is bounded; declared tool schemas are bounded and compiled off the async workers with
//! a deadline, so `/healthz` keeps answering; long participant lists stay linear.

use crate::common;

use std::time::{Duration, Instant};

use agentd_mock::Reply;
use common::{Options, TestDaemon, say, tool};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

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

/// A schema of `n` distinct Unicode-class patterns: each takes milliseconds to compile.
fn costly_schema(n: usize, salt: &str) -> Value {
    let properties: Map<String, Value> = (0..n)
        .map(|i| {
            let pattern = format!("^[\\p{{L}}\\p{{N}}]{{1,64}}{salt}{i}\\w{{16}}$");
            (
                format!("p{i}"),
                json!({"type": "string", "pattern": pattern}),
            )
        })
        .collect();
    json!({"type": "object", "properties": properties})
}

fn declared(name: &str, parameters: Value) -> Value {
    json!({"type": "function", "function": {"name": name, "parameters": parameters}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_schema_compiles_off_the_workers_and_stops_at_its_deadline() {
    let d = daemon(&[
        "tools.schema_compile_timeout=\"500ms\"",
        "tools.max_schema_patterns=1000",
        "tools.max_schema_bytes=1048576",
    ])
    .await;
    let session = d.session().await;
    // As many pathological requests as the runtime has workers: compiled on a worker, they
    // would stop every route for seconds.
    let started = Instant::now();
    let chats: Vec<_> = (0..2)
        .map(|i| {
            let url = d.url(&format!("/sessions/{session}/chat"));
            let http = d.http.clone();
            let mut body = say("hi");
            body["tools"] = json!([declared("costly", costly_schema(300, &format!("s{i}")))]);
            tokio::spawn(async move {
                common::request(&http, reqwest::Method::POST, url, Some(body)).await
            })
        })
        .collect();
    let health = format!("{}/healthz", d.base.trim_end_matches("/api"));
    let mut answered_while_compiling = 0;
    while !chats.iter().all(|c| c.is_finished()) {
        let asked = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(2), d.http.get(&health).send())
            .await
            .expect("/healthz answers within 2 s while schemas compile")
            .expect("/healthz");
        assert_eq!(response.status(), StatusCode::OK);
        if !chats.iter().all(|c| c.is_finished()) {
            answered_while_compiling += 1;
        }
        assert!(asked.elapsed() < Duration::from_secs(2));
    }
    assert!(
        answered_while_compiling > 0,
        "no /healthz answer arrived before the compiles ended"
    );
    for chat in chats {
        let (s, r) = chat.await.unwrap();
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(first_loc(&r), "tools.0.function.parameters", "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("did not compile within 500 ms"),
            "{message}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the compiles were cut off at their deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(d.mock.request_count(), 0);

    // The abandoned compiles stop at their next pattern and give their slots back: an ordinary
    // schema is accepted again within a few seconds (at once, unless the machine is loaded).
    d.mock.push(Reply::text("fine"));
    let mut body = say("hi");
    body["tools"] = json!([declared(
        "weather",
        json!({"type": "object", "properties": {"city": {"type": "string", "pattern": "^[A-Z]"}}})
    )]);
    let retry_until = Instant::now() + Duration::from_secs(5);
    let (s, r) = loop {
        let (s, r) = d.chat(&session, body.clone()).await;
        if s == StatusCode::CREATED || Instant::now() > retry_until {
            break (s, r);
        }
    };
    assert_eq!(s, StatusCode::CREATED, "{r}");
}

#[tokio::test]
async fn declared_tools_are_bounded_per_request_and_per_agent() {
    let d = daemon(&[
        "tools.max_declared_tools=2",
        "tools.max_schema_patterns=2",
        "tools.max_schema_bytes=2000",
    ])
    .await;
    let session = d.session().await;
    let mut body = say("hi");
    body["tools"] = json!([tool("a"), tool("b"), tool("c")]);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(first_loc(&r), "tools", "{r}");

    let mut body = say("hi");
    body["tools"] = json!([tool("a"), declared("b", costly_schema(3, "x"))]);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(first_loc(&r), "tools.1.function.parameters", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools.max_schema_patterns")
    );

    let mut body = say("hi");
    body["tools"] = json!([declared(
        "big",
        json!({"type": "object", "description": "d".repeat(2000)})
    )]);
    let (s, r) = d.chat(&session, body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools.max_schema_bytes")
    );

    let (s, agent) = d.post("/agents", json!({"name": "Toolsmith"})).await;
    assert_eq!(s, StatusCode::CREATED, "{agent}");
    let tools = format!("/agents/{}/tools", agent["id"].as_str().unwrap());
    for name in ["one", "two"] {
        let (s, r) = d.post(&tools, tool(name)).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let (s, r) = d.post(&tools, tool("three")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools.max_declared_tools")
    );
    let (s, r) = d
        .post(&tools, declared("four", costly_schema(3, "y")))
        .await;
    assert!(s.is_client_error(), "{r}");
    assert_eq!(d.mock.request_count(), 0);
}

#[tokio::test]
async fn a_long_participant_list_is_handled_in_linear_time() {
    // Allowed past its default, so the merging itself is what is timed.
    let d = daemon(&["limits.max_session_participants=200000"]).await;
    let (s, agent) = d.post("/agents", json!({"name": "Ada"})).await;
    assert_eq!(s, StatusCode::CREATED, "{agent}");
    // 120,000 distinct ids (1.7 MB): merging them pairwise took tens of seconds.
    let users: Vec<String> = (0..120_000).map(|i| format!("u{i:09}")).collect();
    let started = Instant::now();
    let (s, r) = d
        .post(
            "/sessions",
            json!({"agent_id": agent["id"], "users": users}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("u000000000"),
        "{r}"
    );
    // Tens of seconds when quadratic; well under a second when linear, even on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
