//! The CRUD handlers shared by agents, users and sessions: create, list, get, replace (PUT),
//! patch, delete and create-or-update (POST with an id). Each resource supplies its field
//! validation, the application of its changes and its checks through [`Resource`].

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, ListParams};
use super::records;
use crate::store::{Collection, Record};

/// Whether a body must carry every required field (create, PUT) or only what changes (PATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Full,
    Partial,
}

/// A resource kept as a document in the store, its shape a type of [`super::records`].
pub(super) trait Resource: Send + Sync + 'static {
    const COLLECTION: Collection;

    /// The stored record (owned: the handlers are generic over resources and hold it across
    /// awaits; the chat path borrows instead, see [`records::read`]).
    type Record: Serialize + Deserialize<'static> + Default + Send + Sync + 'static;
    /// The fields a request changes.
    type Patch: Send;

    /// Validates a request body into the fields it sets. In `Full` mode the fields a new
    /// record needs are required; applied to a default record it is the whole record.
    fn changes(input: Value, mode: Mode) -> Result<Self::Patch, ApiError>;

    /// Sets the changed fields (`metadata` merged key by key).
    fn apply(record: &mut Self::Record, patch: Self::Patch);

    /// Checks of the whole record (after a PATCH is applied) beyond its shape: that its prompt
    /// text fits the system prompt (agents, sessions), that participants exist (sessions).
    fn check(
        _state: &AppState,
        _record: &Self::Record,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// Fields derived from the record, added to every response.
    fn decorate(_record: &Self::Record, _wire: &mut Map<String, Value>) {}
}

/// Deserializes a body into a typed field set with `loc`-carrying errors.
pub(super) fn fields<T: DeserializeOwned>(input: Value) -> Result<T, ApiError> {
    if !input.is_object() {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    }
    serde_path_to_error::deserialize(input).map_err(|e| {
        let loc = e.path().to_string().replace('[', ".").replace(']', "");
        ApiError::invalid(
            if loc == "." { "body".into() } else { loc },
            e.inner().to_string(),
        )
    })
}

pub(super) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A new server-generated id (UUIDv7: time-ordered).
pub(super) fn new_id() -> String {
    crate::ids::new_v7().to_string()
}

/// The wire form of a record: id, stored fields, derived fields, timestamps. A record stored
/// by an older build answers with the defaults of the fields it lacks.
pub(super) fn to_json<R: Resource>(record: &Record) -> Result<Value, ApiError> {
    let typed: R::Record = records::read_owned(record)?;
    wire::<R>(record, &typed)
}

fn wire<R: Resource>(record: &Record, typed: &R::Record) -> Result<Value, ApiError> {
    let mut body = records::to_body(typed)?;
    R::decorate(typed, &mut body);
    body.insert("id".into(), json!(record.id));
    body.insert("created_at".into(), json!(rfc3339(record.created_at)));
    body.insert("updated_at".into(), json!(rfc3339(record.updated_at)));
    Ok(Value::Object(body))
}

pub(super) async fn load<R: Resource>(state: &AppState, id: &str) -> Result<Arc<Record>, ApiError> {
    state
        .store
        .get(R::COLLECTION, id)
        .await?
        .ok_or_else(|| ApiError::not_found(R::COLLECTION, id))
}

/// A new record from a full request body, checked: its typed fields and the body stored.
async fn build<R: Resource>(
    state: &AppState,
    input: Value,
) -> Result<(R::Record, Value), ApiError> {
    let mut typed = R::Record::default();
    R::apply(&mut typed, R::changes(input, Mode::Full)?);
    R::check(state, &typed).await?;
    let body = Value::Object(records::to_body(&typed)?);
    Ok((typed, body))
}

pub(super) async fn create<R: Resource>(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (typed, body) = build::<R>(&state, input).await?;
    let now = OffsetDateTime::now_utc();
    let record = Record {
        id: new_id(),
        parent: None,
        body,
        created_at: now,
        updated_at: now,
    };
    // The answer comes from the fields just built, not from parsing the stored body back.
    let answer = wire::<R>(&record, &typed)?;
    state.store.insert(R::COLLECTION, record).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

pub(super) async fn list<R: Resource>(
    State(state): State<AppState>,
    ListParams(query): ListParams,
) -> Result<Json<Value>, ApiError> {
    let records = state.store.list(R::COLLECTION, &query).await?;
    let items = records
        .iter()
        .map(to_json::<R>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn get<R: Resource>(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = load::<R>(&state, &id).await?;
    Ok(Json(to_json::<R>(&record)?))
}

/// PUT: replaces every field.
pub(super) async fn replace<R: Resource>(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let mut record = Arc::unwrap_or_clone(load::<R>(&state, &id).await?);
    let (typed, body) = build::<R>(&state, input).await?;
    record.body = body;
    record.updated_at = OffsetDateTime::now_utc();
    save_existing::<R>(&state, record, &typed).await
}

/// PATCH: changes the fields present in the body; `metadata` is merged key by key.
pub(super) async fn patch<R: Resource>(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let stored = load::<R>(&state, &id).await?;
    let changes = R::changes(input, Mode::Partial)?;
    let mut typed: R::Record = records::read_owned(&stored)?;
    R::apply(&mut typed, changes);
    R::check(&state, &typed).await?;
    let record = Record {
        id: stored.id.clone(),
        parent: stored.parent.clone(),
        body: Value::Object(records::to_body(&typed)?),
        created_at: stored.created_at,
        updated_at: OffsetDateTime::now_utc(),
    };
    save_existing::<R>(&state, record, &typed).await
}

/// Stores `record`, whose fields are `typed`, over the existing one; answers with it.
async fn save_existing<R: Resource>(
    state: &AppState,
    record: Record,
    typed: &R::Record,
) -> Result<Json<Value>, ApiError> {
    let answer = wire::<R>(&record, typed)?;
    let id = record.id.clone();
    if !state.store.update(R::COLLECTION, record).await? {
        return Err(ApiError::not_found(R::COLLECTION, id));
    }
    Ok(Json(answer))
}

/// POST with an id: creates the resource with that id, or replaces it.
pub(super) async fn create_or_update<R: Resource>(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_id(&id)?;
    let (_, body) = build::<R>(&state, input).await?;
    let now = OffsetDateTime::now_utc();
    let record = Record {
        id: id.clone(),
        parent: None,
        body,
        created_at: now,
        updated_at: now,
    };
    state.store.upsert(R::COLLECTION, record).await?;
    let stored = load::<R>(&state, &id).await?;
    Ok((StatusCode::CREATED, Json(to_json::<R>(&stored)?)))
}

pub(super) async fn delete<R: Resource>(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !state.store.delete(R::COLLECTION, &id).await? {
        return Err(ApiError::not_found(R::COLLECTION, id));
    }
    Ok((StatusCode::ACCEPTED, Json(deleted(&id))))
}

/// The body of every DELETE answer.
pub(super) fn deleted(id: &str) -> Value {
    json!({ "id": id, "deleted_at": rfc3339(OffsetDateTime::now_utc()), "jobs": [] })
}

/// Client-chosen ids must be UUIDs, like server-generated ones.
pub(super) fn check_id(id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| ApiError::invalid("path.id", "must be a UUID"))
}
