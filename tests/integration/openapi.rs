//! The OpenAPI document against the running daemon: it is served without a key, every route
//! it lists is routed (other methods on its paths are 405, other paths 404), and every
//! operation, driven through success and error cases, answers with a status, content type and
//! body the document lists (`common::contract`).

use std::time::Duration;

use crate::common;

use agentd_mock::{Reply, ScriptedCall};
use common::contract::{Answer, Auth, Contract, send};
use common::{Options, TestDaemon};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `send_email` writing .eml files, every call held for approval.
const HELD_TOOLS: &str = r#"
[[tool]]
name = "send_email"
description = "Send an email"
handler = "smtp"
approval = "always"
parameters = { type = "object", required = ["to", "subject", "body"], properties = { to = { type = "string" }, subject = { type = "string" }, body = { type = "string" } } }

[tool.options]
transport = "file"
dir = "outbox"
from = "agentd@example.com"
"#;

struct Client {
    daemon: TestDaemon,
    root: String,
    contract: Contract,
}

impl Client {
    async fn start() -> Self {
        let daemon = TestDaemon::start_with(Options {
            tools_toml: Some(HELD_TOOLS.to_owned()),
            sets: vec!["server.max_body_bytes=65536".to_owned()],
            ..Options::default()
        })
        .await;
        let root = daemon.base.trim_end_matches("/api").to_owned();
        Self {
            daemon,
            root,
            contract: Contract::load(),
        }
    }

    /// Sends `method` to `path` (an instance of `template`) and checks the answer against the
    /// document; returns the answer with its status asserted to be `want`.
    async fn call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        body: Option<Value>,
        want: StatusCode,
    ) -> Answer {
        self.call_as(method, template, path, body, want, Auth::Key)
            .await
    }

    async fn call_as(
        &self,
        method: Method,
        template: &str,
        path: &str,
        body: Option<Value>,
        want: StatusCode,
        auth: Auth,
    ) -> Answer {
        let http = &self.daemon.http;
        let answer = send(http, &self.root, method.clone(), path, body.as_ref(), auth).await;
        assert_eq!(answer.status, want, "{method} {path}: {}", answer.text);
        self.contract.check(&method, template, &answer);
        answer
    }
}

fn mail(id: &str) -> ScriptedCall {
    ScriptedCall::new(
        "send_email",
        json!({"to": "ada@example.org", "subject": "Hi", "body": "Hello"}),
    )
    .with_id(id)
}

#[tokio::test]
async fn the_document_is_served_without_a_key() {
    let c = Client::start().await;
    let answer = c
        .call_as(
            Method::GET,
            "/api/openapi.json",
            "/api/openapi.json",
            None,
            StatusCode::OK,
            Auth::None,
        )
        .await;
    assert_eq!(answer.json(), c.contract.document);
}

#[tokio::test]
async fn every_documented_route_is_routed_and_nothing_else() {
    let c = Client::start().await;
    let not_allowed = |answer: &Answer| {
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{}",
            answer.text
        );
        assert_eq!(answer.json()["error"]["code"], "method_not_allowed");
    };
    let documented = c.contract.operations();
    let paths: std::collections::BTreeSet<String> =
        documented.iter().map(|(_, p)| p.clone()).collect();
    for template in &paths {
        let path = template
            .replace("{id}", "0190a1b2-0000-7000-8000-000000000001")
            .replace("{tool_id}", "0190a1b2-0000-7000-8000-000000000002")
            .replace("{call_id}", "call_1");
        for method in ["GET", "PUT", "POST", "PATCH", "DELETE"] {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            let answer = send(&c.daemon.http, &c.root, m, &path, body.as_ref(), Auth::Key).await;
            if documented.contains(&(method.to_owned(), template.clone())) {
                let body: Value = serde_json::from_str(&answer.text).unwrap_or_default();
                let code = body["error"]["code"].clone();
                assert!(
                    code != "no_route" && code != "method_not_allowed",
                    "{method} {path} is documented but not routed: {}",
                    answer.text
                );
            } else {
                not_allowed(&answer);
            }
        }
    }
    for path in [
        "/api/agent",
        "/api/sessions/x/chat/more",
        "/v1/agents",
        "/api",
    ] {
        let answer = send(&c.daemon.http, &c.root, Method::GET, path, None, Auth::Key).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.text
        );
        assert_eq!(answer.json()["error"]["code"], "no_route", "{path}");
    }
}

