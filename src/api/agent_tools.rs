//! Tools declared on an agent (`/agents/{id}/tools`), in OpenAI function form. A tool whose
//! name matches a catalog tool refers to it (the catalog's schema is the one enforced); any
//! other is a client tool, run by the caller. The stored shape is [`AgentToolRecord`].

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::agents::Agents;
use super::error::ApiError;
use super::extract::{JsonBody, ListParams};
use super::records::{self, AgentToolRecord, ToolPatch, no_parameters};
use super::resources::{Mode, deleted, fields, load, new_id, rfc3339};
use crate::store::{Collection, Record};

#[derive(Deserialize, Default)]
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
pub(super) fn normalize_tool(
    input: Value,
    loc: &str,
) -> Result<AgentToolRecord<'static>, ApiError> {
    let f = parse(input, loc)?;
    let function = f.function.unwrap_or_default();
    let tool = AgentToolRecord::new(
        function.name.or(f.name).unwrap_or_default(),
        function.description.or(f.description).unwrap_or_default(),
        function.parameters.unwrap_or_else(no_parameters),
    );
    validate(&tool, loc)?;
    Ok(tool)
}

/// The fields of a tool definition, its type checked.
fn parse(input: Value, loc: &str) -> Result<ToolFields, ApiError> {
    let f: ToolFields = fields(input).map_err(|e| prefix(e, loc))?;
    if let Some(kind) = f.kind.as_deref()
        && kind != "function"
    {
        return Err(ApiError::invalid(
            format!("{loc}type"),
            format!("tool type `{kind}` is not supported; use `function`"),
        ));
    }
    Ok(f)
}

/// The changes a PATCH body asks for.
fn patch_of(f: ToolFields) -> ToolPatch {
    let function = f.function.unwrap_or_default();
    ToolPatch {
        name: f.name,
        description: f.description,
        function_name: function.name,
        function_description: function.description,
        parameters: function.parameters,
    }
}

fn validate(tool: &AgentToolRecord<'_>, loc: &str) -> Result<(), ApiError> {
    if !crate::tool::is_valid_tool_name(&tool.function.name) {
        return Err(ApiError::invalid(
            format!("{loc}function.name"),
            "tool name must be 1-64 characters of letters, digits, `_` or `-`",
        ));
    }
    if !tool.function.parameters.is_object() {
        return Err(ApiError::invalid(
            format!("{loc}function.parameters"),
            "must be a JSON Schema object",
        ));
    }
    Ok(())
}

async fn check_schema(state: &AppState, tool: &AgentToolRecord<'_>) -> Result<(), ApiError> {
    state
        .tool_schemas
        .check(&tool.function.parameters, "function.parameters")
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

fn to_json(record: &Record) -> Result<Value, ApiError> {
    let tool: AgentToolRecord<'_> = records::read(record)?;
    let mut body = records::to_body(&tool)?;
    body.insert("id".into(), json!(record.id));
    body.insert("agent_id".into(), json!(record.parent));
    body.insert("created_at".into(), json!(rfc3339(record.created_at)));
    body.insert("updated_at".into(), json!(rfc3339(record.updated_at)));
    Ok(Value::Object(body))
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

pub(super) async fn list(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    ListParams(mut query): ListParams,
) -> Result<Json<Value>, ApiError> {
    load::<Agents>(&state, &agent_id).await?;
    query.parent = Some(agent_id);
    let records = state.store.list(Collection::AgentTools, &query).await?;
    let items = records.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    JsonBody(input): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    load::<Agents>(&state, &agent_id).await?;
    let tool = normalize_tool(input, "")?;
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
    check_schema(&state, &tool).await?;
    let now = OffsetDateTime::now_utc();
    let record = Record {
        id: new_id(),
        parent: Some(agent_id),
        body: Value::Object(records::to_body(&tool)?),
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .insert(Collection::AgentTools, record.clone())
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&record)?)))
}

/// PUT replaces the definition; PATCH applies the given fields over it.
async fn change(
    state: AppState,
    agent_id: String,
    tool_id: String,
    input: Value,
    mode: Mode,
) -> Result<Json<Value>, ApiError> {
    let stored = load_tool(&state, &agent_id, &tool_id).await?;
    let tool = match mode {
        Mode::Full => normalize_tool(input, "")?,
        Mode::Partial => {
            let patch = patch_of(parse(input, "")?);
            let mut tool: AgentToolRecord<'_> = records::read(&stored)?;
            tool.apply(patch);
            validate(&tool, "")?;
            tool
        }
    };
    check_schema(&state, &tool).await?;
    let record = Record {
        id: stored.id.clone(),
        parent: stored.parent.clone(),
        body: Value::Object(records::to_body(&tool)?),
        created_at: stored.created_at,
        updated_at: OffsetDateTime::now_utc(),
    };
    state
        .store
        .update(Collection::AgentTools, record.clone())
        .await?;
    Ok(Json(to_json(&record)?))
}

pub(super) async fn replace(
    State(state): State<AppState>,
    Path((agent_id, tool_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    change(state, agent_id, tool_id, input, Mode::Full).await
}

pub(super) async fn patch(
    State(state): State<AppState>,
    Path((agent_id, tool_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    change(state, agent_id, tool_id, input, Mode::Partial).await
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Path((agent_id, tool_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    load_tool(&state, &agent_id, &tool_id).await?;
    state.store.delete(Collection::AgentTools, &tool_id).await?;
    Ok((StatusCode::ACCEPTED, Json(deleted(&tool_id))))
}

/// Every tool of an agent, as stored bodies (for the turn).
pub(super) async fn of_agent(state: &AppState, agent_id: &str) -> Result<Vec<Value>, ApiError> {
    let records = state
        .store
        .children(Collection::AgentTools, agent_id)
        .await?;
    Ok(records.into_iter().map(|r| r.body).collect())
}
