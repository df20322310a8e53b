//! Keeps history well-formed before a turn starts: every tool call recorded in history gets a
//! result before anything else is appended. Results come from the request (client tools), from
//! a person's decision on a call held for approval (an approved call is run by the turn, a
//! denied, expired or superseded one answered `denied`), from the journal (a server tool whose
//! result was lost from history), or are written as errors the model can read
//! (`outcome_unknown` for a call that started but never finished, `no_result` for one that
//! never ran).

use std::collections::HashSet;

use serde_json::json;

use super::TurnError;
use crate::session::{ChatMessage, EntrySource, History, Role, call_digest_of_text};
use crate::store::{ApprovalDecision, ApprovalRecord, ApprovalState, CallStatus, Store};
use crate::tool::DispatchFailure;

/// A call in history without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingCall {
    pub id: String,
    pub name: String,
    /// The call's arguments as the model wrote them.
    pub arguments: String,
}

impl PendingCall {
    /// The journal's identity of the call's content; computed only for a call the request
    /// does not answer, the one case that asks the journal.
    pub(crate) fn digest(&self) -> String {
        call_digest_of_text(&self.name, &self.arguments)
    }
}

/// Calls in history without a result, in order.
///
/// History is well-formed up to its tail (results follow their calls before any other
/// message), so only the last assistant message with calls can have calls without results,
/// and only the messages after it can hold their results: the scan looks at that tail, not at
/// every entry of a long session.
pub(crate) fn unanswered(history: &History) -> Vec<PendingCall> {
    // The last message that is not a result: if it made no calls, every earlier call was
    // answered before it.
    let Some(last) = history.iter().rposition(|e| e.message.role != Role::Tool) else {
        return Vec::new();
    };
    let answered: Vec<&str> = history
        .iter_from(last + 1)
        .filter(|e| e.message.role == Role::Tool)
        .filter_map(|e| e.message.tool_call_id.as_deref())
        .collect();
    history[last]
        .message
        .calls()
        .iter()
        .filter(|c| !answered.contains(&c.id.as_str()))
        .map(|c| PendingCall {
            id: c.id.clone(),
            name: c.function.name.clone(),
            arguments: c.function.arguments.clone(),
        })
        .collect()
}

/// One message of the turn's input, or an approved call the turn runs to make its result.
#[derive(Debug)]
pub(super) enum Slot {
    Message(ChatMessage, EntrySource),
    Approved(PendingCall),
}

/// Orders the request's messages after history: results for pending calls first (from the
/// request, a decision, the journal, else an error result), then the rest of the request.
pub(super) async fn reconcile(
    store: &dyn Store,
    session_id: &str,
    history: &History,
    incoming: Vec<ChatMessage>,
) -> Result<Vec<Slot>, TurnError> {
    let pending = unanswered(history);
    // Read only when calls are unanswered: a turn after an answered one costs no read.
    let approvals = if pending.is_empty() {
        Vec::new()
    } else {
        store.approvals(session_id).await?
    };
    let held = |id: &str| approvals.iter().find(|a| a.call_id == id);
    let mut answers = Vec::new();
    let mut rest = Vec::new();
    // Ids of the calls the request's own messages make so far: a result in the request may
    // answer one of them instead of a pending call.
    let mut called_in_request: HashSet<String> = HashSet::new();
    for (i, message) in incoming.into_iter().enumerate() {
        if message.role != Role::Tool {
            called_in_request.extend(message.calls().iter().map(|c| c.id.clone()));
            rest.push((message, EntrySource::ApiRequest));
            continue;
        }
        let Some(id) = message.tool_call_id.clone() else {
            return Err(TurnError::invalid(
                format!("messages.{i}.tool_call_id"),
                "a `tool` message needs the `tool_call_id` of the call it answers",
            ));
        };
        let in_request = called_in_request.contains(&id);
        if !in_request && held(&id).is_some() {
            return Err(TurnError::invalid(
                format!("messages.{i}.tool_call_id"),
                format!(
                    "`{id}` is a call held for approval: decide it at \
                     /sessions/{session_id}/approvals/{id} instead of answering it"
                ),
            ));
        }
        if !in_request && !pending.iter().any(|p| p.id == id) {
            return Err(TurnError::invalid(
                format!("messages.{i}.tool_call_id"),
                format!("`{id}` does not answer any pending tool call of this session"),
            ));
        }
        if in_request {
            rest.push((message, EntrySource::ApiRequest));
        } else {
            answers.push(message);
        }
    }
    let mut ordered = Vec::with_capacity(pending.len() + rest.len());
    for call in &pending {
        let PendingCall { id, name, .. } = call;
        if let Some(pos) = answers
            .iter()
            .position(|m| m.tool_call_id.as_deref() == Some(id))
        {
            let mut message = answers.swap_remove(pos);
            message.name.get_or_insert_with(|| name.clone());
            ordered.push(Slot::Message(message, EntrySource::ApiRequest));
            continue;
        }
        if let Some(record) = held(id) {
            let state = settle(store, record).await?;
            if state.0 == ApprovalState::Approved {
                ordered.push(Slot::Approved(call.clone()));
            } else {
                let content = denied(state.1.as_deref().unwrap_or(state.0.as_str()));
                ordered.push(Slot::Message(
                    ChatMessage::tool_result(id, name, content),
                    EntrySource::Internal,
                ));
            }
            continue;
        }
        let content = match store.journal_get(session_id, id, &call.digest()).await? {
            Some(record) if record.status == CallStatus::Finished => {
                record.result.unwrap_or_default()
            }
            Some(_) => error_result(
                DispatchFailure::OutcomeUnknown.as_str(),
                "this call was started but its result was lost (the daemon stopped while it ran); it was not run again: check its effect before calling it again",
            ),
            None => error_result(
                "no_result",
                "no result was given for this call and it was not run",
            ),
        };
        ordered.push(Slot::Message(
            ChatMessage::tool_result(id, name, content),
            EntrySource::Internal,
        ));
    }
    ordered.extend(
        rest.into_iter()
            .map(|(message, source)| Slot::Message(message, source)),
    );
    Ok(ordered)
}

