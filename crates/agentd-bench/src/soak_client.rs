//! The clients of `agentd-bench soak`: closed-loop workers cycling through chat, tool-loop and
//! streaming turns on sessions they replace (and delete) every few turns, following agentd
//! across restarts, and sorting each request's outcome into answered, cut by a kill, busy
//! (409 just after a restart) or failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::load::ServerTool;
use crate::soak_stats::Interval;

/// For this long after agentd answers ready, a 409 (session busy) is allowed.
pub(crate) const BUSY_GRACE: Duration = Duration::from_secs(30);

/// Failure messages kept to print at the end.
const KEPT_FAILURES: usize = 20;

/// The kinds of turn, in the order each worker cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// A plain chat (one model round trip).
    Chat,
    /// The model asks for one `echo` call, then answers (two round trips).
    Tool,
    /// A plain chat with `stream: true`, read to the last SSE event.
    Stream,
}

const TURNS: [Turn; 3] = [Turn::Chat, Turn::Tool, Turn::Stream];

/// Where agentd is now.
#[derive(Debug, Clone)]
pub(crate) struct Daemon {
    /// `http://ADDR`; meaningless while `up` is false.
    pub origin: String,
    pub up: bool,
    pub up_since: Instant,
}

/// What the workers and the controller share.
pub(crate) struct Shared {
    daemon: RwLock<Daemon>,
    /// Bumped before each kill: a request begun under an older value was in flight at a kill.
    generation: AtomicU64,
    interval: Mutex<Interval>,
    failures: Mutex<Vec<String>>,
    pub http: reqwest::Client,
    pub api_key: String,
    pub agent_id: String,
}

/// Why a request did not get a good answer.
enum Trouble {
    /// No connection, or the connection broke before the answer was complete.
    Transport(String),
    /// An HTTP error status.
    Status(u16, String),
    /// A complete answer that is not what a good turn answers.
    Malformed(String),
}

impl Shared {
    pub(crate) fn new(
        daemon: Daemon,
        http: reqwest::Client,
        api_key: String,
        agent_id: String,
    ) -> Self {
        Self {
            daemon: RwLock::new(daemon),
            generation: AtomicU64::new(0),
            interval: Mutex::new(Interval::default()),
            failures: Mutex::new(Vec::new()),
            http,
            api_key,
            agent_id,
        }
    }

    /// Marks agentd as going down; call before killing it.
    pub(crate) fn going_down(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.daemon
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .up = false;
    }

    /// Points the workers at a freshly started agentd.
    pub(crate) fn came_up(&self, origin: String) {
        *self.daemon.write().unwrap_or_else(PoisonError::into_inner) = Daemon {
            origin,
            up: true,
            up_since: Instant::now(),
        };
    }

