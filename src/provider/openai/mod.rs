//! The OpenAI-compatible chat-completions provider (OpenAI, Ollama, vLLM, llama.cpp, LiteLLM):
//! request building, retries, and reading answers from providers that bend the format, each
//! within its size limit (`limits.max_prompt_bytes`, `max_response_bytes`, `max_event_bytes`).

pub(crate) mod sse;
pub(crate) mod stream;
mod transport;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{LimitsConfig, ProviderConfig};
use crate::provider::retry::{RetryPolicy, is_retryable_status, parse_retry_after};
use crate::provider::secrets::{Scrubber, shortened, shown_url};
use crate::provider::{
    ModelProvider, ModelRequest, ModelResponse, ProviderError, StreamEvent, Usage,
};
use crate::session::{ChatMessage, FunctionCall, Role, ToolCallRequest};
use transport::{Answer, FailureKind, Transport, TransportError};

/// What a client is told when the provider refuses agentd's own credentials (401, 403, 407):
/// that answer concerns the operator's key, so its text goes to the daemon log only.
const CREDENTIALS_REFUSED: &str =
    "the provider refused agentd's credentials (provider.api_key); the daemon log has its answer";
/// Most of an error response's body read to find its message; the rest is not read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How large what goes to and comes from the model may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WireLimits {
    /// A serialized request.
    pub request: usize,
    /// A non-streamed body, or a streamed answer's text and tool calls.
    pub response: usize,
    /// One line, and one event's data, of an event stream.
    pub event: usize,
    /// Tool calls in one answer.
    pub calls: usize,
}

impl From<&LimitsConfig> for WireLimits {
    fn from(limits: &LimitsConfig) -> Self {
        Self {
            request: limits.max_prompt_bytes,
            response: limits.max_response_bytes,
            event: limits.max_event_bytes,
            calls: limits.max_tool_calls,
        }
    }
}

/// A model call as sent: the request's fields plus the streaming switches.
#[derive(Serialize)]
struct WireRequest<'a> {
    #[serde(flatten)]
    request: &'a ModelRequest<'a>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

pub(crate) struct OpenAiProvider {
    transport: Transport,
    /// `Bearer` and `provider.api_key`, marked sensitive so that no log shows it.
    authorization: Option<HeaderValue>,
    pub(super) policy: RetryPolicy,
    pub(super) read_timeout: Duration,
    /// Cleans error text of the key and the URL's user-info.
    pub(super) scrubber: Arc<Scrubber>,
    /// The URL as logs show it: no user-info, no query.
    pub(super) shown_url: String,
    pub(super) limits: WireLimits,
}