/// The decision a held call stands on when a turn begins. One still pending is answered for
/// the person: superseded (the turn brings new input), or expired when its time has passed.
async fn settle(
    store: &dyn Store,
    record: &ApprovalRecord,
) -> Result<(ApprovalState, Option<String>), TurnError> {
    if record.state != ApprovalState::Pending {
        return Ok((record.state, record.reason.clone()));
    }
    let decided = store
        .approval_decide(
            &record.session_id,
            &record.call_id,
            &record.digest,
            ApprovalState::Superseded,
            Some(ApprovalState::Superseded.as_str().to_owned()),
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    let record = match decided {
        ApprovalDecision::Decided(record)
        | ApprovalDecision::Expired(record)
        | ApprovalDecision::AlreadyDecided(record)
        | ApprovalDecision::DigestMismatch(record) => record,
        ApprovalDecision::NotFound => return Ok((ApprovalState::Superseded, None)),
    };
    crate::telemetry::metrics().record_approval_decision(record.state.as_str());
    tracing::info!(
        session_id = %record.session_id,
        tool = %record.tool,
        digest = %record.digest,
        state = record.state.as_str(),
        "held tool call answered without a decision"
    );
    Ok((record.state, record.reason))
}

/// The result of a call a person did not approve: the model reads why.
pub(crate) fn denied(reason: &str) -> String {
    json!({ "error": {
        "kind": "denied",
        "reason": reason,
        "message": "this call needed a person's approval and did not get it; it was not run",
        "retryable": false,
    } })
    .to_string()
}

fn error_result(kind: &str, message: &str) -> String {
    json!({ "error": { "kind": kind, "message": message, "retryable": false } }).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::unanswered;
    use crate::session::{
        ChatMessage, Entry, EntrySource, FunctionCall, History, MessageJson, Role, ToolCallRequest,
    };

    fn entry(message: ChatMessage) -> Arc<Entry> {
        Arc::new(Entry {
            id: Default::default(),
            session_id: "s".into(),
            source: EntrySource::ApiRequest,
            message,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            json: MessageJson::default(),
        })
    }

    fn calls(ids: &[&str]) -> Arc<Entry> {
        let mut message = ChatMessage::text(Role::Assistant, "");
        message.tool_calls = Some(
            ids.iter()
                .map(|id| ToolCallRequest {
                    id: (*id).into(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: format!("tool_{id}"),
                        arguments: "{}".into(),
                    },
                })
                .collect(),
        );
        entry(message)
    }

    fn result(id: &str) -> Arc<Entry> {
        let mut message = ChatMessage::text(Role::Tool, "{}");
        message.tool_call_id = Some(id.into());
        entry(message)
    }

    fn text(role: Role) -> Arc<Entry> {
        entry(ChatMessage::text(role, "x"))
    }

    fn ids(history: &[Arc<Entry>]) -> Vec<String> {
        unanswered(&History::from_entries(history.iter().cloned()))
            .into_iter()
            .map(|call| call.id)
            .collect()
    }

    #[test]
    fn only_the_calls_of_the_last_assistant_message_without_results_are_pending() {
        assert!(ids(&[]).is_empty());
        assert!(ids(&[text(Role::User), text(Role::Assistant)]).is_empty());
        let answered_before = [
            text(Role::User),
            calls(&["a1"]),
            result("a1"),
            text(Role::Assistant),
            text(Role::User),
        ];
        assert!(ids(&answered_before).is_empty());

        let mut tail = answered_before.to_vec();
        tail.extend([calls(&["b1", "b2", "b3"]), result("b2")]);
        assert_eq!(ids(&tail), ["b1", "b3"]);
        let first = &unanswered(&History::from_entries(tail.iter().cloned()))[0];
        assert_eq!((first.id.as_str(), first.name.as_str()), ("b1", "tool_b1"));
        assert_eq!(
            first.digest(),
            crate::session::call_digest_of_text("tool_b1", "{}")
        );
        tail.extend([result("b1"), result("b3")]);
        assert!(ids(&tail).is_empty());
    }
}
