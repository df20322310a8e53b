//! The `[limits]` section: a ceiling on everything a client or the model can make agentd hold
//! or wait for. Each one has a default; hitting it is a 4xx for a client, a 502 for a model
//! answer, a tool result for a handler's result, never an unbounded buffer.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A request body must have arrived whole within this time of its handler starting to
    /// read it (408 otherwise).
    #[serde(deserialize_with = "duration::deserialize")]
    pub body_read_timeout: Duration,
    /// Messages in one chat request (422 above).
    pub max_request_messages: usize,
    /// Bytes of records one list page may hold (422 at `query.limit` above: ask for fewer).
    pub max_list_bytes: usize,
    /// Agents, and users, one session may name (422 above): each is looked up when the
    /// session is stored.
    pub max_session_participants: usize,
    /// `metadata_filter` entries in one list query (422 above).
    pub max_list_filters: usize,
    /// History entries a session may hold; a turn that would store more gets 413.
    pub max_history_entries: usize,
    /// Bytes of message JSON a session's history may hold; a turn that would store more gets
    /// 413.
    pub max_history_bytes: usize,
    /// Bytes of one serialized model request. Over it, a session with
    /// `context_overflow: "truncate"` drops its oldest messages until the request fits; any
    /// other session's turn fails with 413.
    pub max_prompt_bytes: usize,
    /// Bytes of a model answer: a non-streamed body, or a streamed answer's text and tool
    /// calls (502 above).
    pub max_response_bytes: usize,
    /// Longest a model call may take as a whole, however steadily its stream trickles (a
    /// provider sending keep-alive comments forever): the turn then fails as a timeout.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_answer_time: Duration,
    /// Bytes of one line, and of one event's data, in a model's event stream (502 above).
    pub max_event_bytes: usize,
    /// Tool calls in one model answer (502 above), or in one assistant message of a chat
    /// request (422 above): each becomes a journal row, a handler run and a history entry.
    pub max_tool_calls: usize,
    /// Bytes of one tool result; a larger one is replaced by a `result_too_large` error
    /// result the model can act on.
    pub max_tool_result_bytes: usize,
    /// Events of a streamed turn waiting for a slow client; when they are all waiting, the
    /// turn waits too (it stops reading the model) instead of buffering without end.
    pub stream_buffer_events: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 16_384,
            body_read_timeout: Duration::from_secs(30),
            max_request_messages: 1_000,
            max_list_filters: 16,
            max_session_participants: 1_000,
            max_list_bytes: 16 << 20,
            max_history_entries: 10_000,
            max_history_bytes: 8 << 20,
            max_prompt_bytes: 4 << 20,
            max_response_bytes: 4 << 20,
            max_event_bytes: 1 << 20,
            max_answer_time: Duration::from_secs(600),
            max_tool_calls: 128,
            max_tool_result_bytes: 1 << 20,
            stream_buffer_events: 64,
        }
    }
}

impl LimitsConfig {
    /// Values that cannot work: every limit must let something through.
    pub fn problems(&self) -> Vec<String> {
        let counts = [
            ("max_connections", self.max_connections),
            ("max_request_messages", self.max_request_messages),
            ("max_list_bytes", self.max_list_bytes),
            ("max_session_participants", self.max_session_participants),
            ("max_history_entries", self.max_history_entries),
            ("max_history_bytes", self.max_history_bytes),
            ("max_prompt_bytes", self.max_prompt_bytes),
            ("max_response_bytes", self.max_response_bytes),
            ("max_event_bytes", self.max_event_bytes),
            ("max_tool_calls", self.max_tool_calls),
            ("max_tool_result_bytes", self.max_tool_result_bytes),
            ("stream_buffer_events", self.stream_buffer_events),
        ];
        let mut problems: Vec<String> = counts
            .iter()
            .filter(|(_, value)| *value == 0)
            .map(|(name, _)| format!("limits.{name} must be at least 1"))
            .collect();
        if self.body_read_timeout.is_zero() {
            problems.push("limits.body_read_timeout must be longer than 0".into());
        }
        if self.max_answer_time.is_zero() {
            problems.push("limits.max_answer_time must be longer than 0".into());
        }
        // tokio's semaphore cannot hand out more permits than this.
        if self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            problems.push(format!(
                "limits.max_connections must be at most {}",
                tokio::sync::Semaphore::MAX_PERMITS
            ));
        }
        problems
    }
}
