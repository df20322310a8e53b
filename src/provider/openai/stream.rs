//! Streamed chat completions: SSE parsed incrementally, text forwarded as it arrives, tool
//! calls assembled from deltas by id and index (robust to providers that send every call with
//! index 0, split arguments across chunks, or report the wrong `finish_reason`). The answer
//! assembled (text, tool-call ids, names and arguments) is bounded by
//! `limits.max_response_bytes` and its calls by `limits.max_tool_calls`; a stream going past
//! either is an upstream error.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Deserialize;
use serde_json::Value;

use super::sse::SseDecoder;
use super::transport::Answer;
use super::{OpenAiProvider, arguments_text, generated_call_id, parse_usage};
use crate::provider::secrets::Scrubber;
use crate::provider::{ModelRequest, ModelResponse, ProviderError, StreamEvent, Usage};
use crate::session::{ChatMessage, FunctionCall, Role, ToolCallRequest};

/// Starts a streamed call; retries (inside `send`) happen only before the first byte.
pub(super) async fn open(
    provider: &OpenAiProvider,
    request: &ModelRequest<'_>,
) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
    let body = provider.encode(request, true)?;
    let response = provider.send(body, None).await?;
    let events = Events {
        response,
        decoder: SseDecoder::new(provider.limits.event),
        ended: false,
        scrubber: Arc::clone(&provider.scrubber),
    };
    let assembler = Assembler::new(provider.limits.response, provider.limits.calls);
    let stream = futures_util::stream::unfold(
        (events, assembler, false),
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
                match assembler.take_event(&data, &events.scrubber) {
                    Ok(Taken::Text(text)) => {
                        return Some((Ok(StreamEvent::Text(text)), (events, assembler, false)));
                    }
                    Ok(Taken::Nothing) => {}
                    Ok(Taken::Done(answer)) => {
                        return Some((Ok(StreamEvent::Done(answer)), (events, assembler, true)));
                    }
                    Err(error) => return Some((Err(error), (events, assembler, true))),
                }
            }
        },
    );
    Ok(stream.boxed())
}

