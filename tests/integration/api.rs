//! The resource endpoints: happy paths and their 401/403/404/422 answers, lists, history.

use crate::common;

use common::{KEY, TestDaemon, say};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn auth_is_required_and_checked_on_every_api_route() {
    let d = TestDaemon::start().await;
    let none = d.http.get(d.url("/agents")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");

    let wrong = d
        .http
        .get(d.url("/agents"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    let x_auth = d
        .http
        .get(d.url("/agents"))
        .header("X-Auth-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(x_auth.status(), StatusCode::OK);
    let x_auth_bearer = d
        .http
        .get(d.url("/agents"))
        .header("X-Auth-Key", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(x_auth_bearer.status(), StatusCode::OK);

    // Unknown routes under the API also need the key, so they do not reveal what exists.
    let unknown = d.http.post(d.url("/sessions/x/chat")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

    // Health needs none.
    let base = d.base.trim_end_matches("/api").to_owned();
    for path in ["/healthz", "/readyz"] {
        let r = d.http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn agents_crud_and_create_or_update() {
    let d = TestDaemon::start().await;
    let (s, agent) = d
        .post(
            "/agents",
            json!({"name": "A", "about": "x", "model": "m1", "instructions": "one", "metadata": {"team": "red"}, "unknown_field": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = agent["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(agent["instructions"], json!(["one"]));
    assert!(agent["created_at"].as_str().unwrap().ends_with('Z'));

    let (s, got) = d.get(&format!("/agents/{id}")).await;
    assert_eq!((s, &got["name"]), (StatusCode::OK, &json!("A")));

    let (s, patched) = d
        .send(
            Method::PATCH,
            &format!("/agents/{id}"),
            Some(json!({"about": "y", "metadata": {"size": 2}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(patched["about"], "y");
    assert_eq!(patched["name"], "A");
    assert_eq!(patched["metadata"], json!({"team": "red", "size": 2}));

    let (s, put) = d
        .send(
            Method::PUT,
            &format!("/agents/{id}"),
            Some(json!({"name": "B"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(put["about"], "");
    assert_eq!(put["created_at"], agent["created_at"]);

    let fixed = "0190e6a0-0000-7000-8000-000000000001";
    let (s, created) = d
        .post(&format!("/agents/{fixed}"), json!({"name": "C"}))
        .await;
    assert_eq!(
        (s, created["id"].as_str()),
        (StatusCode::CREATED, Some(fixed))
    );
    let (s, updated) = d
        .post(&format!("/agents/{fixed}"), json!({"name": "C2"}))
        .await;
    assert_eq!((s, &updated["name"]), (StatusCode::CREATED, &json!("C2")));
    assert_eq!(updated["created_at"], created["created_at"]);

    let (s, deleted) = d.send(Method::DELETE, &format!("/agents/{id}"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["jobs"], json!([]));
    let (s, missing) = d.get(&format!("/agents/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "not_found");
    let (s, _) = d.send(Method::DELETE, &format!("/agents/{id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn validation_errors_are_422_with_locations() {
    let d = TestDaemon::start().await;
    let (s, e) = d.post("/agents", json!({"about": "no name"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"][0]["loc"], "name");

    let (s, e) = d.post("/agents", json!({"name": 5})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"][0]["loc"], "name");

    let raw = d
        .http
        .post(d.url("/agents"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let (s, e) = d.post("/sessions", json!({"situation": "no agent"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, e) = d
        .post(
            "/sessions",
            json!({"agent": "0190e6a0-0000-7000-8000-00000000dead"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("agent"));

    let session = d.session().await;
    let (s, e) = d
        .chat(
            &session,
            json!({"messages": [{"role": "robot", "content": "hi"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"][0]["loc"], "messages.0.role");
    let (s, _) = d.chat(&session, json!({"messages": []})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d
        .chat(&session, json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d
        .chat(
            &session,
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d
        .chat("0190e6a0-0000-7000-8000-00000000beef", say("hi"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = d
        .post(
            "/sessions",
            json!({"agent": "x", "context_overflow": "adaptive"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}

#[tokio::test]
async fn lists_paginate_sort_and_filter_by_metadata() {
    let d = TestDaemon::start().await;
    for i in 0..5 {
        let team = if i % 2 == 0 { "even" } else { "odd" };
        let (s, _) = d
            .post(
                "/users",
                json!({"name": format!("u{i}"), "metadata": {"team": team, "n": i}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = d.get("/users").await;
    assert_eq!(names(&all), ["u4", "u3", "u2", "u1", "u0"]);
    let (_, page) = d.get("/users?limit=2&offset=1&direction=asc").await;
    assert_eq!(names(&page), ["u1", "u2"]);
    let (_, even) = d
        .get("/users?metadata_filter.team=even&direction=asc")
        .await;
    assert_eq!(names(&even), ["u0", "u2", "u4"]);
    let (_, three) = d.get("/users?metadata_filter.n=3").await;
    assert_eq!(names(&three), ["u3"]);
    let (s, _) = d.get("/users?limit=5000").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d.get("/users?sort_by=name").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, e) = d.send(Method::DELETE, "/users", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{e}");
    assert_eq!(e["error"]["code"], "method_not_allowed");
    let (s, e) = d.get("/nowhere").await;
    assert_eq!(
        (s, &e["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("no_route"))
    );
}

#[tokio::test]
async fn sessions_accept_every_participant_form() {
    let d = TestDaemon::start().await;
    let (_, a1) = d.post("/agents", json!({"name": "a1"})).await;
    let (_, a2) = d.post("/agents", json!({"name": "a2"})).await;
    let (_, u1) = d.post("/users", json!({"name": "u1"})).await;
    let (s, one) = d
        .post("/sessions", json!({"agent": a1["id"], "user": u1["id"]}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(one["agents"], json!([a1["id"]]));
    assert_eq!(one["users"], json!([u1["id"]]));
    assert_eq!(one["kind"], "single_agent_single_user");
    let (s, many) = d
        .post("/sessions", json!({"agents": [a1["id"], a2["id"]], "situation": "planning", "metadata": {"k": "v"}}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(many["agents"].as_array().unwrap().len(), 2);
    let id = many["id"].as_str().unwrap();
    let (s, patched) = d
        .send(
            Method::PATCH,
            &format!("/sessions/{id}"),
            Some(json!({"situation": "review"})),
        )
        .await;
    assert_eq!(
        (s, &patched["situation"]),
        (StatusCode::OK, &json!("review"))
    );
    assert_eq!(patched["agents"], many["agents"]);
    let (_, list) = d.get("/sessions?metadata_filter.k=v").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (s, _) = d
        .send(Method::DELETE, &format!("/sessions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = d.get(&format!("/sessions/{id}/history")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn agent_tools_crud() {
    let d = TestDaemon::start().await;
    let (_, agent) = d.post("/agents", json!({"name": "a"})).await;
    let agent_id = agent["id"].as_str().unwrap();
    let tool = json!({"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}});
    let (s, created) = d.post(&format!("/agents/{agent_id}/tools"), tool).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "lookup");
    let tool_id = created["id"].as_str().unwrap();
    let (_, list) = d.get(&format!("/agents/{agent_id}/tools")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (s, patched) = d
        .send(
            Method::PATCH,
            &format!("/agents/{agent_id}/tools/{tool_id}"),
            Some(json!({"description": "new"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(patched["function"]["description"], "new");
    let (s, _) = d
        .post(
            &format!("/agents/{agent_id}/tools"),
            json!({"type": "function", "function": {"name": "bad name!"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d
        .post(
            &format!("/agents/{agent_id}/tools"),
            json!({"function": {"name": "t", "parameters": {"type": "nonsense"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = d
        .send(
            Method::DELETE,
            &format!("/agents/{agent_id}/tools/{tool_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = d
        .send(
            Method::DELETE,
            &format!("/agents/{agent_id}/tools/{tool_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = d
        .get("/agents/0190e6a0-0000-7000-8000-00000000dead/tools")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn history_pages_oldest_first_and_clears() {
    let d = TestDaemon::start().await;
    let session = d.session().await;
    for text in ["one", "two"] {
        let (s, r) = d.chat(&session, say(text)).await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let entries = d.history(&session).await;
    let contents: Vec<&str> = entries
        .iter()
        .map(|e| e["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(contents, ["one", "You said: one", "two", "You said: two"]);
    let (_, page) = d
        .get(&format!("/sessions/{session}/history?limit=2&offset=1"))
        .await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["entries"][0]["content"], "You said: one");
    let (s, _) = d
        .send(
            Method::DELETE,
            &format!("/sessions/{session}/history"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(d.history(&session).await.is_empty());
    let (s, _) = d.get(&format!("/sessions/{session}")).await;
    assert_eq!(s, StatusCode::OK, "the session itself stays");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_the_error_shape() {
    let d = TestDaemon::start_with(common::Options {
        sets: vec!["server.max_body_bytes=1024".into()],
        ..Default::default()
    })
    .await;
    let (s, e) = d.post("/agents", json!({"name": "x".repeat(4096)})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(e["error"]["code"], "payload_too_large");
}
