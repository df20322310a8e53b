//! Control endpoints under `/_mock/` for scripts and benchmarks running the mock out of
//! process: queue replies, read or clear recorded requests, read counters, reset, configure.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::script::Reply;
use super::server::{invalid, json_response};
use super::state::Shared;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_mock/script", post(append_script))
        .route("/_mock/requests", get(list_bodies).delete(clear_requests))
        .route("/_mock/recorded", get(list_recorded))
        .route("/_mock/stats", get(stats))
        .route("/_mock/reset", post(reset))
        .route("/_mock/config", post(configure))
}

/// Body: a JSON array of replies, or one reply. Answers `{"pending": N}`.
async fn append_script(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return invalid(&format!("script is not JSON: {error}"), None),
    };
    let replies = match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                serde_json::from_value::<Reply>(item).map_err(|e| format!("reply {index}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>(),
        single => serde_json::from_value::<Reply>(single)
            .map(|reply| vec![reply])
            .map_err(|e| e.to_string()),
    };
    match replies {
        Ok(replies) => {
            let pending = shared.push(replies);
            json_response(StatusCode::OK, &json!({"pending": pending}))
        }
        Err(message) => invalid(&message, None),
    }
}

async fn list_bodies(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &Value::Array(shared.bodies()))
}

/// Recorded requests with `received_at` (Unix milliseconds), `path` and `headers`.
async fn list_recorded(State(shared): State<Arc<Shared>>) -> Response {
    let recorded = serde_json::to_value(shared.recorded()).unwrap_or(Value::Null);
    json_response(StatusCode::OK, &recorded)
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_recorded();
    StatusCode::NO_CONTENT
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = serde_json::to_value(shared.stats()).unwrap_or(Value::Null);
    json_response(StatusCode::OK, &stats)
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigChange {
    record: Option<bool>,
    latency_ms: Option<u64>,
}

/// Body: `{"record": bool, "latency_ms": N}`, both optional. Answers the settings now in force.
async fn configure(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let change: ConfigChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(error) => return invalid(&format!("bad config change: {error}"), None),
    };
    if let Some(record) = change.record {
        shared.set_recording(record);
    }
    if let Some(latency_ms) = change.latency_ms {
        shared.set_latency(Duration::from_millis(latency_ms));
    }
    let latency_ms = u64::try_from(shared.latency().as_millis()).unwrap_or(u64::MAX);
    (
        StatusCode::OK,
        axum::Json(json!({"record": shared.recording(), "latency_ms": latency_ms})),
    )
        .into_response()
}
