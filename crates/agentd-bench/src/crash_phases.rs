//! What the crash campaign concludes about one killed turn: the phase the kill landed in,
//! derived from what is observable afterwards (the session's history, the relay's spool, the
//! chat response if it arrived), the invariants checked on it, and the table of phases.

use serde_json::Value;

/// Where in a turn the SIGKILL landed, in turn order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The model's answer (the tool call) was not stored: the turn left nothing.
    BeforeModelAnswer,
    /// The call was stored and journaled; the relay had not had the DATA command.
    SendBeforeData,
    /// The relay had the DATA command but had not accepted the message.
    SendDataInProgress,
    /// The relay accepted the message; its result was not in history.
    SentNotRecorded,
    /// The call's result was in history (the turn may have finished).
    AfterResult,
}

impl Phase {
    pub(crate) const ALL: [Phase; 5] = [
        Phase::BeforeModelAnswer,
        Phase::SendBeforeData,
        Phase::SendDataInProgress,
        Phase::SentNotRecorded,
        Phase::AfterResult,
    ];

    fn label(self) -> &'static str {
        match self {
            Phase::BeforeModelAnswer => "before the model answered (answer not stored)",
            Phase::SendBeforeData => "during the send: call journaled, no DATA yet",
            Phase::SendDataInProgress => "during the send: SMTP DATA in progress",
            Phase::SentNotRecorded => "after the send, before the result was recorded",
            Phase::AfterResult => "after: result recorded / turn finished",
        }
    }

    /// A call cut off in this phase must reach the model as `outcome_unknown`.
    fn cut_off_call(self) -> bool {
        matches!(
            self,
            Phase::SendBeforeData | Phase::SendDataInProgress | Phase::SentNotRecorded
        )
    }
}

/// What the relay's spool says about one turn's message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RelayCounts {
    /// DATA commands for it.
    pub data_starts: usize,
    /// Messages accepted (answered 250).
    pub accepted: usize,
}

impl RelayCounts {
    pub(crate) fn of(events: &[Value], recipient: &str) -> Self {
        let mut counts = Self::default();
        for event in events
            .iter()
            .filter(|e| crate::smtp_relay::is_for(e, recipient))
        {
            match event["event"].as_str() {
                Some("data_start") => counts.data_starts += 1,
                Some("message") if event["answered"] != false => counts.accepted += 1,
                _ => {}
            }
        }
        counts
    }
}

/// The turn's own entries found in a session's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TurnInHistory {
    /// The user message carrying the marker.
    pub input: bool,
    /// The id of the assistant's send_email call to the turn's recipient.
    pub call_id: Option<String>,
    /// Its result, parsed.
    pub result: Option<Value>,
    /// An assistant answer without tool calls after the result.
    pub final_answer: bool,
}

impl TurnInHistory {
    pub(crate) fn find(entries: &[Value], marker: &str, recipient: &str) -> Self {
        let mut found = Self::default();
        let Some(start) = entries
            .iter()
            .position(|e| e["role"] == "user" && e["content"].to_string().contains(marker))
        else {
            return found;
        };
        found.input = true;
        let rest = &entries[start + 1..];
        let Some(call_at) = rest.iter().position(|e| {
            e["tool_calls"].is_array() && e["tool_calls"].to_string().contains(recipient)
        }) else {
            return found;
        };
        let call_id = rest[call_at]["tool_calls"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let after_call = &rest[call_at + 1..];
        if let Some(result_at) = after_call
            .iter()
            .position(|e| e["role"] == "tool" && e["tool_call_id"] == call_id.as_str())
        {
            found.result = Some(parse_content(&after_call[result_at]["content"]));
            found.final_answer = after_call[result_at + 1..]
                .iter()
                .take_while(|e| e["role"] != "user")
                .any(|e| e["role"] == "assistant" && !e["tool_calls"].is_array());
        }
        found.call_id = Some(call_id);
        found
    }
}

fn parse_content(content: &Value) -> Value {
    content
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| content.clone())
}

/// The phase a kill landed in, from what the restarted daemon's history and the relay show.
pub(crate) fn classify(turn: &TurnInHistory, relay: RelayCounts) -> Phase {
    if turn.call_id.is_none() {
        Phase::BeforeModelAnswer
    } else if turn.result.is_some() {
        Phase::AfterResult
    } else if relay.accepted > 0 {
        Phase::SentNotRecorded
    } else if relay.data_starts > 0 {
        Phase::SendDataInProgress
    } else {
        Phase::SendBeforeData
    }
}