impl OpenAiProvider {
    /// Builds the client for `config`; the error names the setting at fault.
    pub(crate) fn new(config: &ProviderConfig, api_key: Option<String>) -> Result<Self, String> {
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&url).map_err(|e| {
            format!(
                "provider.base_url gives an invalid URL {}: {e}",
                agentd_sdk::redact_url(&url)
            )
        })?;
        let extra_roots = match &config.ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let transport = if transport::goes_plain(&url, |name| std::env::var_os(name)) {
            Transport::plain(&url, config.connect_timeout, config.read_timeout)?
        } else {
            Transport::Reqwest {
                client: reqwest_client(config, extra_roots)?,
                url: url.clone(),
            }
        };
        let authorization = match &api_key {
            Some(key) => {
                let mut value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
                    "provider.api_key holds characters an HTTP header cannot carry".to_owned()
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let scrubber = Arc::new(Scrubber::new(&url, api_key.as_deref()));
        let shown_url = shown_url(&url);
        tracing::debug!(url = %shown_url, client = transport.name(), "model provider");
        Ok(Self {
            shown_url,
            scrubber,
            transport,
            authorization,
            policy: RetryPolicy {
                max_attempts: config.max_attempts,
                base: config.backoff_base,
                max: config.backoff_max,
            },
            read_timeout: config.read_timeout,
            limits: WireLimits::from(&LimitsConfig::default()),
        })
    }

    /// Applies `[limits]` to what is sent to and read from the model.
    pub(crate) fn with_limits(mut self, limits: &LimitsConfig) -> Self {
        self.limits = WireLimits::from(limits);
        self
    }

    /// Encodes a model call for the wire, with its `stream` flag; a request over the size
    /// limit is refused before anything is sent.
    pub(super) fn encode(
        &self,
        request: &ModelRequest<'_>,
        stream: bool,
    ) -> Result<Vec<u8>, ProviderError> {
        let wire = WireRequest {
            request,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        };
        let mut body = Vec::with_capacity(request.size_hint.min(self.limits.request) + 1);
        body.extend_from_slice(b"{\"messages\":");
        let encoded = crate::session::write_messages(&request.messages, &mut body).and_then(|()| {
            let fields = body.len();
            serde_json::to_writer(&mut body, &wire)?;
            // The other fields, `stream` at least, as an object: its opening brace becomes the
            // comma after the messages.
            body[fields] = b',';
            Ok(())
        });
        encoded.map_err(|e| ProviderError::Protocol(format!("cannot encode request: {e}")))?;
        if body.len() > self.limits.request {
            return Err(ProviderError::RequestTooLarge {
                bytes: body.len(),
                limit: self.limits.request,
            });
        }
        Ok(body)
    }

    /// Sends the encoded request, retrying retryable failures; returns the successful
    /// response.
    async fn send(
        &self,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Answer, ProviderError> {
        let body = bytes::Bytes::from(body);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .transport
                .post(body.clone(), self.authorization.as_ref(), timeout)
                .await;
            let (error, retry_after) = match sent {
                Ok(response) if (200..300).contains(&response.status()) => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let text = read_capped(response, MAX_ERROR_BODY)
                        .await
                        .map(|body| String::from_utf8_lossy(&body.bytes).into_owned())
                        .unwrap_or_default();
                    let message = error_message(&self.scrubber.clean(&text));
                    if matches!(status, 401 | 403 | 407) {
                        tracing::warn!(url = %self.shown_url, status, answer = %message, "model provider refused agentd's credentials");
                        return Err(ProviderError::Status {
                            status,
                            message: CREDENTIALS_REFUSED.to_owned(),
                        });
                    }
                    let error = ProviderError::Status { status, message };
                    if !is_retryable_status(status) {
                        return Err(self.failed(error));
                    }
                    (error, retry_after)
                }
                Err(e) => (self.transport_error(e), None),
            };
            if attempt >= self.policy.max_attempts {
                return Err(self.failed(error));
            }
            let wait = self.policy.delay(attempt, retry_after);
            tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, url = %self.shown_url, %error, "model call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// A failed exchange as a client may see it: the cause without the URL or a secret.
    fn transport_error(&self, e: TransportError) -> ProviderError {
        match e.kind {
            FailureKind::TimedOut => ProviderError::Timeout(self.read_timeout),
            FailureKind::Connect => ProviderError::Connect(self.scrubber.text(&e.cause)),
            FailureKind::Other => ProviderError::Protocol(self.scrubber.text(&e.cause)),
        }
    }

    /// Logs a model call's final failure, with the URL the operator needs to find the
    /// provider (never its user-info), and hands the error on.
    pub(super) fn failed(&self, error: ProviderError) -> ProviderError {
        tracing::warn!(url = %self.shown_url, %error, "model call failed");
        error
    }
}

#[async_trait]
impl ModelProvider for OpenAiProvider {
    fn name(&self) -> &str {
        "openai"
    }

    async fn complete(&self, request: &ModelRequest<'_>) -> Result<ModelResponse, ProviderError> {
        let body = self.encode(request, false)?;
        let response = self.send(body, Some(self.read_timeout)).await?;
        let limit = self.limits.response;
        let body = read_capped(response, limit)
            .await
            .map_err(|e| self.failed(self.transport_error(e)))?;
        if body.cut {
            tracing::warn!(limit, "model answer over limits.max_response_bytes");
            return Err(ProviderError::Protocol(format!(
                "the answer is larger than limits.max_response_bytes ({limit} bytes)"
            )));
        }
        parse_completion(&body.bytes, self.limits.calls)
            .map_err(|e| self.failed(self.scrubber.error(e)))
    }

    async fn stream(
        &self,
        request: &ModelRequest<'_>,
    ) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
        self::stream::open(self, request).await
    }
}

/// A response body read up to a size.
struct CappedBody {
    bytes: Vec<u8>,
    /// More than the cap was on offer; `bytes` holds the cap's worth.
    cut: bool,
}

/// Reads at most `cap` bytes of `response`'s body (the rest is never read), so a model cannot
/// make agentd buffer without end. A body whose declared length is over `cap` is not read at
/// all.
async fn read_capped(mut response: Answer, cap: usize) -> Result<CappedBody, TransportError> {
    let declared = response.content_length().unwrap_or(0);
    let declared = usize::try_from(declared).unwrap_or(usize::MAX);
    if declared > cap {
        return Ok(CappedBody {
            bytes: Vec::new(),
            cut: true,
        });
    }
    let mut bytes = Vec::with_capacity(declared);
    while let Some(chunk) = response.chunk().await? {
        let room = cap - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody { bytes, cut: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(CappedBody { bytes, cut: false })
}

/// The parts of a chat completion agentd reads. Everything else (ids, logprobs, model name,
/// fingerprints) is skipped while parsing instead of being built into a `Value` tree.
#[derive(Deserialize)]
struct WireCompletion {
    #[serde(default)]
    choices: Option<Vec<WireChoice>>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Value>,
}

/// Reads a non-streaming chat completion body; more than `max_calls` tool calls is an error.
pub(crate) fn parse_completion(
    body: &[u8],
    max_calls: usize,
) -> Result<ModelResponse, ProviderError> {
    let completion: WireCompletion = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Protocol(format!("response is not a chat completion: {e}")))?;
    let choice = completion
        .choices
        .and_then(|choices| choices.into_iter().next())
        .ok_or_else(|| ProviderError::Protocol("response has no choices".into()))?;
    let message = choice
        .message
        .ok_or_else(|| ProviderError::Protocol("choice has no message".into()))?;
    let content = match message.content {
        Some(Value::String(s)) => Value::String(s),
        _ => Value::Null,
    };
    let tool_calls = match message.tool_calls {
        Some(Value::Array(calls)) if calls.len() > max_calls => {
            tracing::warn!(
                calls = calls.len(),
                limit = max_calls,
                "model answer over limits.max_tool_calls"
            );
            return Err(ProviderError::Protocol(format!(
                "the answer calls {} tools at once, over limits.max_tool_calls ({max_calls})",
                calls.len()
            )));
        }
        Some(Value::Array(calls)) if !calls.is_empty() => Some(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| parse_tool_call(i, c))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    let usage = completion
        .usage
        .and_then(|u| serde_json::from_value(u).ok())
        .unwrap_or_default();
    Ok(ModelResponse {
        message: ChatMessage {
            role: Role::Assistant,
            content,
            name: None,
            tool_call_id: None,
            tool_calls,
        },
        finish_reason: match choice.finish_reason {
            Some(Value::String(reason)) => Some(reason),
            _ => None,
        },
        usage,
    })
}

fn parse_tool_call(index: usize, call: &Value) -> Result<ToolCallRequest, ProviderError> {
    let function = call
        .get("function")
        .ok_or_else(|| ProviderError::Protocol(format!("tool call {index} has no function")))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Protocol(format!("tool call {index} has no name")))?;
    Ok(ToolCallRequest {
        id: call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(generated_call_id, str::to_owned),
        kind: "function".into(),
        function: FunctionCall {
            name: name.to_owned(),
            arguments: arguments_text(function.get("arguments")),
        },
    })
}

/// Some providers send arguments as a JSON object instead of a JSON text.
pub(crate) fn arguments_text(arguments: Option<&Value>) -> String {
    match arguments {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// An id for a call the provider sent without one (some local servers do).
pub(crate) fn generated_call_id() -> String {
    format!("call_{}", crate::ids::new_v7().simple())
}

/// The `error.message` of an OpenAI-style error body, or the body itself, shortened.
fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Map<String, Value>>(body)
        .ok()
        .and_then(|m| match m.get("error") {
            Some(Value::Object(e)) => e.get("message").and_then(Value::as_str).map(str::to_owned),
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    if text.is_empty() {
        "(empty body)".into()
    } else {
        shortened(text)
    }
}

pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Usage from a value, if present.
pub(crate) fn parse_usage(value: Option<&Value>) -> Option<Usage> {
    value.and_then(|u| Usage::deserialize(u).ok())
}

/// The reqwest client for an https provider, or one behind a proxy.
fn reqwest_client(
    config: &ProviderConfig,
    extra_roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, String> {
    // HTTP/1.1 only, one connection per call in flight, like the official OpenAI SDKs. Over
    // HTTP/2 every call to a host shares one connection, and calls beyond the server's
    // SETTINGS_MAX_CONCURRENT_STREAMS wait inside agentd for a long stream to end.
    let builder = reqwest::Client::builder()
        .http1_only()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true);
    // The system's roots are loaded only for an https model, so a host without a CA bundle
    // (a minimal container next to Ollama) still runs agentd against a plain-http one.
    let https = config.base_url.starts_with("https://");
    let builder = if https {
        builder.tls_certs_merge(extra_roots)
    } else {
        builder.tls_certs_only(extra_roots)
    };
    builder.build().map_err(|e| {
        let hint = if https {
            " (an https model needs the system's CA certificates or provider.ca_file)"
        } else {
            ""
        };
        format!(
            "cannot build the model's HTTP client: {}{hint}",
            agentd_sdk::redact_url_credentials(&root_cause(&e))
        )
    })
}

/// The certificates of `provider.ca_file` (PEM), trusted on top of the system's roots.
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let at = || format!("provider.ca_file {}", path.display());
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", at()))?;
    let certs =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("{}: {e}", at()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in the file", at()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::secrets::MAX_ERROR_TEXT;
    use serde_json::json;

    #[test]
    fn reads_tool_calls_with_object_arguments_and_missing_ids() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "logprobs": {"content": []}, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"id": "call_2", "function": {"name": "b", "arguments": "{\"y\":2}"}}
            ]}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        let r = parse_completion(body.to_string().as_bytes(), 128).unwrap();
        let calls = r.message.calls();
        assert_eq!(calls.len(), 2);
        assert!(calls[0].id.starts_with("call_"));
        assert_eq!(calls[0].function.arguments, "{\"x\":1}");
        assert_eq!(calls[1].id, "call_2");
        assert_eq!(r.usage.total_tokens, 7);
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        for bad in [
            r#"{"choices": []}"#,
            r#"{"choices": null}"#,
            r#"{"choices": [{"finish_reason": "stop"}]}"#,
            r#"{"choices": ["#,
            "not json",
        ] {
            assert!(
                matches!(
                    parse_completion(bad.as_bytes(), 128),
                    Err(ProviderError::Protocol(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn text_answers_keep_their_content_and_lenient_fields_stay_lenient() {
        let body = r#"{"choices": [{"message": {"content": "hi"}, "finish_reason": 7}],
                       "usage": "not an object"}"#;
        let r = parse_completion(body.as_bytes(), 128).unwrap();
        assert_eq!(r.message.content, Value::String("hi".into()));
        assert_eq!(r.message.tool_calls, None);
        assert_eq!(r.finish_reason, None);
        assert_eq!(r.usage, Usage::default());
    }

    #[test]
    fn a_request_is_encoded_with_its_messages_first_and_every_field() {
        use crate::session::{Entry, EntrySource, History, MessageJson, PromptMessage};
        let entry = |role, text: &str| {
            Arc::new(Entry {
                id: text.into(),
                session_id: "s".into(),
                source: EntrySource::ApiRequest,
                message: ChatMessage::text(role, text),
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                json: MessageJson::default(),
            })
        };
        let history =
            History::from_entries([entry(Role::User, "hi"), entry(Role::Assistant, "yo")]);
        let added = entry(Role::User, "again");
        let system = ChatMessage::text(Role::System, "be brief");
        let tools = [json!({"type": "function", "function": {"name": "t"}})];
        let choice = json!("auto");
        let settings = json!({"temperature": 0.5}).as_object().unwrap().clone();
        let mut request = ModelRequest {
            model: "m",
            messages: vec![
                PromptMessage::Built(&system),
                PromptMessage::Stored {
                    history: &history,
                    index: 0,
                },
                PromptMessage::Stored {
                    history: &history,
                    index: 1,
                },
                PromptMessage::Entry(&added),
            ],
            tools: &tools,
            tool_choice: Some(&choice),
            settings: &settings,
            size_hint: 0,
        };
        let provider = OpenAiProvider::new(&ProviderConfig::default(), None).unwrap();
        let body: Value =
            serde_json::from_slice(&provider.encode(&request, true).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                    {"role": "user", "content": "again"},
                ],
                "model": "m", "tools": tools, "tool_choice": "auto", "temperature": 0.5,
                "stream": true, "stream_options": {"include_usage": true},
            })
        );
        request.messages.truncate(1);
        request.tools = &[];
        request.tool_choice = None;
        let body = provider.encode(&request, false).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"messages":[{"role":"system","content":"be brief"}],"model":"m","temperature":0.5,"stream":false}"#
        );
    }

    #[test]
    fn error_text_prefers_error_message() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(error_message("upstream down"), "upstream down");
        assert_eq!(error_message(""), "(empty body)");
        assert!(error_message(&"x".repeat(2000)).chars().count() <= MAX_ERROR_TEXT + 1);
    }
}
