//! Streamed chat completions: SSE parsed incrementally, text forwarded as it arrives, tool
//! calls assembled from deltas by id and index (robust to providers that send every call with
//! index 0, split arguments across chunks, or report the wrong `finish_reason`).

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Deserialize;
use serde_json::Value;

use super::openai::{OpenAiProvider, arguments_text, generated_call_id, parse_usage, root_cause};
use super::secrets::Scrubber;
use super::sse::SseDecoder;
use super::{ModelRequest, ModelResponse, ProviderError, StreamEvent, Usage};
use crate::session::{ChatMessage, FunctionCall, Role, ToolCallRequest};

/// Starts a streamed call; retries (inside `send`) happen only before the first byte.
pub(super) async fn open(
    provider: &OpenAiProvider,
    request: &ModelRequest<'_>,
) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
    let body = OpenAiProvider::encode(request, true)?;
    let response = provider.send(body, None).await?;
    let events = Events {
        response,
        decoder: SseDecoder::default(),
        ended: false,
        scrubber: Arc::clone(&provider.scrubber),
    };
    let stream = futures_util::stream::unfold(
        (events, Assembler::default(), false),
        |(mut events, mut assembler, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let data = match events.next().await {
                    Some(Ok(data)) => data,
                    Some(Err(error)) => return Some((Err(error), (events, assembler, true))),
                    None => {
                        let result = assembler.finish(false);
                        return Some((result.map(StreamEvent::Done), (events, assembler, true)));
                    }
                };
                if data.trim() == "[DONE]" {
                    let result = assembler.finish(true);
                    return Some((result.map(StreamEvent::Done), (events, assembler, true)));
                }
                let chunk = match StreamChunk::parse(&data) {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let error = ProviderError::Protocol(
                            events.scrubber.text(&format!("bad stream chunk: {e}")),
                        );
                        return Some((Err(error), (events, assembler, true)));
                    }
                };
                if let Some(text) = assembler.push(chunk) {
                    return Some((Ok(StreamEvent::Text(text)), (events, assembler, false)));
                }
            }
        },
    );
    Ok(stream.boxed())
}

/// The events of a streamed response body, read as they arrive.
struct Events {
    response: reqwest::Response,
    decoder: SseDecoder,
    ended: bool,
    /// Error text leaves without the provider's secrets.
    scrubber: Arc<Scrubber>,
}

impl Events {
    /// The data of the next event; `None` once the body has ended.
    async fn next(&mut self) -> Option<Result<String, ProviderError>> {
        loop {
            match self.decoder.next_event() {
                Ok(Some(data)) => return Some(Ok(data)),
                Ok(None) if self.ended => return None,
                Ok(None) => {}
                Err(e) => return Some(Err(ProviderError::Protocol(format!("stream broken: {e}")))),
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.decoder.push(&bytes),
                Ok(None) => self.ended = true,
                Err(e) => {
                    let cause = root_cause(&e.without_url());
                    let error = ProviderError::Protocol(
                        self.scrubber.text(&format!("stream broken: {cause}")),
                    );
                    return Some(Err(error));
                }
            }
        }
    }
}

/// The parts of a streamed chunk agentd reads. Everything else (ids, model, logprobs) is
/// skipped while parsing instead of being built into a `Value` tree; the fields whose shape
/// providers bend stay `Value`s and are read leniently.
#[derive(Debug, Default, Deserialize)]
pub struct StreamChunk {
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Value>,
}

impl StreamChunk {
    /// Reads one event's data.
    pub fn parse(data: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(data)
    }
}

/// Builds one assistant message out of streamed deltas.
#[derive(Debug, Default)]
pub struct Assembler {
    text: String,
    calls: Vec<PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// Set when a chunk said the answer is over (a `finish_reason`).
    saw_finish: bool,
}

#[derive(Debug)]
struct PartialCall {
    index: u64,
    id: String,
    name: String,
    arguments: String,
}

impl Assembler {
    /// Takes one chunk; returns its text delta, if any.
    pub fn push(&mut self, chunk: StreamChunk) -> Option<String> {
        // A `null` usage is already `None` here.
        if let Some(usage) = parse_usage(chunk.usage.as_ref()) {
            self.usage = Some(usage);
        }
        let choice = chunk.choices?.into_iter().next()?;
        if let Some(Value::String(reason)) = choice.finish_reason {
            self.finish_reason = Some(reason);
            self.saw_finish = true;
        }
        let delta = choice.delta?;
        if let Some(Value::Array(calls)) = &delta.tool_calls {
            for call in calls {
                self.push_call_delta(call);
            }
        }
        match delta.content {
            Some(Value::String(text)) if !text.is_empty() => {
                self.text.push_str(&text);
                Some(text)
            }
            _ => None,
        }
    }

    fn push_call_delta(&mut self, delta: &Value) {
        let index = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = delta
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let function = delta.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        let arguments = arguments_text(function.and_then(|f| f.get("arguments")));
        // A new id starts a new call even when the index repeats (providers that send every
        // call with index 0); without an id, the delta continues the latest call at its index.
        let target = match id {
            Some(id) => match self.calls.iter().position(|c| c.id == id) {
                Some(i) => i,
                None => {
                    self.calls.push(PartialCall::new(index, id.to_owned()));
                    self.calls.len() - 1
                }
            },
            None => match self.calls.iter().rposition(|c| c.index == index) {
                Some(i) => i,
                None => {
                    self.calls.push(PartialCall::new(index, String::new()));
                    self.calls.len() - 1
                }
            },
        };
        let call = &mut self.calls[target];
        if let Some(name) = name
            && call.name.is_empty()
        {
            call.name = name.to_owned();
        }
        call.arguments.push_str(&arguments);
    }

