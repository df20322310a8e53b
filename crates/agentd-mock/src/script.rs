//! Scripted replies: what the mock answers to the next request instead of its default
//! behaviour, built in Rust ([`Reply`], [`ScriptedCall`]) or read from the JSON accepted by
//! `POST /_mock/script`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::script_json::ReplyWire;

/// One scripted answer. Build it with a constructor and chain the setters:
///
/// ```
/// # use agentd_mock::{Reply, ScriptedCall};
/// # use std::time::Duration;
/// # use serde_json::json;
/// let reply = Reply::tool_calls(vec![ScriptedCall::new("send_email", json!({"to": "a@b.c"}))])
///     .all_index_zero()
///     .with_delay(Duration::from_millis(20));
/// # let _ = reply;
/// ```
///
/// As JSON (for `POST /_mock/script`), every field is optional and flat:
/// `{"text": "hi", "finish_reason": "length", "delay_ms": 10, "split_chars": true}`,
/// `{"tool_calls": [{"name": "f", "arguments": {"a": 1}, "id": "call_x"}], "text": "calling"}`,
/// `{"status": 500, "body": {"error": {"message": "boom"}}, "headers": {"retry-after": "1"}}`.
/// An object with none of `text`, `tool_calls`, `status` answers with the default behaviour
/// (its delay and stream quirks still apply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReplyWire", into = "ReplyWire")]
pub struct Reply {
    pub(crate) kind: ReplyKind,
    pub(crate) delay: Duration,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) quirks: StreamQuirks,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReplyKind {
    /// Answer as the default behaviour would.
    Default,
    /// An assistant message: optional text, zero or more tool calls.
    Message {
        text: Option<String>,
        calls: Vec<ScriptedCall>,
        finish_reason: Option<String>,
    },
    /// A plain HTTP response: a JSON body, or a string body sent verbatim.
    Http { status: u16, body: Value },
}

/// How a streamed answer is cut and damaged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamQuirks {
    pub split_chars: bool,
    pub all_index_zero: bool,
    pub wrong_finish_reason: bool,
    pub die_after_chunks: Option<usize>,
    pub chunk_delay: Duration,
}

/// One scripted tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    /// Sent as the `arguments` string exactly as stored here (`{}` when absent in JSON).
    #[serde(default = "empty_arguments", deserialize_with = "arguments_text")]
    pub arguments: String,
    /// The call id; the mock makes a unique one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn empty_arguments() -> String {
    "{}".to_owned()
}

/// In JSON, a string is taken verbatim (so malformed arguments can be scripted) and any other
/// value is serialized.
fn arguments_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(text) => text,
        other => other.to_string(),
    })
}

impl ScriptedCall {
    /// A call whose arguments are `arguments` serialized as JSON.
    pub fn new(name: impl Into<String>, arguments: Value) -> Self {
        Self {
            name: name.into(),
            arguments: arguments.to_string(),
            id: None,
        }
    }

    /// A call whose arguments string is sent verbatim, valid JSON or not.
    pub fn raw(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            arguments: arguments.into(),
            id: None,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

impl Reply {
    fn of(kind: ReplyKind) -> Self {
        Self {
            kind,
            delay: Duration::ZERO,
            headers: Vec::new(),
            quirks: StreamQuirks::default(),
        }
    }

    /// An assistant text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self::of(ReplyKind::Message {
            text: Some(text.into()),
            calls: Vec::new(),
            finish_reason: None,
        })
    }

    /// An assistant answer calling these tools (in parallel when several).
    pub fn tool_calls(calls: Vec<ScriptedCall>) -> Self {
        Self::of(ReplyKind::Message {
            text: None,
            calls,
            finish_reason: None,
        })
    }

    /// An HTTP error with a JSON body (a JSON string body is sent verbatim as text).
    pub fn error(status: u16, body: Value) -> Self {
        Self::of(ReplyKind::Http { status, body })
    }

    /// Any status with a body sent verbatim, e.g. a 200 that is not JSON.
    pub fn raw_body(status: u16, body: impl Into<String>) -> Self {
        Self::of(ReplyKind::Http {
            status,
            body: Value::String(body.into()),
        })
    }

    /// The answer the default behaviour would give, with this reply's delay and quirks.
    pub fn default_answer() -> Self {
        Self::of(ReplyKind::Default)
    }

    /// Adds text before the tool calls of a tool-call reply (replaces the text of a text reply).
    pub fn with_text(mut self, new_text: impl Into<String>) -> Self {
        if let ReplyKind::Message { text, .. } = &mut self.kind {
            *text = Some(new_text.into());
        }
        self
    }

    /// Overrides `finish_reason` (message replies only).
    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        if let ReplyKind::Message { finish_reason, .. } = &mut self.kind {
            *finish_reason = Some(reason.into());
        }
        self
    }

    /// Waits this long before answering (on top of the server's latency).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `retry-after: SECONDS`.
    pub fn with_retry_after(self, seconds: impl Into<String>) -> Self {
        self.with_header("retry-after", seconds)
    }

    /// Streams text one character per chunk instead of one word per chunk, and tool-call
    /// arguments one character per chunk.
    pub fn split_chars(mut self) -> Self {
        self.quirks.split_chars = true;
        self
    }

    /// Gives every streamed tool-call delta `index: 0`; calls differ only by the id of their
    /// first delta.
    pub fn all_index_zero(mut self) -> Self {
        self.quirks.all_index_zero = true;
        self
    }

    /// Reports `finish_reason: "stop"` even when the answer calls tools.
    pub fn wrong_finish_reason(mut self) -> Self {
        self.quirks.wrong_finish_reason = true;
        self
    }

    /// Streaming: closes the connection abruptly after `chunks` SSE events (or after the last
    /// chunk if there are fewer), never sending `[DONE]`.
    /// Not streaming: sends half of the JSON body, then closes the connection.
    pub fn die_after(mut self, chunks: usize) -> Self {
        self.quirks.die_after_chunks = Some(chunks);
        self
    }

    /// Waits this long before each streamed chunk.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.quirks.chunk_delay = delay;
        self
    }
}
