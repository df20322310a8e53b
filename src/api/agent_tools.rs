//! Tools declared on an agent (`/agents/{id}/tools`), in OpenAI function form. A tool whose
//! name matches a catalog tool refers to it (the catalog's schema is the one enforced); any
//! other is a client tool, run by the caller.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::agents::Agents;
use super::error::ApiError;
use super::extract::{JsonBody, ListParams};
use super::resources::{Mode, deleted, fields, load, new_id, rfc3339};
use crate::store::{Collection, Record};

#[derive(Deserialize)]
struct FunctionFields {
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Value>,
}

#[derive(Deserialize)]
struct ToolFields {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    description: Option<String>,
    function: Option<FunctionFields>,
}

/// Validates one tool definition (agent or request) into `{type, name, description, function}`.
/// Its schema is compiled separately, off the runtime (`AppState::tool_schemas`).
pub fn normalize_tool(input: Value, loc: &str) -> Result<Map<String, Value>, ApiError> {
    let f: ToolFields = fields(input).map_err(|e| prefix(e, loc))?;
    if let Some(kind) = f.kind.as_deref()
        && kind != "function"
    {
        return Err(ApiError::invalid(
            format!("{loc}type"),
            format!("tool type `{kind}` is not supported; use `function`"),
        ));
    }
    let function = f.function.unwrap_or(FunctionFields {
        name: None,
        description: None,
        parameters: None,
    });
    let name = function.name.or(f.name).unwrap_or_default();
    if !crate::tool::is_valid_tool_name(&name) {
        return Err(ApiError::invalid(
            format!("{loc}function.name"),
            "tool name must be 1-64 characters of letters, digits, `_` or `-`",
        ));
    }
    let parameters = function
        .parameters
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    if !parameters.is_object() {
        return Err(ApiError::invalid(
            format!("{loc}function.parameters"),
            "must be a JSON Schema object",
        ));
    }
    let description = function.description.or(f.description).unwrap_or_default();
    let mut body = Map::new();
    body.insert("type".into(), json!("function"));
    body.insert("name".into(), json!(name));
    body.insert("description".into(), json!(description));
    body.insert(
        "function".into(),
        json!({ "name": name, "description": description, "parameters": parameters }),
    );
    Ok(body)
}

async fn check_schema(state: &AppState, body: &Map<String, Value>) -> Result<(), ApiError> {
    let schema = body
        .get("function")
        .map_or(&Value::Null, |function| &function["parameters"]);
    state
        .tool_schemas
        .check(schema, "function.parameters")
        .await
}

fn prefix(e: ApiError, loc: &str) -> ApiError {
    match e {
        ApiError::Validation(mut v) => {
            for d in &mut v {
                d.loc = format!("{loc}{}", d.loc);
            }
            ApiError::Validation(v)
        }
        other => other,
    }
}

fn to_json(record: &Record) -> Value {
    let mut body = record.body.as_object().cloned().unwrap_or_default();
    body.insert("id".into(), json!(record.id));
    body.insert("agent_id".into(), json!(record.parent));
    body.insert("created_at".into(), json!(rfc3339(record.created_at)));
    body.insert("updated_at".into(), json!(rfc3339(record.updated_at)));
    Value::Object(body)
}

async fn load_tool(
    state: &AppState,
    agent_id: &str,
    tool_id: &str,
) -> Result<Arc<Record>, ApiError> {
    load::<Agents>(state, agent_id).await?;
    match state.store.get(Collection::AgentTools, tool_id).await? {
        Some(r) if r.parent.as_deref() == Some(agent_id) => Ok(r),
        _ => Err(ApiError::not_found(Collection::AgentTools, tool_id)),
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    ListParams(mut query): ListParams,
) -> Result<Json<Value>, ApiError> {
    load::<Agents>(&state, &agent_id).await?;
    query.parent = Some(agent_id);
    let records = state.store.list(Collection::AgentTools, &query).await?;
    Ok(Json(
        json!({ "items": records.iter().map(to_json).collect::<Vec<_>>() }),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    JsonBody(input): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    load::<Agents>(&state, &agent_id).await?;
    let body = normalize_tool(input, "")?;
    let declared = state
        .store
        .children(Collection::AgentTools, &agent_id)
        .await?
        .len();
    let max = state.tool_schemas.max_tools();
    if declared >= max {
        return Err(ApiError::Conflict(format!(
            "agent `{agent_id}` already has {declared} tools, the most allowed \
             (tools.max_declared_tools); delete one first"
        )));
    }
    check_schema(&state, &body).await?;
    let now = OffsetDateTime::now_utc();
    let record = Record {
        id: new_id(),
        parent: Some(agent_id),
        body: Value::Object(body),
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .insert(Collection::AgentTools, record.clone())
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&record))))
}

/// PUT replaces the definition; PATCH merges the given fields over it first.
async fn change(
    state: AppState,
    agent_id: String,
    tool_id: String,
    input: Value,
    mode: Mode,
) -> Result<Json<Value>, ApiError> {
    let mut record = Arc::unwrap_or_clone(load_tool(&state, &agent_id, &tool_id).await?);
    let input = match (mode, input) {
        (Mode::Partial, Value::Object(changes)) => {
            let mut merged = record.body.as_object().cloned().unwrap_or_default();
            if let Some(Value::Object(f)) = changes.get("function")
                && let Some(Value::Object(old)) = merged.get_mut("function")
            {
                old.extend(f.clone());
            }
            for (k, v) in changes {
                if k != "function" {
                    merged.insert(k.clone(), v.clone());
                    if let (Some(Value::Object(func)), "name" | "description") =
                        (merged.get_mut("function"), k.as_str())
                    {
                        func.insert(k, v);
                    }
                }
            }
            Value::Object(merged)
        }
        (_, input) => input,
    };
    let body = normalize_tool(input, "")?;
    check_schema(&state, &body).await?;
    record.body = Value::Object(body);
    record.updated_at = OffsetDateTime::now_utc();
    state
        .store
        .update(Collection::AgentTools, record.clone())
        .await?;
    Ok(Json(to_json(&record)))
}

pub async fn replace(
    State(state): State<AppState>,
    Path((agent_id, tool_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    change(state, agent_id, tool_id, input, Mode::Full).await
}

pub async fn patch(
    State(state): State<AppState>,
    Path((agent_id, tool_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    change(state, agent_id, tool_id, input, Mode::Partial).await
}

pub async fn delete(
    State(state): State<AppState>,
    Path((agent_id, tool_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    load_tool(&state, &agent_id, &tool_id).await?;
    state.store.delete(Collection::AgentTools, &tool_id).await?;
    Ok((StatusCode::ACCEPTED, Json(deleted(&tool_id))))
}

/// Every tool of an agent, as stored bodies (for the turn).
pub async fn of_agent(state: &AppState, agent_id: &str) -> Result<Vec<Value>, ApiError> {
    let records = state
        .store
        .children(Collection::AgentTools, agent_id)
        .await?;
    Ok(records.into_iter().map(|r| r.body).collect())
}
