//! Calls held for a person's approval: `GET /sessions/{id}/approvals` lists them, `POST
//! /sessions/{id}/approvals/{call_id}` decides one (bound to the call's exact arguments by
//! their digest) and, once no call of the step is still pending, resumes the turn and answers
//! like a chat call. Also what the daemon does when a turn holds calls: the pending gauge and
//! the optional webhook.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use super::resources::{load, rfc3339};
use super::sessions::Sessions;
use crate::store::{ApprovalDecision, ApprovalRecord, ApprovalState};
use crate::tool::HeldCall;
use crate::turn::TurnRequest;

/// Longest `reason` kept with a decision, in characters (it goes to the model with a denial).
const MAX_REASON_CHARS: usize = 1000;

/// A held call as the API shows it.
#[derive(Serialize)]
pub(super) struct ApprovalView {
    call_id: String,
    tool: String,
    arguments: Value,
    digest: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    requested_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<String>,
}

impl ApprovalView {
    fn of(record: &ApprovalRecord, now: OffsetDateTime) -> Self {
        // A pending call past its time is shown as what it has become.
        let state = if record.state == ApprovalState::Pending && record.expires_at <= now {
            ApprovalState::Expired
        } else {
            record.state
        };
        Self {
            call_id: record.call_id.clone(),
            tool: record.tool.clone(),
            arguments: serde_json::from_str(&record.arguments).unwrap_or(Value::Null),
            digest: record.digest.clone(),
            state: state.as_str(),
            reason: record.reason.clone(),
            requested_at: rfc3339(record.requested_at),
            expires_at: rfc3339(record.expires_at),
            decided_at: record.decided_at.map(rfc3339),
        }
    }
}

/// A held call as a chat response lists it (`approvals`).
#[derive(Serialize)]
pub(super) struct HeldView<'a> {
    call_id: &'a str,
    tool: &'a str,
    arguments: &'a Value,
    digest: &'a str,
    expires_at: String,
}