#[tokio::test]
async fn every_operation_answers_as_documented() {
    let c = Client::start().await;
    let ok = StatusCode::OK;
    let (get, put, post, patch, delete) = (
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
    );
    let unknown = "0190a1b2-0000-7000-8000-00000000dead";

    // Health, metrics, the document.
    c.call_as(get.clone(), "/healthz", "/healthz", None, ok, Auth::None)
        .await;
    c.call_as(get.clone(), "/readyz", "/readyz", None, ok, Auth::None)
        .await;
    c.call(get.clone(), "/metrics", "/metrics", None, ok).await;
    c.call_as(
        get.clone(),
        "/metrics",
        "/metrics",
        None,
        StatusCode::UNAUTHORIZED,
        Auth::None,
    )
    .await;

    // Agents.
    let t = "/api/agents";
    c.call_as(
        post.clone(),
        t,
        t,
        Some(json!({"name": "A"})),
        StatusCode::UNAUTHORIZED,
        Auth::None,
    )
    .await;
    c.call_as(
        post.clone(),
        t,
        t,
        Some(json!({"name": "A"})),
        StatusCode::FORBIDDEN,
        Auth::Wrong,
    )
    .await;
    c.call(
        post.clone(),
        t,
        t,
        Some(json!({"about": "no name"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let agent = c
        .call(
            post.clone(),
            t,
            t,
            Some(json!({"name": "Mailer", "instructions": "Be brief.", "metadata": {"team": "a"}})),
            StatusCode::CREATED,
        )
        .await
        .json();
    let agent_id = agent["id"].as_str().unwrap().to_owned();
    c.call(
        get.clone(),
        t,
        "/api/agents?limit=5&metadata_filter[team]=a",
        None,
        ok,
    )
    .await;
    c.call(
        get.clone(),
        t,
        "/api/agents?limit=0",
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let t = "/api/agents/{id}";
    let at = format!("/api/agents/{agent_id}");
    c.call(get.clone(), t, &at, None, ok).await;
    c.call(
        get.clone(),
        t,
        &format!("/api/agents/{unknown}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        put.clone(),
        t,
        &at,
        Some(json!({"name": "Mailer", "model": "m"})),
        ok,
    )
    .await;
    c.call(
        patch.clone(),
        t,
        &at,
        Some(json!({"about": "sends mail", "name": null})),
        ok,
    )
    .await;
    c.call(
        patch.clone(),
        t,
        &at,
        Some(json!({"name": " "})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let chosen = "0190a1b2-0000-7000-8000-0000000000a1";
    c.call(
        post.clone(),
        t,
        &format!("/api/agents/{chosen}"),
        Some(json!({"name": "Second"})),
        StatusCode::CREATED,
    )
    .await;
    c.call(
        post.clone(),
        t,
        "/api/agents/not-a-uuid",
        Some(json!({"name": "X"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(
        delete.clone(),
        t,
        &format!("/api/agents/{chosen}"),
        None,
        StatusCode::ACCEPTED,
    )
    .await;

    // Agent tools.
    let t = "/api/agents/{id}/tools";
    let tools = format!("/api/agents/{agent_id}/tools");
    let tool = c
        .call(post.clone(), t, &tools, Some(json!({"type": "function", "function": {"name": "lookup", "description": "Looks up", "parameters": {"type": "object", "properties": {"key": {"type": "string"}}}}})), StatusCode::CREATED)
        .await
        .json();
    c.call(
        post.clone(),
        t,
        &tools,
        Some(json!({"name": "bad name"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(get.clone(), t, &tools, None, ok).await;
    c.call(
        get.clone(),
        t,
        &format!("/api/agents/{unknown}/tools"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let t = "/api/agents/{id}/tools/{tool_id}";
    let at = format!("{tools}/{}", tool["id"].as_str().unwrap());
    c.call(put.clone(), t, &at, Some(json!({"name": "lookup2"})), ok)
        .await;
    c.call(
        patch.clone(),
        t,
        &at,
        Some(json!({"description": "Finds"})),
        ok,
    )
    .await;
    c.call(
        patch.clone(),
        t,
        &at,
        Some(json!({"function": {"parameters": 3}})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(delete.clone(), t, &at, None, StatusCode::ACCEPTED)
        .await;
    c.call(delete.clone(), t, &at, None, StatusCode::NOT_FOUND)
        .await;

    // Users.
    let t = "/api/users";
    let user = c
        .call(
            post.clone(),
            t,
            t,
            Some(json!({"name": "Ada"})),
            StatusCode::CREATED,
        )
        .await
        .json();
    let user_id = user["id"].as_str().unwrap().to_owned();
    c.call(
        post.clone(),
        t,
        t,
        Some(json!({"name": 5})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(
        get.clone(),
        t,
        "/api/users?direction=asc&sort_by=updated_at",
        None,
        ok,
    )
    .await;
    let t = "/api/users/{id}";
    let at = format!("/api/users/{user_id}");
    c.call(get.clone(), t, &at, None, ok).await;
    c.call(put.clone(), t, &at, Some(json!({"name": "Ada L."})), ok)
        .await;
    c.call(
        patch.clone(),
        t,
        &at,
        Some(json!({"metadata": {"k": 1}})),
        ok,
    )
    .await;
    c.call(
        patch.clone(),
        t,
        &format!("/api/users/{unknown}"),
        Some(json!({})),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        post.clone(),
        t,
        &format!("/api/users/{chosen}"),
        Some(json!({})),
        StatusCode::CREATED,
    )
    .await;

    // Sessions.
    let t = "/api/sessions";
    c.call(
        post.clone(),
        t,
        t,
        Some(json!({"agent_id": unknown})),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        post.clone(),
        t,
        t,
        Some(json!({"users": [user_id]})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let session = c
        .call(
            post.clone(),
            t,
            t,
            Some(json!({"agent_id": agent_id, "user_id": user_id, "situation": "Testing."})),
            StatusCode::CREATED,
        )
        .await
        .json();
    let sid = session["id"].as_str().unwrap().to_owned();
    c.call(get.clone(), t, "/api/sessions?offset=0", None, ok)
        .await;
    let t = "/api/sessions/{id}";
    let at = format!("/api/sessions/{sid}");
    c.call(get.clone(), t, &at, None, ok).await;
    c.call(
        put.clone(),
        t,
        &at,
        Some(json!({"agents": [agent_id], "token_budget": 4000, "render_templates": true})),
        ok,
    )
    .await;
    c.call(
        patch.clone(),
        t,
        &at,
        Some(json!({"users": [user_id], "context_overflow": "truncate"})),
        ok,
    )
    .await;
    c.call(
        patch.clone(),
        t,
        &at,
        Some(json!({"context_overflow": "adaptive"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let other = "0190a1b2-0000-7000-8000-0000000000b2";
    c.call(
        post.clone(),
        t,
        &format!("/api/sessions/{other}"),
        Some(json!({"agent": agent_id})),
        StatusCode::CREATED,
    )
    .await;

    // Chat: a held call, its listing and decisions; a stream; failures.
    let t = "/api/sessions/{id}/chat";
    let chat = format!("/api/sessions/{sid}/chat");
    let say = |text: &str| json!({"messages": [{"role": "user", "content": text}]});
    c.daemon
        .mock
        .push(Reply::tool_calls(vec![mail("call_a"), mail("call_b")]));
    let held = c
        .call(
            post.clone(),
            t,
            &chat,
            Some(say("Send both.")),
            StatusCode::CREATED,
        )
        .await
        .json();
    assert_eq!(held["stop_reason"], "approval_required", "{held}");
    let list = c
        .call(
            get.clone(),
            "/api/sessions/{id}/approvals",
            &format!("/api/sessions/{sid}/approvals"),
            None,
            ok,
        )
        .await
        .json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    let digest = list["items"][0]["digest"].as_str().unwrap().to_owned();
    let t = "/api/sessions/{id}/approvals/{call_id}";
    let decide = |call: &str| format!("/api/sessions/{sid}/approvals/{call}");
    c.call(
        post.clone(),
        t,
        &decide("call_a"),
        Some(json!({"decision": "approve", "digest": "0"})),
        StatusCode::CONFLICT,
    )
    .await;
    c.call(
        post.clone(),
        t,
        &decide("call_a"),
        Some(json!({"decision": "maybe", "digest": digest})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(
        post.clone(),
        t,
        &decide("call_zz"),
        Some(json!({"decision": "deny", "digest": digest})),
        StatusCode::NOT_FOUND,
    )
    .await;
    let pending = c
        .call(
            post.clone(),
            t,
            &decide("call_a"),
            Some(json!({"decision": "approve", "digest": digest})),
            StatusCode::ACCEPTED,
        )
        .await
        .json();
    assert_eq!(pending["pending"][0]["call_id"], "call_b", "{pending}");
    let resumed = c
        .call(
            post.clone(),
            t,
            &decide("call_b"),
            Some(json!({"decision": "deny", "digest": digest, "reason": "not now"})),
            StatusCode::CREATED,
        )
        .await
        .json();
    assert_eq!(resumed["stop_reason"], "finished", "{resumed}");

    let t = "/api/sessions/{id}/chat";
    let mut streamed = say("Hello there");
    streamed["stream"] = json!(true);
    streamed["tool_choice"] = json!("none");
    let answer = c.call(post.clone(), t, &chat, Some(streamed), ok).await;
    assert!(answer.text.contains(" there"), "{}", answer.text);
    c.call(
        post.clone(),
        t,
        &chat,
        Some(json!({"messages": []})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(
        post.clone(),
        t,
        &format!("/api/sessions/{unknown}/chat"),
        Some(say("hi")),
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        post.clone(),
        t,
        &chat,
        Some(say(&"x".repeat(70_000))),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    c.daemon.mock.push(Reply::error(
        400,
        json!({"error": {"message": "bad request to the model"}}),
    ));
    c.call(
        post.clone(),
        t,
        &chat,
        Some(say("fail")),
        StatusCode::BAD_GATEWAY,
    )
    .await;
    // A turn that takes a while, and a second chat meanwhile.
    c.daemon
        .mock
        .push(Reply::text("slow").with_delay(Duration::from_millis(800)));
    let slow = {
        let (http, url) = (c.daemon.http.clone(), format!("{}{chat}", c.root));
        tokio::spawn(async move {
            common::request(&http, Method::POST, url, Some(json!({"messages": [{"role": "user", "content": "slow"}], "tool_choice": "none"}))).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.call(
        post.clone(),
        t,
        &chat,
        Some(say("meanwhile")),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(slow.await.unwrap().0, StatusCode::CREATED);

    // History.
    let t = "/api/sessions/{id}/history";
    let history = format!("/api/sessions/{sid}/history");
    let entries = c
        .call(get.clone(), t, &format!("{history}?limit=100"), None, ok)
        .await
        .json();
    assert!(
        entries["entries"].as_array().unwrap().len() >= 6,
        "{entries}"
    );
    c.call(
        get.clone(),
        t,
        &format!("{history}?offset=-1"),
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(delete.clone(), t, &history, None, StatusCode::ACCEPTED)
        .await;
    c.call(
        delete.clone(),
        t,
        &format!("/api/sessions/{unknown}/history"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Deletes.
    c.call(
        delete.clone(),
        "/api/sessions/{id}",
        &format!("/api/sessions/{sid}"),
        None,
        StatusCode::ACCEPTED,
    )
    .await;
    c.call(
        get.clone(),
        "/api/sessions/{id}/approvals",
        &format!("/api/sessions/{sid}/approvals"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        delete.clone(),
        "/api/users/{id}",
        &format!("/api/users/{user_id}"),
        None,
        StatusCode::ACCEPTED,
    )
    .await;
    c.call(
        delete.clone(),
        "/api/users/{id}",
        &format!("/api/users/{user_id}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    c.call(
        get.clone(),
        "/api/openapi.json",
        "/api/openapi.json",
        None,
        ok,
    )
    .await;

    let missed = c.contract.unchecked();
    assert!(missed.is_empty(), "operations never exercised: {missed:?}");
}
