//! The load generator: closed-loop client workers (one request in flight each) running one
//! scenario against agentd or straight against the mock model, recording every latency. With
//! several agentd instances, worker i sends all its requests (and keeps all its sessions) on
//! instance i % n, as a load balancer with session affinity would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A chat session is replaced after this many turns, so stored history (re-sent to the model
/// every turn) stays short and every run measures the same request size.
pub(crate) const TURNS_PER_SESSION: u32 = 20;

/// What one worker does in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A chat turn through agentd: `tool` adds one call of that server tool, `stream` asks
    /// for SSE.
    Chat {
        tool: Option<ServerTool>,
        stream: bool,
    },
    /// `POST /api/sessions`.
    NewSession,
    /// The model calls of one turn sent straight to the mock.
    Floor {
        tool: Option<ServerTool>,
        stream: bool,
    },
}

impl Op {
    /// Model round trips per operation.
    pub(crate) fn model_calls(self) -> u64 {
        match self {
            Op::Chat { tool, .. } | Op::Floor { tool, .. } => 1 + u64::from(tool.is_some()),
            Op::NewSession => 0,
        }
    }
}

/// The server tool a tool turn calls once: the mock model calls it because the user message
/// says `!call NAME ARGS`, then answers with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerTool {
    /// The in-process `echo` handler of the scratch tools.toml.
    Echo,
    /// `echo` of the reference MCP server over stdio (`everything__echo`).
    McpEcho,
}

impl ServerTool {
    /// The name the model calls it by.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ServerTool::Echo => "echo",
            ServerTool::McpEcho => crate::mcp_server::ECHO_TOOL,
        }
    }

    fn arguments(self) -> &'static str {
        match self {
            ServerTool::Echo => "{\"text\":\"x\"}",
            ServerTool::McpEcho => "{\"message\":\"x\"}",
        }
    }

    /// The user message that makes the mock call it.
    pub(crate) fn directive(self) -> String {
        format!("!call {} {}", self.name(), self.arguments())
    }

    /// The tool as agentd offers it to the model, for the floor's requests.
    fn offered(self) -> Value {
        let (description, parameters) = match self {
            ServerTool::Echo => ("Return the arguments", json!({"type": "object"})),
            ServerTool::McpEcho => (
                "Echoes back the input string",
                json!({"type": "object", "properties": {"message": {"type": "string",
                    "description": "Message to echo"}}, "required": ["message"]}),
            ),
        };
        json!([{"type": "function", "function": {
            "name": self.name(), "description": description, "parameters": parameters}}])
    }

    /// The tool result agentd sends back to the model, for the floor's second request.
    fn result(self) -> &'static str {
        match self {
            ServerTool::Echo => self.arguments(),
            ServerTool::McpEcho => "Echo: x",
        }
    }
}

/// An HTTP client with no cap on connections per host (reqwest has none) and `pool_idle` idle
/// connections kept per host.
pub(crate) fn http_client(pool_idle: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool_idle)
        .build()
        .map_err(|e| e.to_string())
}

/// Where the requests go.
pub(crate) struct Target {
    pub http: reqwest::Client,
    /// `http://ADDR` of agentd (its first instance).
    pub agentd: String,
    /// `http://ADDR` of the other agentd instances on the same database.
    pub more_agentd: Vec<String>,
    /// `http://ADDR` of the mock.
    pub mock: String,
    pub api_key: String,
    pub agent_id: String,
}

/// Per-worker state kept across operations.
struct Worker {
    /// The agentd instance it sends to.
    instance: usize,
    session: Option<String>,
    turns: u32,
    /// Turns after which the worker replaces its session with a new one.
    turns_per_session: u32,
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            instance: 0,
            session: None,
            turns: 0,
            turns_per_session: TURNS_PER_SESSION,
        }
    }
}

/// One finished operation: total latency and, for streams, time to the first `data:` chunk.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    pub total_ns: u64,
    pub first_ns: Option<u64>,
    /// The agentd instance its worker sends to (the floor's workers send to the mock).
    pub instance: usize,
}

/// Everything measured inside the window.
pub(crate) struct Outcome {
    pub samples: Vec<Sample>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
}