    /// What the clients did since the last call.
    pub(crate) fn take_interval(&self) -> Interval {
        std::mem::take(&mut *self.interval.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The first failures of the run, described.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// agentd's origin and the generation, when it is up.
    fn live(&self) -> Option<(String, u64)> {
        let generation = self.generation.load(Ordering::SeqCst);
        let daemon = self.daemon.read().unwrap_or_else(PoisonError::into_inner);
        daemon.up.then(|| (daemon.origin.clone(), generation))
    }

    /// Counts a request that did not get a good answer.
    fn count(&self, trouble: Trouble, generation: u64, what: &str) {
        let killed_since = self.generation.load(Ordering::SeqCst) != generation;
        let up_for = self
            .daemon
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .up_since
            .elapsed();
        let mut interval = self.interval.lock().unwrap_or_else(PoisonError::into_inner);
        let failure = match trouble {
            Trouble::Transport(_) if killed_since => {
                interval.cut += 1;
                return;
            }
            Trouble::Status(409, _) if up_for < BUSY_GRACE => {
                interval.busy += 1;
                return;
            }
            Trouble::Transport(e) => format!("{what}: connection: {e}"),
            Trouble::Status(status, body) => format!("{what}: {status}: {body}"),
            Trouble::Malformed(e) => format!("{what}: {e}"),
        };
        interval.failures += 1;
        drop(interval);
        let mut kept = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < KEPT_FAILURES {
            kept.push(failure);
        }
    }

    fn answered(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.interval
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .turn_micros
            .push(micros);
    }
}

/// One worker until `deadline`: `index` staggers where in the turn cycle it starts.
pub(crate) async fn worker(
    shared: Arc<Shared>,
    index: usize,
    turns_per_session: u32,
    deadline: Instant,
) {
    let mut session: Option<String> = None;
    let mut turns = 0u32;
    let mut next = index;
    while Instant::now() < deadline {
        let Some((origin, generation)) = shared.live() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if session.is_none() || turns >= turns_per_session {
            if let Some(old) = session.take()
                && let Err(trouble) = delete_session(&shared, &origin, &old).await
            {
                shared.count(trouble, generation, "deleting a session");
                continue;
            }
            match new_session(&shared, &origin).await {
                Ok(id) => {
                    session = Some(id);
                    turns = 0;
                }
                Err(trouble) => {
                    shared.count(trouble, generation, "creating a session");
                    pause_after_trouble().await;
                    continue;
                }
            }
        }
        let turn = TURNS[next % TURNS.len()];
        next += 1;
        turns += 1;
        let id = session.as_deref().unwrap_or_default();
        let began = Instant::now();
        match chat(&shared, &origin, id, turn).await {
            Ok(()) => shared.answered(began.elapsed()),
            Err(trouble) => {
                shared.count(trouble, generation, &format!("{turn:?} turn"));
                pause_after_trouble().await;
            }
        }
    }
}

/// Keeps a worker from spinning on a daemon that is going away.
async fn pause_after_trouble() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn new_session(shared: &Shared, origin: &str) -> Result<String, Trouble> {
    let body = json!({"agent_id": shared.agent_id});
    let value = json_answer(
        send(
            shared,
            shared
                .http
                .post(format!("{origin}/api/sessions"))
                .json(&body),
        )
        .await?,
    )
    .await?;
    value["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Trouble::Malformed(format!("no id in {value}")))
}

async fn delete_session(shared: &Shared, origin: &str, id: &str) -> Result<(), Trouble> {
    let response = send(
        shared,
        shared.http.delete(format!("{origin}/api/sessions/{id}")),
    )
    .await?;
    response
        .bytes()
        .await
        .map_err(|e| Trouble::Transport(e.to_string()))?;
    Ok(())
}

async fn chat(shared: &Shared, origin: &str, session: &str, turn: Turn) -> Result<(), Trouble> {
    let tool = ServerTool::Echo;
    let mut body = match turn {
        Turn::Tool => json!({
            "messages": [{"role": "user", "content": tool.directive()}],
            "tools": [{"type": "function", "function": {"name": tool.name()}}]
        }),
        Turn::Chat | Turn::Stream => json!({"messages": [{"role": "user", "content": "hi"}]}),
    };
    if turn == Turn::Stream {
        body["stream"] = Value::Bool(true);
    }
    let request = shared
        .http
        .post(format!("{origin}/api/sessions/{session}/chat"))
        .json(&body);
    let response = send(shared, request).await?;
    if turn == Turn::Stream {
        return read_stream_to_end(response).await;
    }
    let value = json_answer(response).await?;
    let finish = &value["choices"][0]["finish_reason"];
    if finish != "stop" {
        return Err(Trouble::Malformed(format!(
            "finish_reason {finish} in {value}"
        )));
    }
    if turn == Turn::Tool && value["tool_runs"][0]["status"] != "ok" {
        return Err(Trouble::Malformed(format!(
            "the echo call did not run: {value}"
        )));
    }
    Ok(())
}

/// Sends with the API key; an error status becomes [`Trouble::Status`].
async fn send(
    shared: &Shared,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, Trouble> {
    let response = request
        .bearer_auth(&shared.api_key)
        .send()
        .await
        .map_err(|e| Trouble::Transport(error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    Err(Trouble::Status(status.as_u16(), text))
}

async fn json_answer(response: reqwest::Response) -> Result<Value, Trouble> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Trouble::Transport(error_chain(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| Trouble::Malformed(format!("not JSON ({e})")))
}

/// Reads the SSE body to its end: every `data:` event must be a chunk without an error, and
/// the last one must finish with `stop`.
async fn read_stream_to_end(mut response: reqwest::Response) -> Result<(), Trouble> {
    let mut pending = Vec::new();
    let mut finish: Option<Value> = None;
    let mut events = 0u32;
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| Trouble::Transport(error_chain(&e)))?;
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let value: Value = serde_json::from_slice(data.trim_ascii())
                .map_err(|e| Trouble::Malformed(format!("stream event not JSON ({e})")))?;
            if value.get("error").is_some() {
                return Err(Trouble::Malformed(format!("stream error event: {value}")));
            }
            events += 1;
            let reason = &value["choices"][0]["finish_reason"];
            if !reason.is_null() {
                finish = Some(reason.clone());
            }
        }
    }
    match finish {
        Some(reason) if reason == "stop" => Ok(()),
        Some(reason) => Err(Trouble::Malformed(format!("stream finished with {reason}"))),
        // An incomplete answer, as a kill leaves it.
        None => Err(Trouble::Transport(format!(
            "stream of {events} events ended without a finish_reason"
        ))),
    }
}

/// An error and its sources on one line (reqwest's own text hides the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