    /// The assembled answer. `done` is whether the provider sent its end marker; a stream that
    /// stops with neither an end marker nor a finish reason was cut off.
    pub fn finish(&mut self, done: bool) -> Result<ModelResponse, ProviderError> {
        if !done && !self.saw_finish {
            return Err(ProviderError::Protocol(
                "the model's stream ended before the answer was complete".into(),
            ));
        }
        let calls: Vec<ToolCallRequest> = std::mem::take(&mut self.calls)
            .into_iter()
            .filter(|c| !c.name.is_empty())
            .map(|c| ToolCallRequest {
                id: if c.id.is_empty() {
                    generated_call_id()
                } else {
                    c.id
                },
                kind: "function".into(),
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            })
            .collect();
        // finish_reason is not trusted: calls present means the model asked for tools.
        let finish_reason = if calls.is_empty() {
            self.finish_reason
                .take()
                .filter(|r| r != "tool_calls")
                .or(Some("stop".into()))
        } else {
            Some("tool_calls".into())
        };
        let text = std::mem::take(&mut self.text);
        Ok(ModelResponse {
            message: ChatMessage {
                role: Role::Assistant,
                content: if text.is_empty() {
                    Value::Null
                } else {
                    Value::String(text)
                },
                name: None,
                tool_call_id: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
            },
            finish_reason,
            usage: self.usage.unwrap_or_default(),
        })
    }
}

impl PartialCall {
    fn new(index: u64, id: String) -> Self {
        Self {
            index,
            id,
            name: String::new(),
            arguments: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A chunk as the model would send it.
    fn chunk(value: Value) -> StreamChunk {
        serde_json::from_value(value).expect("a chunk")
    }

    fn call_delta(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> StreamChunk {
        let mut function = json!({ "arguments": args });
        if let Some(name) = name {
            function["name"] = json!(name);
        }
        let mut call = json!({ "index": index, "function": function });
        if let Some(id) = id {
            call["id"] = json!(id);
        }
        chunk(json!({ "choices": [{ "delta": { "tool_calls": [call] }, "finish_reason": null }] }))
    }

    #[test]
    fn assembles_split_arguments_and_all_index_zero_calls() {
        let mut a = Assembler::default();
        a.push(call_delta(0, Some("c1"), Some("first"), ""));
        for ch in ["{\"a\"", ":", "1}"] {
            a.push(call_delta(0, None, None, ch));
        }
        a.push(call_delta(0, Some("c2"), Some("second"), "{\"b\":"));
        a.push(call_delta(0, None, None, "2}"));
        a.push(chunk(
            json!({ "choices": [{ "delta": {}, "finish_reason": "stop" }] }),
        ));
        a.push(chunk(json!({ "choices": [], "usage": { "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3 } })));
        let r = a.finish(true).unwrap();
        let calls = r.message.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.arguments.as_str()),
            ("c1", "{\"a\":1}")
        );
        assert_eq!(
            (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
            ("c2", "{\"b\":2}")
        );
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage.total_tokens, 3);
    }

    #[test]
    fn text_is_forwarded_and_cut_off_streams_fail() {
        let mut a = Assembler::default();
        let t = a.push(chunk(
            json!({ "choices": [{ "delta": { "content": "Hel" } }] }),
        ));
        assert_eq!(t.as_deref(), Some("Hel"));
        a.push(chunk(
            json!({ "choices": [{ "delta": { "content": "lo" } }] }),
        ));
        assert!(Assembler::default().finish(false).is_err());
        a.push(chunk(
            json!({ "choices": [{ "delta": {}, "finish_reason": "length" }] }),
        ));
        let r = a.finish(false).unwrap();
        assert_eq!(r.message.content, json!("Hello"));
        assert_eq!(r.finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn chunks_are_read_leniently_and_unknown_fields_are_skipped() {
        let mut a = Assembler::default();
        let bent = [
            r#"{"id":"x","object":"chat.completion.chunk","model":"m","choices":null,"usage":null}"#,
            r#"{"choices":[{"index":0,"logprobs":{"a":[1]},"delta":{"content":7,"tool_calls":"no"},"finish_reason":3}],"usage":"n/a"}"#,
            r#"{"choices":[{"delta":{"role":"assistant","content":"Hi","refusal":null},"finish_reason":null}],"extra":{"deep":[{}]}}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5,"details":{}}}"#,
        ];
        let texts: Vec<Option<String>> = bent
            .iter()
            .map(|data| a.push(StreamChunk::parse(data).expect("parses")))
            .collect();
        assert_eq!(texts, [None, None, Some("Hi".to_owned()), None]);
        let r = a.finish(false).expect("a finish reason was seen");
        assert_eq!(r.message.content, json!("Hi"));
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        assert_eq!(r.usage.total_tokens, 5);
        assert!(StreamChunk::parse(r#"{"choices":"all"}"#).is_err());
    }
}
