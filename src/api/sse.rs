//! Streaming chat: the turn runs in its own task and reports events; this module turns them
//! into `data: <ChunkChatResponse>` SSE events (no `[DONE]`), with keep-alive comments while
//! tools run, `finish_reason` and usage on the last chunk only, and an error chunk when the turn
//! fails after the stream started (a turn failing before its first event gets a plain HTTP
//! error). Dropping the response (client gone) cancels the turn. Events wait in a bounded
//! channel (`limits.stream_buffer_events`): a client that reads slowly holds the turn back
//! rather than making the daemon buffer its whole answer.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::DropGuard;

use super::AppState;
use super::error::ApiError;
use super::resources::rfc3339;
use super::turn_claim::TurnClaim;
use crate::provider::Usage;
use crate::session::ToolCallRequest;
use crate::telemetry;
use crate::turn::{TurnContext, TurnEvent, TurnOutcome, TurnRequest};

enum Item {
    Event(TurnEvent),
    Done(Result<TurnOutcome, ApiError>),
}

/// What the turn task reports, in order: its events until the engine drops the sender (the
/// turn has returned), then the outcome.
struct Feed {
    events: mpsc::Receiver<TurnEvent>,
    outcome: Option<JoinHandle<Result<TurnOutcome, ApiError>>>,
}

impl Feed {
    /// The next item; `None` after the outcome (or if the turn task died without one).
    async fn next(&mut self) -> Option<Item> {
        if let Some(event) = self.events.recv().await {
            return Some(Item::Event(event));
        }
        match self.outcome.take()?.await {
            Ok(result) => Some(Item::Done(result)),
            Err(_) => {
                tracing::error!("streamed turn ended without an outcome");
                None
            }
        }
    }
}

