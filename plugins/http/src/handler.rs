//! One webhook call: send the arguments, read at most the capped number of bytes back, and turn
//! the answer (or the failure) into a tool result.

use std::error::Error as _;
use std::time::Duration;

use agentd_sdk::{CallContext, HandlerError, ToolCall, ToolHandler, ToolOutput};
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use serde_json::{Value, json};

/// How much of an error response's body is quoted back.
const ERROR_BODY_CHARS: usize = 2000;

pub(crate) struct HttpHandler {
    pub client: reqwest::Client,
    pub url: Url,
    pub method: Method,
    pub headers: HeaderMap,
    pub timeout: Duration,
    pub max_response_bytes: u64,
    /// The bearer token and the URL's user-info: never quoted back to the model, even when
    /// the endpoint echoes them.
    pub secrets: Vec<String>,
}

#[async_trait]
impl ToolHandler for HttpHandler {
    async fn call(&self, call: ToolCall, ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        let limit = self.timeout.min(ctx.remaining());
        tokio::select! {
            result = tokio::time::timeout(limit, self.exchange(&call.arguments, &ctx)) => {
                result.unwrap_or_else(|_| Err(self.timed_out(limit)))
            }
            () = ctx.cancel.cancelled() => Err(HandlerError::new(
                "cancelled",
                "the request was abandoned before an answer arrived",
            )),
        }
    }
}

impl HttpHandler {
    async fn exchange(
        &self,
        arguments: &Value,
        ctx: &CallContext,
    ) -> Result<ToolOutput, HandlerError> {
        let mut response = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header("Idempotency-Key", &ctx.idempotency_key)
            .json(arguments)
            .send()
            .await
            .map_err(|e| self.request_error(e))?;
        let status = response.status();
        let (body, complete) = self.read_capped(&mut response).await?;
        if status.is_success() {
            if !complete {
                return Err(HandlerError::new(
                    "response_too_large",
                    format!(
                        "the endpoint's response is larger than {} bytes; it was not read",
                        self.max_response_bytes
                    ),
                ));
            }
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            return Ok(ToolOutput::new(
                json!({ "status": status.as_u16(), "body": body }),
            ));
        }
        let text: String = agentd_sdk::scrub(&String::from_utf8_lossy(&body), &self.secrets)
            .chars()
            .take(ERROR_BODY_CHARS)
            .collect();
        let mut message = format!("the endpoint answered {status}");
        if status.is_redirection() {
            message.push_str(" (redirects are not followed)");
        }
        let error = HandlerError::new("http_status", message)
            .with_details(json!({ "status": status.as_u16(), "body": text }));
        if status.as_u16() == 429 || status.is_server_error() {
            Err(error.retryable())
        } else {
            Err(error)
        }
    }

    /// Reads the body up to the cap. Returns the bytes and whether the whole body fit.
    async fn read_capped(
        &self,
        response: &mut reqwest::Response,
    ) -> Result<(Vec<u8>, bool), HandlerError> {
        let cap = usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX);
        if response
            .content_length()
            .is_some_and(|length| length > self.max_response_bytes)
        {
            return Ok((Vec::new(), false));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.request_error(e))? {
            if body.len() + chunk.len() > cap {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..room]);
                return Ok((body, false));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, true))
    }

    fn request_error(&self, error: reqwest::Error) -> HandlerError {
        let error = error.without_url();
        let detail = agentd_sdk::scrub(&describe(&error), &self.secrets).into_owned();
        let host = self.url.host_str().unwrap_or_default();
        if error.is_timeout() {
            self.timed_out(self.timeout)
        } else if error.is_connect() {
            HandlerError::new(
                "unreachable",
                format!("could not connect to {host}: {detail}"),
            )
            .retryable()
        } else {
            HandlerError::new(
                "request_failed",
                format!("the request to {host} failed: {detail}"),
            )
            .retryable()
        }
    }

    fn timed_out(&self, limit: Duration) -> HandlerError {
        HandlerError::new(
            "timeout",
            format!(
                "no answer from {} within {}ms; the request may or may not have been processed",
                self.url.host_str().unwrap_or_default(),
                limit.as_millis()
            ),
        )
        .retryable()
    }
}

/// An error and its causes on one line.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}