/// Problems with a history's shape: a tool result for a call not pending, a message while
/// calls are pending, a call id used twice, timestamps going back. `open_tail` allows calls
/// still unanswered at the end (a turn cut off before its results were stored).
pub(crate) fn history_problems(entries: &[Value], open_tail: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut last_time = f64::MIN;
    for (at, entry) in entries.iter().enumerate() {
        if let Some(time) = entry["timestamp"].as_f64() {
            if time < last_time {
                problems.push(format!("entry {at} is older than the one before it"));
            }
            last_time = time;
        }
        if let Some(calls) = entry["tool_calls"].as_array() {
            if !pending.is_empty() {
                problems.push(format!(
                    "entry {at}: new calls while {pending:?} are pending"
                ));
            }
            for call in calls {
                let id = call["id"].as_str().unwrap_or_default().to_owned();
                if !seen.insert(id.clone()) {
                    problems.push(format!("entry {at}: call id {id} used twice"));
                }
                pending.push(id);
            }
        } else if entry["role"] == "tool" {
            let id = entry["tool_call_id"].as_str().unwrap_or_default();
            match pending.iter().position(|p| p == id) {
                Some(i) => {
                    pending.remove(i);
                }
                None => problems.push(format!("entry {at}: result for {id}, not pending")),
            }
        } else if !pending.is_empty() {
            problems.push(format!(
                "entry {at}: {} message while {pending:?} are pending",
                entry["role"]
            ));
            pending.clear();
        }
    }
    if !open_tail && !pending.is_empty() {
        problems.push(format!("calls {pending:?} never got a result"));
    }
    problems
}

/// Everything known about one killed turn once the daemon is back.
pub(crate) struct KilledTurn<'a> {
    pub relay: RelayCounts,
    /// The turn's entries right after the restart.
    pub found: &'a TurnInHistory,
    /// The chat response, when it arrived whole before the kill.
    pub acknowledged: Option<&'a Value>,
}

/// Invariants checked right after the restart, before the session is used again.
pub(crate) fn check_after_restart(turn: &KilledTurn<'_>) -> Vec<String> {
    let mut violations = Vec::new();
    if turn.relay.data_starts > 1 || turn.relay.accepted > 1 {
        violations.push(format!(
            "the email went to the relay {} times ({} accepted)",
            turn.relay.data_starts, turn.relay.accepted
        ));
    }
    if turn.found.call_id.is_none() && turn.relay.data_starts > 0 {
        violations.push("the relay got the email but history has no call for it".to_owned());
    }
    if let Some(response) = turn.acknowledged {
        if !(turn.found.input && turn.found.result.is_some() && turn.found.final_answer) {
            violations.push(format!(
                "an acknowledged turn is missing from history: {:?}",
                turn.found
            ));
        }
        if response["tool_runs"][0]["status"] != "ok" {
            violations.push(format!(
                "an acknowledged turn's send did not succeed: {}",
                response["tool_runs"]
            ));
        }
    }
    if let Some(result) = &turn.found.result
        && result["status"] == "sent"
        && turn.relay.accepted != 1
    {
        violations.push(format!(
            "history says sent, the relay accepted {} messages",
            turn.relay.accepted
        ));
    }
    violations
}

/// Invariants checked once the next chat on the session ran: `result` is what the call's
/// result is now (given by that chat when the kill cut the call off).
pub(crate) fn check_after_next_chat(phase: Phase, result: Option<&Value>) -> Vec<String> {
    if !phase.cut_off_call() {
        return Vec::new();
    }
    match result {
        Some(result) if result["error"]["kind"] == "outcome_unknown" => Vec::new(),
        other => vec![format!(
            "a call cut off by the kill was answered {other:?}, not outcome_unknown"
        )],
    }
}

/// Counts per phase, for the table.
#[derive(Default)]
pub(crate) struct Tally {
    rows: [Row; 5],
}

#[derive(Default, Clone, Copy)]
struct Row {
    kills: usize,
    acknowledged: usize,
    accepted: usize,
    outcome_unknown: usize,
    violations: usize,
}

impl Tally {
    pub(crate) fn add(
        &mut self,
        phase: Phase,
        acknowledged: bool,
        relay: RelayCounts,
        outcome_unknown: bool,
        violations: usize,
    ) {
        let at = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
        let row = &mut self.rows[at];
        row.kills += 1;
        row.acknowledged += usize::from(acknowledged);
        row.accepted += relay.accepted;
        row.outcome_unknown += usize::from(outcome_unknown);
        row.violations += violations;
    }