/// The events of a streamed response body, read as they arrive.
struct Events {
    response: Answer,
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
                Err(e) => {
                    tracing::warn!(error = %e, "model event stream refused");
                    return Some(Err(ProviderError::Protocol(format!("stream broken: {e}"))));
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.decoder.push(&bytes),
                Ok(None) => self.ended = true,
                Err(e) => {
                    let error = ProviderError::Protocol(
                        self.scrubber.text(&format!("stream broken: {}", e.cause)),
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
pub(crate) struct StreamChunk {
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
    pub(crate) fn parse(data: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(data)
    }
}

/// Builds one assistant message out of streamed deltas.
#[derive(Debug)]
pub(crate) struct Assembler {
    /// Most bytes of text, call ids, names and arguments kept, each call counting
    /// [`CALL_OVERHEAD`] more.
    max_bytes: usize,
    /// Most tool calls in the answer.
    max_calls: usize,
    /// What is kept so far, counted as `max_bytes` counts it.
    kept_bytes: usize,
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

/// What a tool call costs on top of its text: a call with no name or arguments is not free.
const CALL_OVERHEAD: usize = 64;

impl Default for Assembler {
    fn default() -> Self {
        let limits = crate::config::LimitsConfig::default();
        Self::new(limits.max_response_bytes, limits.max_tool_calls)
    }
}

/// What one event of the stream did to the answer.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A chunk with text to forward.
    Text(String),
    /// A chunk with nothing to forward (a call delta, a finish reason, usage).
    Nothing,
    /// The end marker: the assembled answer.
    Done(ModelResponse),
}

impl Assembler {
    /// Applies one event's data: `[DONE]` finishes the answer, anything else must be a chunk.
    /// Error text leaves through `scrubber`, without the provider's secrets.
    pub(crate) fn take_event(
        &mut self,
        data: &str,
        scrubber: &Scrubber,
    ) -> Result<Taken, ProviderError> {
        if data.trim() == "[DONE]" {
            return self.finish(true).map(Taken::Done);
        }
        let chunk = StreamChunk::parse(data).map_err(|e| {
            ProviderError::Protocol(scrubber.text(&format!("bad stream chunk: {e}")))
        })?;
        Ok(self.push(chunk)?.map_or(Taken::Nothing, Taken::Text))
    }

    /// An assembler refusing answers over `max_bytes` (see [`Assembler::max_bytes`]) or with
    /// more than `max_calls` tool calls.
    pub(crate) fn new(max_bytes: usize, max_calls: usize) -> Self {
        Self {
            max_bytes,
            max_calls,
            kept_bytes: 0,
            text: String::new(),
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            saw_finish: false,
        }
    }

    /// Takes one chunk; returns its text delta, if any. An answer growing past the limits is
    /// an error.
    pub(crate) fn push(&mut self, chunk: StreamChunk) -> Result<Option<String>, ProviderError> {
        // A `null` usage is already `None` here.
        if let Some(usage) = parse_usage(chunk.usage.as_ref()) {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk.choices.and_then(|choices| choices.into_iter().next()) else {
            return Ok(None);
        };
        if let Some(Value::String(reason)) = choice.finish_reason {
            self.finish_reason = Some(reason);
            self.saw_finish = true;
        }
        let Some(delta) = choice.delta else {
            return Ok(None);
        };
        if let Some(Value::Array(calls)) = &delta.tool_calls {
            for call in calls {
                self.push_call_delta(call)?;
            }
        }
        match delta.content {
            Some(Value::String(text)) if !text.is_empty() => {
                self.keep(text.len())?;
                self.text.push_str(&text);
                Ok(Some(text))
            }
            _ => Ok(None),
        }
    }

    /// Counts `bytes` more against the answer's limit.
    fn keep(&mut self, bytes: usize) -> Result<(), ProviderError> {
        self.kept_bytes = self.kept_bytes.saturating_add(bytes);
        if self.kept_bytes > self.max_bytes {
            tracing::warn!(
                limit = self.max_bytes,
                "streamed model answer over limits.max_response_bytes"
            );
            return Err(ProviderError::Protocol(format!(
                "the answer is larger than limits.max_response_bytes ({} bytes)",
                self.max_bytes
            )));
        }
        Ok(())
    }

    fn push_call_delta(&mut self, delta: &Value) -> Result<(), ProviderError> {
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
        let found = match id {
            Some(id) => self.calls.iter().position(|c| c.id == id),
            None => self.calls.iter().rposition(|c| c.index == index),
        };
        let target = match found {
            Some(i) => i,
            None => {
                if self.calls.len() >= self.max_calls {
                    tracing::warn!(
                        limit = self.max_calls,
                        "streamed model answer over limits.max_tool_calls"
                    );
                    return Err(ProviderError::Protocol(format!(
                        "the answer calls more than limits.max_tool_calls ({}) tools at once",
                        self.max_calls
                    )));
                }
                let id = id.unwrap_or_default();
                self.keep(CALL_OVERHEAD + id.len())?;
                self.calls.push(PartialCall::new(index, id.to_owned()));
                self.calls.len() - 1
            }
        };
        let named = name.filter(|_| self.calls[target].name.is_empty());
        self.keep(named.map_or(0, str::len) + arguments.len())?;
        let call = &mut self.calls[target];
        if let Some(name) = named {
            call.name = name.to_owned();
        }
        call.arguments.push_str(&arguments);
        Ok(())
    }

    /// The assembled answer. `done` is whether the provider sent its end marker; a stream that
    /// stops with neither an end marker nor a finish reason was cut off.
    pub(crate) fn finish(&mut self, done: bool) -> Result<ModelResponse, ProviderError> {
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
        a.push(call_delta(0, Some("c1"), Some("first"), ""))
            .unwrap();
        for ch in ["{\"a\"", ":", "1}"] {
            a.push(call_delta(0, None, None, ch)).unwrap();
        }
        a.push(call_delta(0, Some("c2"), Some("second"), "{\"b\":"))
            .unwrap();
        a.push(call_delta(0, None, None, "2}")).unwrap();
        a.push(chunk(
            json!({ "choices": [{ "delta": {}, "finish_reason": "stop" }] }),
        ))
        .unwrap();
        a.push(chunk(json!({ "choices": [], "usage": { "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3 } })))
            .unwrap();
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
        let t = a
            .push(chunk(
                json!({ "choices": [{ "delta": { "content": "Hel" } }] }),
            ))
            .unwrap();
        assert_eq!(t.as_deref(), Some("Hel"));
        a.push(chunk(
            json!({ "choices": [{ "delta": { "content": "lo" } }] }),
        ))
        .unwrap();
        assert!(Assembler::default().finish(false).is_err());
        a.push(chunk(
            json!({ "choices": [{ "delta": {}, "finish_reason": "length" }] }),
        ))
        .unwrap();
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
            .map(|data| a.push(StreamChunk::parse(data).expect("parses")).unwrap())
            .collect();
        assert_eq!(texts, [None, None, Some("Hi".to_owned()), None]);
        let r = a.finish(false).expect("a finish reason was seen");
        assert_eq!(r.message.content, json!("Hi"));
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        assert_eq!(r.usage.total_tokens, 5);
        assert!(StreamChunk::parse(r#"{"choices":"all"}"#).is_err());
    }

    #[test]
    fn an_answer_over_its_size_or_call_limit_is_an_error() {
        let text = |t: &str| chunk(json!({ "choices": [{ "delta": { "content": t } }] }));
        let mut a = Assembler::new(10, 4);
        assert_eq!(a.push(text("12345")).unwrap().as_deref(), Some("12345"));
        assert_eq!(a.push(text("67890")).unwrap().as_deref(), Some("67890"));
        assert!(matches!(a.push(text("!")), Err(ProviderError::Protocol(_))));

        let mut a = Assembler::new(1 << 20, 2);
        a.push(call_delta(0, Some("c1"), Some("f"), "{}")).unwrap();
        a.push(call_delta(1, Some("c2"), Some("f"), "{}")).unwrap();
        a.push(call_delta(1, None, None, " ")).unwrap();
        assert!(
            matches!(
                a.push(call_delta(2, Some("c3"), Some("f"), "{}")),
                Err(ProviderError::Protocol(message)) if message.contains("max_tool_calls")
            ),
            "a third call is refused"
        );

        // Calls without names or arguments still count.
        let mut a = Assembler::new(CALL_OVERHEAD * 2 - 1, 100);
        a.push(call_delta(0, None, None, "")).unwrap();
        assert!(a.push(call_delta(1, None, None, "")).is_err());
    }

    #[test]
    fn events_are_taken_as_text_chunks_or_the_end_marker_and_errors_are_scrubbed() {
        let url = reqwest::Url::parse("http://user:pa55word@127.0.0.1:9/v1").unwrap();
        let scrubber = Scrubber::new(&url, Some("sk-stream-key"));
        let mut a = Assembler::default();
        let text = a.take_event(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#, &scrubber);
        assert!(matches!(text, Ok(Taken::Text(t)) if t == "Hi"));
        let usage = a.take_event(r#"{"choices":[],"usage":null}"#, &scrubber);
        assert!(matches!(usage, Ok(Taken::Nothing)));
        let Ok(Taken::Done(answer)) = a.take_event(" [DONE] ", &scrubber) else {
            panic!("the end marker finishes the answer");
        };
        assert_eq!(answer.message.content, json!("Hi"));

        let bad =
            Assembler::default().take_event(r#"{"choices":"sk-stream-key pa55word"}"#, &scrubber);
        let Err(ProviderError::Protocol(message)) = bad else {
            panic!("a chunk that does not parse is a protocol error");
        };
        assert!(message.starts_with("bad stream chunk"), "{message}");
        assert!(
            !message.contains("sk-stream-key") && !message.contains("pa55word"),
            "{message}"
        );
    }
}
