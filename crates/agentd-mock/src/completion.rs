//! One finished answer ([`Answer`]): its ids, finish reason and deterministic token counts, and
//! its non-streaming `chat.completion` JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::behaviour::DefaultAnswer;
use super::message::Message;
use super::script::{ScriptedCall, StreamQuirks};
use super::wire::ChatRequest;

/// A tool call with its final id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// Everything needed to write the answer as one JSON object or as stream chunks.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub text: Option<String>,
    pub calls: Vec<Call>,
    pub finish_reason: String,
    pub usage: Usage,
}

/// The parts of an answer before ids are assigned.
pub(crate) struct Draft {
    pub text: Option<String>,
    pub calls: Vec<ScriptedCall>,
    pub finish_reason: Option<String>,
}

impl From<DefaultAnswer> for Draft {
    fn from(answer: DefaultAnswer) -> Self {
        let (text, calls) = match answer {
            DefaultAnswer::Text(text) => (Some(text), Vec::new()),
            DefaultAnswer::Calls(calls) => (None, calls),
        };
        Self {
            text,
            calls,
            finish_reason: None,
        }
    }
}

impl Answer {
    /// Gives calls without an id `call_N`, with N from `next_id`.
    pub(crate) fn new(
        request: &ChatRequest<'_>,
        draft: Draft,
        quirks: &StreamQuirks,
        completion_number: u64,
        mut next_id: impl FnMut() -> u64,
    ) -> Self {
        let calls: Vec<Call> = draft
            .calls
            .into_iter()
            .map(|call| Call {
                id: call.id.unwrap_or_else(|| format!("call_{}", next_id())),
                name: call.name,
                arguments: call.arguments,
            })
            .collect();
        let finish_reason = draft.finish_reason.unwrap_or_else(|| {
            let reason = if calls.is_empty() || quirks.wrong_finish_reason {
                "stop"
            } else {
                "tool_calls"
            };
            reason.to_owned()
        });
        let output_chars = draft.text.as_deref().map_or(0, |text| text.chars().count())
            + calls
                .iter()
                .map(|call| call.name.chars().count() + call.arguments.chars().count())
                .sum::<usize>();
        let usage = Usage {
            prompt: prompt_tokens(request.messages),
            completion: to_u64(output_chars / 4 + 1),
        };
        Self {
            id: format!("chatcmpl-mock{completion_number}"),
            created: unix_seconds(),
            model: request.model.to_owned(),
            text: draft.text,
            calls,
            finish_reason,
            usage,
        }
    }

    /// The `chat.completion` object.
    pub(crate) fn to_json(&self) -> Value {
        let mut message = json!({
            "role": "assistant",
            "content": self.text,
            "refusal": null,
        });
        if !self.calls.is_empty() {
            let calls: Vec<Value> = self
                .calls
                .iter()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            message["tool_calls"] = Value::Array(calls);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage.to_json(),
        })
    }
}

/// Characters of all message contents divided by four, rounded up.
pub(crate) fn prompt_tokens(messages: &[Message<'_>]) -> u64 {
    let chars: usize = messages.iter().map(Message::content_chars).sum();
    to_u64(chars.div_ceil(4))
}

fn to_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
