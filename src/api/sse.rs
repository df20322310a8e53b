//! Streaming chat: the turn runs in its own task and reports events; this module turns them
//! into `data: <ChunkChatResponse>` SSE events (no `[DONE]`), with keep-alive comments while
//! tools run, `finish_reason` and usage on the last chunk only, and an error chunk when the turn
//! fails after the stream started (a turn failing before its first event gets a plain HTTP
//! error). Dropping the response (client gone) cancels the turn.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::DropGuard;
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;
use super::resources::rfc3339;
use crate::session::lock::TurnGuard;
use crate::turn::{TurnContext, TurnError, TurnEvent, TurnOutcome, TurnRequest};

enum Item {
    Event(TurnEvent),
    Done(Result<TurnOutcome, TurnError>),
}

/// What the turn task reports, in order: its events until the engine drops the sender (the
/// turn has returned), then the outcome.
struct Feed {
    events: mpsc::UnboundedReceiver<TurnEvent>,
    outcome: Option<oneshot::Receiver<Result<TurnOutcome, TurnError>>>,
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

pub async fn stream_turn(
    state: AppState,
    ctx: TurnContext,
    request: TurnRequest,
    guard: TurnGuard,
) -> Response {
    let (events_tx, events) = mpsc::unbounded_channel::<TurnEvent>();
    let (outcome_tx, outcome) = oneshot::channel();
    let cancel = state.abort.child_token();
    let stop_on_drop = cancel.clone().drop_guard();
    let engine = state.engine.clone();
    let span = tracing::info_span!("turn", session_id = %ctx.session_id, stream = true);
    tokio::spawn(
        async move {
            let result = engine.run(&ctx, request, Some(events_tx), &cancel).await;
            // The session is free before the client learns the turn ended, so a next chat sent
            // right after the last chunk (or the error status) never meets a 409.
            drop(guard);
            let _ = outcome_tx.send(result);
        }
        .instrument(span),
    );
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
        Ok(Some(Item::Done(Err(error)))) => return ApiError::from(error).into_response(),
        Ok(Some(item)) => Some(item),
        Ok(None) => return ApiError::Internal.into_response(),
        Err(_) => None,
    };
    let id = uuid::Uuid::now_v7().to_string();
    let created_at = rfc3339(OffsetDateTime::now_utc());
    let stream = chunks(feed, first, id, created_at, stop_on_drop);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response()
}

/// Builds the chunks of one stream. Every delta names its role: the SDK's chunk model
/// requires `delta.role`.
struct Chunker {
    id: String,
    created_at: String,
}

impl Chunker {
    fn chunk(&self, delta: Value, finish: Option<&str>, usage: Value) -> Event {
        let body = json!({
            "id": self.id,
            "created_at": self.created_at,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            "usage": usage,
        });
        Event::default().data(body.to_string())
    }

    /// The SSE event for one item, and whether it is the last.
    fn event(&self, item: Item) -> (Event, bool) {
        match item {
            Item::Event(TurnEvent::Text(text)) => {
                let delta = json!({ "role": "assistant", "content": text });
                (self.chunk(delta, None, Value::Null), false)
            }
            Item::Event(TurnEvent::ToolCalls(calls)) => {
                let calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let mut v = json!(c);
                        v["index"] = json!(i);
                        v
                    })
                    .collect();
                let delta = json!({ "role": "assistant", "tool_calls": calls });
                (self.chunk(delta, None, Value::Null), false)
            }
            Item::Event(TurnEvent::ToolResult(run)) => {
                let delta = json!({
                    "role": "tool",
                    "tool_call_id": run.call_id,
                    "name": run.name,
                    "content": run.content,
                });
                (self.chunk(delta, None, Value::Null), false)
            }
            Item::Done(Ok(outcome)) => {
                // Tool calls were already sent in their own chunk; they are not repeated.
                let delta = json!({ "role": "assistant" });
                let usage = json!(outcome.usage);
                (
                    self.chunk(delta, Some(outcome.finish_reason.as_str()), usage),
                    true,
                )
            }
            Item::Done(Err(error)) => {
                let error = ApiError::from(error);
                tracing::warn!(%error, "streamed turn failed after the stream started");
                let body = json!({
                    "id": self.id,
                    "created_at": self.created_at,
                    "choices": [{ "index": 0, "delta": { "role": "assistant" }, "finish_reason": null }],
                    "usage": null,
                    "error": error.body()["error"],
                });
                (Event::default().data(body.to_string()), true)
            }
        }
    }
}

/// The event stream. It owns the drop guard: when the client goes away the stream is
/// dropped and the turn is cancelled at once, even in the middle of a tool call.
fn chunks(
    feed: Feed,
    first: Option<Item>,
    id: String,
    created_at: String,
    stop_on_drop: DropGuard,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let chunker = Chunker { id, created_at };
    futures_util::stream::unfold(
        (feed, first, chunker, stop_on_drop, false),
        |(mut feed, first, chunker, guard, finished)| async move {
            if finished {
                return None;
            }
            let item = match first {
                Some(item) => item,
                None => feed.next().await?,
            };
            let (event, last) = chunker.event(item);
            Some((Ok(event), (feed, None, chunker, guard, last)))
        },
    )
}
