//! The route table and the chat-completions handler: validate, record, take the next scripted
//! reply (or the default behaviour), wait, answer as JSON or as an SSE stream.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::behaviour;
use super::completion::{Answer, Draft};
use super::control;
use super::request_body::RequestBody;
use super::script::{Reply, ReplyKind, StreamQuirks};
use super::state::{RecordedRequest, Shared};
use super::stream;
use super::wire;

/// Largest accepted request body.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .merge(control::routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

async fn models() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": [
            {"id": "mock-model", "object": "model", "created": 0, "owned_by": "agentd"}
        ]}),
    )
}

async fn chat(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, BODY_LIMIT).await;
    // Busy time starts once the body is in: reading it is the client's and the network's time.
    let busy = shared.begin();
    let body = match body {
        Ok(body) => body,
        Err(error) => return invalid(&format!("could not read the request body: {error}"), None),
    };
    if shared.recording() {
        let tree = serde_json::from_slice::<Value>(&body).ok();
        shared.record(recorded(&parts, &body, tree));
    }
    let parsed = match RequestBody::parse(&body) {
        Ok(parsed) => parsed,
        Err(error) => {
            let message = format!("We could not parse the JSON body of your request: {error}");
            return invalid(&message, None);
        }
    };
    let request = match wire::read(&parsed) {
        Ok(request) => request,
        Err(refusal) => return json_response(StatusCode::BAD_REQUEST, &refusal.body()),
    };
    let reply = shared.next_reply().unwrap_or_else(Reply::default_answer);
    let wait = shared.latency() + reply.delay;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let draft = match reply.kind {
        ReplyKind::Http { status, body } => {
            return with_headers(http_reply(status, &body), &reply.headers);
        }
        ReplyKind::Message {
            text,
            calls,
            finish_reason,
        } => Draft {
            text,
            calls,
            finish_reason,
        },
        ReplyKind::Default => Draft::from(behaviour::answer(&request)),
    };
    let answer = Answer::new(
        &request,
        draft,
        &reply.quirks,
        shared.next_completion_id(),
        || shared.next_call_id(),
    );
    let response = if request.stream {
        let frames = stream::frames(&answer, &reply.quirks, request.include_usage);
        streaming_response(frames, &reply.quirks, busy)
    } else {
        completion_response(&answer, &reply.quirks)
    };
    with_headers(response, &reply.headers)
}

/// The request as kept for inspection; a body that is not JSON is kept as a JSON string.
fn recorded(parts: &Parts, raw: &Bytes, parsed: Option<Value>) -> RecordedRequest {
    let body = parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(raw).into_owned()));
    RecordedRequest {
        received_at: SystemTime::now(),
        path: parts.uri.path().to_owned(),
        headers: header_pairs(&parts.headers),
        body,
    }
}

fn completion_response(answer: &Answer, quirks: &StreamQuirks) -> Response {
    let json = serde_json::to_vec(&answer.to_json()).unwrap_or_default();
    if quirks.die_after_chunks.is_some() {
        let body = stream::truncated_body(json);
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

fn streaming_response<K: Send + 'static>(
    frames: Vec<Bytes>,
    quirks: &StreamQuirks,
    keep: K,
) -> Response {
    let body = stream::body(frames, quirks, keep);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A scripted HTTP answer: a JSON string body is sent as plain text, null as no body.
fn http_reply(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match body {
        Value::Null => status.into_response(),
        Value::String(text) => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text.clone(),
        )
            .into_response(),
        json => json_response(status, json),
    }
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(bytes),
    )
        .into_response()
}

/// A 400 in OpenAI's error shape.
pub(crate) fn invalid(message: &str, param: Option<&str>) -> Response {
    let body = wire::InvalidRequest {
        message: message.to_owned(),
        param: param.map(str::to_owned),
    }
    .body();
    json_response(StatusCode::BAD_REQUEST, &body)
}

fn with_headers(mut response: Response, headers: &[(String, String)]) -> Response {
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::warn!(header = %name, "scripted header is not valid HTTP; skipped"),
        }
    }
    response
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}