    pub(crate) fn print(&self) {
        println!(
            "\n| phase of the kill | kills | acknowledged | emails accepted | answered outcome_unknown | violations |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let mut total = Row::default();
        for (phase, row) in Phase::ALL.iter().zip(&self.rows) {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                phase.label(),
                row.kills,
                row.acknowledged,
                row.accepted,
                row.outcome_unknown,
                row.violations
            );
            total.kills += row.kills;
            total.acknowledged += row.acknowledged;
            total.accepted += row.accepted;
            total.outcome_unknown += row.outcome_unknown;
            total.violations += row.violations;
        }
        println!(
            "| all | {} | {} | {} | {} | {} |",
            total.kills,
            total.acknowledged,
            total.accepted,
            total.outcome_unknown,
            total.violations
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(id: &str, to: &str) -> Value {
        json!({"role": "assistant", "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "send_email", "arguments": format!("{{\"to\":\"{to}\"}}")}}]})
    }

    fn result(id: &str, content: Value) -> Value {
        json!({"role": "tool", "tool_call_id": id, "content": content.to_string()})
    }

    #[test]
    fn finds_the_turn_and_classifies_by_what_was_stored_and_sent() {
        let to = "t1@campaign.example";
        let user = json!({"role": "user", "content": "report t1"});
        let none = TurnInHistory::find(std::slice::from_ref(&user), "t1", to);
        assert_eq!(
            classify(&none, RelayCounts::default()),
            Phase::BeforeModelAnswer
        );

        let open = [user.clone(), call("c1", to)];
        let found = TurnInHistory::find(&open, "t1", to);
        assert_eq!(found.call_id.as_deref(), Some("c1"));
        let data = RelayCounts {
            data_starts: 1,
            accepted: 0,
        };
        let sent = RelayCounts {
            data_starts: 1,
            accepted: 1,
        };
        assert_eq!(
            classify(&found, RelayCounts::default()),
            Phase::SendBeforeData
        );
        assert_eq!(classify(&found, data), Phase::SendDataInProgress);
        assert_eq!(classify(&found, sent), Phase::SentNotRecorded);

        let done = [
            user,
            call("c1", to),
            result("c1", json!({"status": "sent"})),
            json!({"role": "assistant", "content": "Done."}),
        ];
        let found = TurnInHistory::find(&done, "t1", to);
        assert!(found.final_answer);
        assert_eq!(classify(&found, sent), Phase::AfterResult);
        let ok = KilledTurn {
            relay: sent,
            found: &found,
            acknowledged: Some(&json!({"tool_runs": [{"status": "ok"}]})),
        };
        assert!(check_after_restart(&ok).is_empty());
        let twice = KilledTurn {
            relay: RelayCounts {
                data_starts: 2,
                accepted: 2,
            },
            ..ok
        };
        assert_eq!(
            check_after_restart(&twice).len(),
            2,
            "sent twice; says sent"
        );
    }

    #[test]
    fn an_acknowledged_turn_missing_from_history_is_a_violation() {
        let found = TurnInHistory::default();
        let turn = KilledTurn {
            relay: RelayCounts::default(),
            found: &found,
            acknowledged: Some(&json!({"tool_runs": [{"status": "ok"}]})),
        };
        assert_eq!(check_after_restart(&turn).len(), 1);
    }

    #[test]
    fn a_cut_off_call_must_be_answered_outcome_unknown() {
        let unknown = json!({"error": {"kind": "outcome_unknown"}});
        assert!(check_after_next_chat(Phase::SentNotRecorded, Some(&unknown)).is_empty());
        let retry = json!({"error": {"kind": "relay_unreachable"}});
        assert_eq!(
            check_after_next_chat(Phase::SendDataInProgress, Some(&retry)).len(),
            1
        );
        assert_eq!(check_after_next_chat(Phase::SendBeforeData, None).len(), 1);
        assert!(check_after_next_chat(Phase::BeforeModelAnswer, None).is_empty());
    }

    #[test]
    fn history_shape_problems_are_found() {
        let to = "x@campaign.example";
        let good = [
            json!({"role": "user", "content": "a"}),
            call("c1", to),
            result("c1", json!({})),
            json!({"role": "assistant", "content": "ok"}),
        ];
        assert!(history_problems(&good, false).is_empty());
        assert!(history_problems(&good[..2], true).is_empty());
        assert_eq!(history_problems(&good[..2], false).len(), 1);
        let orphan = [json!({"role": "user"}), result("c9", json!({}))];
        assert_eq!(history_problems(&orphan, false).len(), 1);
        let interleaved = [
            call("c1", to),
            json!({"role": "user"}),
            result("c1", json!({})),
        ];
        assert_eq!(history_problems(&interleaved, false).len(), 2);
        let reused = [
            call("c1", to),
            result("c1", json!({})),
            call("c1", to),
            result("c1", json!({})),
        ];
        assert_eq!(history_problems(&reused, false).len(), 1);
    }
}