impl<'a> HeldView<'a> {
    pub(super) fn of(held: &'a HeldCall) -> Self {
        Self {
            call_id: &held.call_id,
            tool: &held.name,
            arguments: &held.arguments,
            digest: &held.digest,
            expires_at: rfc3339(held.expires_at),
        }
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    load::<Sessions>(&state, &session_id).await?;
    let now = OffsetDateTime::now_utc();
    let items: Vec<ApprovalView> = state
        .store
        .approvals(&session_id)
        .await?
        .iter()
        .map(|record| ApprovalView::of(record, now))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Decision {
    Approve,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionInput {
    decision: Decision,
    digest: String,
    reason: Option<String>,
    /// Stream the rest of the turn (SSE), as a chat call with `stream: true` would.
    stream: Option<bool>,
}

pub(super) async fn decide(
    State(state): State<AppState>,
    Path((session_id, call_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<DecisionInput>,
) -> Result<Response, ApiError> {
    if state.is_draining() {
        return Err(ApiError::Draining);
    }
    if input
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().nth(MAX_REASON_CHARS).is_some())
    {
        return Err(ApiError::invalid(
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    let guard = super::turn_claim::claim(&state, &session_id, "retry when it ends").await?;
    let ctx = super::chat::context(&state, &session_id, None).await?;
    let (wanted, reason) = match input.decision {
        Decision::Approve => (ApprovalState::Approved, input.reason),
        Decision::Deny => (
            ApprovalState::Denied,
            Some(
                input
                    .reason
                    .unwrap_or_else(|| "denied by a person".to_owned()),
            ),
        ),
    };
    let now = OffsetDateTime::now_utc();
    let decided = state
        .store
        .approval_decide(&session_id, &call_id, &input.digest, wanted, reason, now)
        .await?;
    let record = match decided {
        ApprovalDecision::Decided(record) => record,
        ApprovalDecision::NotFound => {
            return Err(ApiError::NotFound {
                noun: "held tool call",
                id: call_id,
            });
        }
        ApprovalDecision::DigestMismatch(_) => {
            return Err(ApiError::Conflict(format!(
                "the digest does not match the arguments of held call `{call_id}`: decide on \
                 the call as GET /sessions/{session_id}/approvals shows it"
            )));
        }
        ApprovalDecision::AlreadyDecided(record) => {
            return Err(ApiError::Conflict(format!(
                "held call `{call_id}` was already decided: {}",
                record.state.as_str()
            )));
        }
        ApprovalDecision::Expired(record) => {
            counted(&state, &record).await;
            return Err(ApiError::Conflict(format!(
                "held call `{call_id}` expired at {} before this decision; it will be answered \
                 to the model as denied",
                rfc3339(record.expires_at)
            )));
        }
    };
    counted(&state, &record).await;
    let still_pending: Vec<ApprovalView> = state
        .store
        .approvals(&session_id)
        .await?
        .iter()
        .filter(|r| r.state == ApprovalState::Pending && r.expires_at > now)
        .map(|r| ApprovalView::of(r, now))
        .collect();
    if !still_pending.is_empty() {
        guard.release().await;
        let body = json!({
            "decided": ApprovalView::of(&record, now),
            "pending": still_pending,
        });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    // The last decision of the step: the turn goes on from the held calls' results.
    let request = TurnRequest {
        save: true,
        ..TurnRequest::default()
    };
    super::chat::answer(state, ctx, request, input.stream.unwrap_or(false), guard).await
}

/// Logs and counts a decision (never the arguments), and refreshes the pending gauge.
async fn counted(state: &AppState, record: &ApprovalRecord) {
    tracing::info!(
        session_id = %record.session_id,
        tool = %record.tool,
        call_id = %record.call_id,
        digest = %record.digest,
        decision = record.state.as_str(),
        "held tool call decided"
    );
    crate::telemetry::metrics().record_approval_decision(record.state.as_str());
    refresh_pending_gauge(state).await;
}

/// Keeps `agentd_approvals_pending` current as held calls pass their expiry, until `stop`.
/// The caller awaits the task after `stop`: it holds the store, which a restart in the same
/// process must find released.
pub(crate) fn keep_pending_gauge(
    state: &AppState,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = refresh_pending_gauge(&state) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
            }
        }
    })
}

/// Sets `agentd_approvals_pending` from the store.
pub(super) async fn refresh_pending_gauge(state: &AppState) {
    match state
        .store
        .approvals_pending(OffsetDateTime::now_utc())
        .await
    {
        Ok(count) => crate::telemetry::metrics().set_approvals_pending(count),
        Err(error) => tracing::warn!(%error, "cannot count pending approvals"),
    }
}

/// A turn held calls: refresh the gauge and, with `turn.approval_webhook` set, tell the
/// webhook tool about each (its session, call, tool, digest and expiry; never the arguments).
pub(super) async fn announce(state: &AppState, session_id: &str, held: &[HeldCall]) {
    refresh_pending_gauge(state).await;
    let Some(name) = &state.approval_webhook else {
        return;
    };
    let Some(tool) = state.engine.catalog().get(name).cloned() else {
        tracing::warn!(tool = %name, "turn.approval_webhook names no catalog tool; not notified");
        return;
    };
    for call in held {
        let arguments = json!({
            "event": "approval_requested",
            "data": {
                "session_id": session_id,
                "call_id": call.call_id,
                "tool": call.name,
                "digest": call.digest,
                "expires_at": rfc3339(call.expires_at),
            },
        });
        let tool = tool.clone();
        let ctx = agentd_sdk::CallContext::new(
            session_id,
            &call.call_id,
            tool.timeout,
            tokio_util::sync::CancellationToken::new(),
        );
        tokio::spawn(async move {
            let call = agentd_sdk::ToolCall {
                tool: tool.name.clone(),
                arguments,
            };
            match tokio::time::timeout(tool.timeout, tool.handler.call(call, ctx)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(tool = %tool.name, kind = %error.kind, "approval webhook failed");
                }
                Err(_) => tracing::warn!(tool = %tool.name, "approval webhook timed out"),
            }
        });
    }
}