pub(super) async fn stream_turn(
    state: AppState,
    ctx: TurnContext,
    request: TurnRequest,
    guard: TurnClaim,
) -> Response {
    let (events_tx, events) = mpsc::channel::<TurnEvent>(state.limits.stream_buffer_events);
    let cancel = state.abort.child_token();
    let stop_on_drop = cancel.clone().drop_guard();
    let outcome = super::chat::spawn_turn(&state, ctx, request, guard, cancel, Some(events_tx));
    let mut feed = Feed {
        events,
        outcome: Some(outcome),
    };
    // The response waits for the turn's first event until the first keep-alive would be due,
    // before committing to a stream: a turn that fails within this time (upstream down, bad
    // request to the model) gets a plain HTTP error (502, ...) that clients raise as one,
    // instead of a 200 whose only chunk is an error. Dropping this future (client gone while
    // waiting) drops the guard and cancels the turn.
    let keep_alive = state.sse_keep_alive;
    let first = match tokio::time::timeout(keep_alive, feed.next()).await {
        Ok(Some(Item::Done(Err(error)))) => return error.into_response(),
        Ok(Some(item)) => Some(item),
        Ok(None) => return ApiError::Internal.into_response(),
        Err(_) => None,
    };
    let id = crate::ids::new_v7().to_string();
    let created_at = rfc3339(OffsetDateTime::now_utc());
    let stream = chunks(
        feed,
        first,
        id,
        created_at,
        (stop_on_drop, telemetry::metrics().stream_opened()),
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response()
}

/// Builds the chunks of one stream. Every delta names its role: the SDK's chunk model
/// requires `delta.role`. Chunks are serialized from borrowed structs, with no `Value` tree
/// built per chunk.
struct Chunker {
    id: String,
    created_at: String,
}

/// One `ChunkChatResponse`.
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    created_at: &'a str,
    choices: [ChunkChoice<'a>; 1],
    usage: Option<&'a Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a Value>,
    /// On the last chunk of a turn that held calls: `stop_reason` and the held calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    approvals: Vec<super::approvals::HeldView<'a>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<IndexedCall<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl Delta<'_> {
    fn role(role: &'static str) -> Self {
        Delta {
            role,
            content: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// A tool call in a delta, with its position in the answer.
#[derive(Serialize)]
struct IndexedCall<'a> {
    index: usize,
    #[serde(flatten)]
    call: &'a ToolCallRequest,
}

impl Chunker {
    fn chunk<'a>(
        &'a self,
        delta: Delta<'a>,
        finish_reason: Option<&'a str>,
        usage: Option<&'a Usage>,
    ) -> Chunk<'a> {
        Chunk {
            id: &self.id,
            created_at: &self.created_at,
            choices: [ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage,
            error: None,
            stop_reason: None,
            approvals: Vec::new(),
        }
    }

    /// The SSE event for one item, and whether it is the last.
    fn event(&self, item: Item) -> (Event, bool) {
        match item {
            Item::Event(event) => (encode(&self.event_chunk(&event)), false),
            Item::Done(Ok(outcome)) => (encode(&self.final_chunk(&outcome)), true),
            Item::Done(Err(error)) => {
                tracing::warn!(%error, "streamed turn failed after the stream started");
                let body = error.body();
                (encode(&self.error_chunk(&body)), true)
            }
        }
    }

    /// The chunk for something that happened during the turn.
    fn event_chunk<'a>(&'a self, event: &'a TurnEvent) -> Chunk<'a> {
        let delta = match event {
            TurnEvent::Text(text) => Delta {
                content: Some(text),
                ..Delta::role("assistant")
            },
            TurnEvent::ToolCalls(calls) => Delta {
                tool_calls: Some(
                    calls
                        .iter()
                        .enumerate()
                        .map(|(index, call)| IndexedCall { index, call })
                        .collect(),
                ),
                ..Delta::role("assistant")
            },
            TurnEvent::ToolResult(run) => Delta {
                content: Some(&run.content),
                tool_call_id: Some(&run.call_id),
                name: Some(&run.name),
                ..Delta::role("tool")
            },
        };
        self.chunk(delta, None, None)
    }

    /// The last chunk of a turn that finished: its finish reason and usage. Tool calls were
    /// already sent in their own chunk; they are not repeated.
    fn final_chunk<'a>(&'a self, outcome: &'a TurnOutcome) -> Chunk<'a> {
        let mut chunk = self.chunk(
            Delta::role("assistant"),
            Some(outcome.finish_reason.as_str()),
            Some(&outcome.usage),
        );
        if !outcome.held.is_empty() {
            chunk.stop_reason = Some(outcome.stop.as_str());
            chunk.approvals = outcome
                .held
                .iter()
                .map(super::approvals::HeldView::of)
                .collect();
        }
        chunk
    }

    /// The last chunk of a turn that failed after the stream started; `body` is the error's
    /// JSON body.
    fn error_chunk<'a>(&'a self, body: &'a Value) -> Chunk<'a> {
        let mut chunk = self.chunk(Delta::role("assistant"), None, None);
        chunk.error = body.get("error");
        chunk
    }
}

fn encode(chunk: &Chunk<'_>) -> Event {
    // Serialized into one string first: `Event::json_data` would scan every small piece the
    // serializer writes for line breaks, which costs more than the serializing itself. Plain
    // structs of strings and numbers always serialize; should that ever change, the client
    // gets a comment line instead of a broken event.
    match serde_json::to_string(chunk) {
        Ok(data) => Event::default().data(data),
        Err(error) => {
            tracing::error!(%error, "a stream chunk could not be serialized");
            Event::default().comment("unserializable chunk")
        }
    }
}

/// The event stream. It owns the drop guard and the open-stream count: when the client goes
/// away the stream is dropped, the turn is cancelled at once, even in the middle of a tool
/// call, and `agentd_active_streams` goes down.
fn chunks(
    feed: Feed,
    first: Option<Item>,
    id: String,
    created_at: String,
    guards: (DropGuard, telemetry::Active),
) -> impl Stream<Item = Result<Event, Infallible>> {
    let chunker = Chunker { id, created_at };
    futures_util::stream::unfold(
        (feed, first, chunker, guards, false),
        |(mut feed, first, chunker, guards, finished)| async move {
            if finished {
                return None;
            }
            let item = match first {
                Some(item) => item,
                None => feed.next().await?,
            };
            let (event, last) = chunker.event(item);
            Some((Ok(event), (feed, None, chunker, guards, last)))
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::{Chunker, Item};
    use crate::api::error::ApiError;
    use crate::provider::Usage;
    use crate::session::{ChatMessage, FunctionCall, Role, ToolCallRequest};
    use crate::tool::{Outcome, ToolRun};
    use crate::turn::{StopReason, TurnError, TurnEvent, TurnOutcome};

    fn call(id: &str, name: &str, arguments: &str) -> ToolCallRequest {
        ToolCallRequest {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }

    /// Each chunk as the stream spelled it with `json!` trees: the typed chunks must be the
    /// same JSON, field for field.
    fn spelled_out(c: &Chunker, delta: Value, finish: Option<&str>, usage: Value) -> Value {
        json!({
            "id": c.id,
            "created_at": c.created_at,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            "usage": usage,
        })
    }

    #[test]
    fn typed_chunks_are_the_json_the_stream_has_always_sent() {
        let c = Chunker {
            id: "0190-chunk".into(),
            created_at: "2026-12-02T00:00:00Z".into(),
        };
        let body = |item: &Item| match item {
            Item::Event(event) => serde_json::to_value(c.event_chunk(event)).unwrap(),
            Item::Done(Ok(outcome)) => serde_json::to_value(c.final_chunk(outcome)).unwrap(),
            Item::Done(Err(_)) => unreachable!("failed turns are checked with error_chunk"),
        };

        let text = Item::Event(TurnEvent::Text("Hi \"there\"\n".into()));
        assert_eq!(
            body(&text),
            spelled_out(
                &c,
                json!({"role": "assistant", "content": "Hi \"there\"\n"}),
                None,
                Value::Null
            )
        );

        let calls = vec![
            call("call_1", "send_email", "{\"to\":\"a@b\"}"),
            call("call_2", "echo", ""),
        ];
        let indexed: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let mut v = json!(call);
                v["index"] = json!(i);
                v
            })
            .collect();
        assert_eq!(
            body(&Item::Event(TurnEvent::ToolCalls(calls))),
            spelled_out(
                &c,
                json!({"role": "assistant", "tool_calls": indexed}),
                None,
                Value::Null
            )
        );

        let run = ToolRun {
            call_id: "call_1".into(),
            name: "send_email".into(),
            content: "{\"status\":\"sent\"}".into(),
            outcome: Outcome::Ok,
            duration: Duration::from_millis(3),
            ran: true,
            digest: String::new(),
        };
        assert_eq!(
            body(&Item::Event(TurnEvent::ToolResult(Box::new(run)))),
            spelled_out(
                &c,
                json!({"role": "tool", "tool_call_id": "call_1", "name": "send_email",
                       "content": "{\"status\":\"sent\"}"}),
                None,
                Value::Null
            )
        );

        let usage = Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
            total_tokens: 10,
        };
        let outcome = TurnOutcome {
            message: ChatMessage::text(Role::Assistant, "done"),
            finish_reason: "stop".into(),
            usage,
            runs: Vec::new(),
            held: Vec::new(),
            steps: 1,
            stop: StopReason::Finished,
        };
        assert_eq!(
            body(&Item::Done(Ok(outcome))),
            spelled_out(&c, json!({"role": "assistant"}), Some("stop"), json!(usage))
        );

        let error = ApiError::from(TurnError::invalid("messages.0", "bad"));
        let error_body = error.body();
        let mut expected = spelled_out(&c, json!({"role": "assistant"}), None, Value::Null);
        expected["error"] = error_body["error"].clone();
        assert_eq!(
            serde_json::to_value(c.error_chunk(&error_body)).unwrap(),
            expected
        );
    }
}