/// Runs `op` on `concurrency` workers: `warmup`, then a measured `window`. `at_mark` is called
/// when the window opens and when it closes (to snapshot counters).
pub(crate) async fn run(
    target: Arc<Target>,
    op: Op,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    mut at_mark: impl FnMut() + Send,
) -> Outcome {
    let start = Instant::now() + warmup;
    let end = start + window;
    let mut tasks = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let target = Arc::clone(&target);
        tasks.push(tokio::spawn(async move {
            let mut worker = Worker {
                instance: index % target.instances(),
                ..Worker::default()
            };
            let mut samples = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let result = target.once(op, &mut worker).await;
                let finished = Instant::now();
                if began < start || finished > end {
                    continue;
                }
                match result {
                    Ok(first) => samples.push(Sample {
                        total_ns: nanos(finished - began),
                        first_ns: first.map(nanos),
                        instance: worker.instance,
                    }),
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                        // Do not spin on a dead endpoint.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (samples, errors, first_error)
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    at_mark();
    tokio::time::sleep_until(end.into()).await;
    at_mark();
    let mut outcome = Outcome {
        samples: Vec::new(),
        errors: 0,
        first_error: None,
        window,
    };
    for task in tasks {
        match task.await {
            Ok((samples, errors, first_error)) => {
                outcome.samples.extend(samples);
                outcome.errors += errors;
                if outcome.first_error.is_none() {
                    outcome.first_error = first_error;
                }
            }
            Err(error) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(error.to_string());
            }
        }
    }
    outcome
}

/// Runs `op` `count` times from one client, one after the other, sessions replaced every
/// `turns_per_session` turns; stops at the first error.
pub(crate) async fn sequential(
    target: &Target,
    op: Op,
    count: u32,
    turns_per_session: u32,
) -> Result<(), String> {
    let mut worker = Worker {
        turns_per_session: turns_per_session.max(1),
        ..Worker::default()
    };
    for _ in 0..count {
        target.once(op, &mut worker).await?;
    }
    Ok(())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Target {
    /// Runs one operation; returns the time to the first streamed chunk for streams.
    async fn once(&self, op: Op, worker: &mut Worker) -> Result<Option<Duration>, String> {
        match op {
            Op::NewSession => self.new_session_on(worker.instance).await.map(|_| None),
            Op::Chat { tool, stream } => {
                if worker.session.is_none() || worker.turns >= worker.turns_per_session {
                    worker.session = Some(self.new_session_on(worker.instance).await?);
                    worker.turns = 0;
                }
                worker.turns += 1;
                let session = worker.session.as_deref().unwrap_or_default();
                self.chat(worker.instance, session, tool, stream).await
            }
            Op::Floor { tool, stream } => self.floor(tool, stream).await,
        }
    }

    /// A target for agentd and the mock at these origins, with the agent every session names
    /// created.
    pub(crate) async fn connect(
        http: reqwest::Client,
        agentd: &str,
        mock: &str,
        api_key: String,
    ) -> Result<Self, String> {
        let mut target = Self {
            http,
            agentd: agentd.to_owned(),
            more_agentd: Vec::new(),
            mock: mock.to_owned(),
            api_key,
            agent_id: String::new(),
        };
        target.agent_id = target.create_agent().await?;
        Ok(target)
    }

    /// The same target with the workers spread over these further agentd instances too
    /// (they share the first one's database, so they know its agent).
    pub(crate) fn with_more_instances(mut self, origins: Vec<String>) -> Self {
        self.more_agentd = origins;
        self
    }

    /// How many agentd instances the workers are spread over.
    pub(crate) fn instances(&self) -> usize {
        1 + self.more_agentd.len()
    }

    /// `http://ADDR` of agentd instance `instance`.
    fn origin(&self, instance: usize) -> &str {
        match instance.checked_sub(1) {
            None => &self.agentd,
            Some(other) => self.more_agentd.get(other).unwrap_or(&self.agentd),
        }
    }

    pub(crate) async fn create_agent(&self) -> Result<String, String> {
        let body = json!({"name": "Bench", "instructions": ["Answer briefly."]});
        let value = self.post_agentd(0, "/api/agents", &body).await?;
        id_of(&value)
    }

    pub(crate) async fn new_session(&self) -> Result<String, String> {
        self.new_session_on(0).await
    }

    async fn new_session_on(&self, instance: usize) -> Result<String, String> {
        self.new_session_of(instance, &self.agent_id).await
    }

    /// A new session of `agent_id` on agentd instance `instance`.
    pub(crate) async fn new_session_of(
        &self,
        instance: usize,
        agent_id: &str,
    ) -> Result<String, String> {
        let value = self
            .post_agentd(instance, "/api/sessions", &json!({"agent_id": agent_id}))
            .await?;
        id_of(&value)
    }

    async fn post_agentd(
        &self,
        instance: usize,
        path: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}{path}", self.origin(instance)))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "POST {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("POST {path}: {e}"))
    }

    /// Reads a session's whole history from the first agentd instance, `page` entries at a
    /// time, as an API client would; gives the entries and the pages it took.
    pub(crate) async fn history_len(
        &self,
        session: &str,
        page: usize,
    ) -> Result<(usize, usize), String> {
        let (mut entries, mut pages) = (0, 0);
        loop {
            let url = format!(
                "{}/api/sessions/{session}/history?limit={page}&offset={entries}",
                self.agentd
            );
            let value: serde_json::Value = self
                .http
                .get(url)
                .bearer_auth(&self.api_key)
                .send()
                .await
                .map_err(|e| format!("history: {e}"))?
                .error_for_status()
                .map_err(|e| format!("history: {e}"))?
                .json()
                .await
                .map_err(|e| format!("history: {e}"))?;
            let got = value["entries"]
                .as_array()
                .ok_or("history: no entries array")?
                .len();
            entries += got;
            pages += 1;
            if got < page {
                return Ok((entries, pages));
            }
        }
    }

    /// One chat turn on `session`; for streams, the time to the first `data:` chunk.
    pub(crate) async fn chat(
        &self,
        instance: usize,
        session: &str,
        tool: Option<ServerTool>,
        stream: bool,
    ) -> Result<Option<Duration>, String> {
        let mut body = if let Some(tool) = tool {
            json!({
                "messages": [{"role": "user", "content": tool.directive()}],
                "tools": [{"type": "function", "function": {"name": tool.name()}}]
            })
        } else {
            json!({"messages": [{"role": "user", "content": "hi"}]})
        };
        if stream {
            body["stream"] = Value::Bool(true);
        }
        let path = format!("/api/sessions/{session}/chat");
        let began = Instant::now();
        let response = self
            .http
            .post(format!("{}{path}", self.origin(instance)))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("chat: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("chat: {status}: {text}"));
        }
        if stream {
            return read_stream(response, began).await.map(Some);
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("chat: {e}"))?;
        let finish = &value["choices"][0]["finish_reason"];
        if finish != "stop" {
            return Err(format!("chat: finish_reason {finish}"));
        }
        Ok(None)
    }

    /// The model calls agentd would make for one turn, straight to the mock.
    async fn floor(
        &self,
        tool: Option<ServerTool>,
        stream: bool,
    ) -> Result<Option<Duration>, String> {
        let url = format!("{}/v1/chat/completions", self.mock);
        let began = Instant::now();
        let Some(tool) = tool else {
            let mut body = json!({
                "model": "mock-model",
                "messages": [{"role": "user", "content": "hi"}]
            });
            if stream {
                body["stream"] = Value::Bool(true);
                let response = self.send_mock(&url, &body).await?;
                return read_stream(response, began).await.map(Some);
            }
            let response = self.send_mock(&url, &body).await?;
            response.bytes().await.map_err(|e| e.to_string())?;
            return Ok(None);
        };
        let user = json!({"role": "user", "content": tool.directive()});
        let tools = tool.offered();
        let first = json!({"model": "mock-model", "messages": [user], "tools": tools});
        let response = self.send_mock(&url, &first).await?;
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("floor: {e}"))?;
        let assistant = value["choices"][0]["message"].clone();
        let call_id = assistant["tool_calls"][0]["id"].clone();
        if call_id.is_null() {
            return Err(format!("floor: no tool call in {value}"));
        }
        let result = json!({"role": "tool", "tool_call_id": call_id, "content": tool.result()});
        let second = json!({
            "model": "mock-model",
            "messages": [user, assistant, result],
            "tools": tools
        });
        let response = self.send_mock(&url, &second).await?;
        response.bytes().await.map_err(|e| e.to_string())?;
        Ok(None)
    }

    async fn send_mock(&self, url: &str, body: &Value) -> Result<reqwest::Response, String> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("mock: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("mock: {status}: {text}"));
        }
        Ok(response)
    }

    /// The mock's `busy_ns_total` and request count.
    pub(crate) async fn mock_stats(&self) -> Result<(u64, u64), String> {
        let value: Value = self
            .http
            .get(format!("{}/_mock/stats", self.mock))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let busy = value["busy_ns_total"]
            .as_u64()
            .ok_or("stats: no busy_ns_total")?;
        let requests = value["requests"].as_u64().ok_or("stats: no requests")?;
        Ok((busy, requests))
    }
}

/// Reads an SSE body to the end; returns the time to the first `data:` chunk.
async fn read_stream(mut response: reqwest::Response, began: Instant) -> Result<Duration, String> {
    let mut first = None;
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if first.is_none() && chunk.windows(5).any(|w| w == b"data:") {
            first = Some(began.elapsed());
        }
        if chunk.windows(8).any(|w| w == b"\"error\":") {
            return Err(format!("stream error: {}", String::from_utf8_lossy(&chunk)));
        }
    }
    first.ok_or_else(|| "stream: no data chunk".to_owned())
}

fn id_of(value: &Value) -> Result<String, String> {
    value["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no id in {value}"))
}
