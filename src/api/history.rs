//! `GET /sessions/{id}/history` (oldest first, paginated) and `DELETE` (clears the entries,
//! keeps the session).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::ListParams;
use super::resources::{load, rfc3339};
use super::sessions::Sessions;
use crate::session::Entry;
use crate::turn::prompt::estimate_tokens;

fn entry_json(entry: &Entry) -> Value {
    let m = &entry.message;
    json!({
        "id": entry.id,
        "session_id": entry.session_id,
        "role": m.role.as_str(),
        "name": m.name,
        // The SDK's Entry model requires content: a tool-call message without text has "".
        "content": if m.content.is_null() { json!("") } else { m.content.clone() },
        "tool_call_id": m.tool_call_id,
        "tool_calls": m.tool_calls,
        "source": entry.source,
        "created_at": rfc3339(entry.created_at),
        "timestamp": entry.created_at.unix_timestamp_nanos() as f64 / 1e9,
        "token_count": estimate_tokens(m),
        "tokenizer": "character_count",
    })
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    ListParams(query): ListParams,
) -> Result<Json<Value>, ApiError> {
    let session = load::<Sessions>(&state, &session_id).await?;
    let entries = state
        .store
        .history(&session_id, query.limit, query.offset)
        .await?;
    Ok(Json(json!({
        "session_id": session_id,
        "created_at": rfc3339(session.created_at),
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "relations": [],
    })))
}

pub(super) async fn clear(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    load::<Sessions>(&state, &session_id).await?;
    let turn =
        super::turn_claim::claim(&state, &session_id, "clear its history when it ends").await?;
    let cleared = state.store.clear_history(&session_id).await;
    turn.release().await;
    cleared?;
    Ok((
        StatusCode::ACCEPTED,
        Json(super::resources::deleted(&session_id)),
    ))
}
