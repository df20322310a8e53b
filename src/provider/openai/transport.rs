//! How a model call's bytes reach the provider, and how its answer is read back.
//!
//! A plain-http provider with no proxy named in the environment (Ollama, vLLM or llama.cpp on
//! the same host or network) is called through a bare hyper HTTP/1.1 client. Every other
//! provider (https, or http through a proxy) goes through reqwest, which brings TLS, the
//! system's roots and the environment's proxies. The bare client skips what a model call never
//! uses and reqwest runs on every request: the redirect policy and the answer, which parse the
//! URL again, and the retry and proxy layers. That is about a seventh of a chat turn's
//! instructions. Both paths keep the same timeouts and report failures the same way.

use std::ffi::OsString;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::root_cause;

/// The variables through which reqwest takes a proxy for an http URL; while any is set, a
/// plain-http provider is called through reqwest so that the proxy is honoured.
const PROXY_VARIABLES: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];
/// How long an idle connection to the provider stays open (reqwest's default).
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Idle connections kept per provider host.
const POOL_IDLE_PER_HOST: usize = 256;
/// What a timed-out call reports as its cause (reqwest's words for the same failure).
const TIMED_OUT: &str = "operation timed out";

/// The client a provider's calls go through.
pub(super) enum Transport {
    /// A plain-http provider, reached without reqwest.
    Plain {
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        uri: hyper::Uri,
        connect_timeout: Duration,
        read_timeout: Duration,
    },
    /// An https provider, or one behind a proxy.
    Reqwest {
        client: reqwest::Client,
        url: reqwest::Url,
    },
}

/// How a call failed before an answer (or while reading one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureKind {
    /// No connection could be made.
    Connect,
    /// The provider went quiet for longer than `provider.read_timeout`.
    TimedOut,
    /// Anything else on the wire.
    Other,
}

/// A failed exchange: what kind, and its innermost cause (never the URL).
#[derive(Debug)]
pub(super) struct TransportError {
    pub kind: FailureKind,
    pub cause: String,
}

impl TransportError {
    fn timed_out() -> Self {
        Self {
            kind: FailureKind::TimedOut,
            cause: TIMED_OUT.to_owned(),
        }
    }

    fn hyper(kind: FailureKind, e: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            kind,
            cause: root_cause(e),
        }
    }
}

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> Self {
        let e = e.without_url();
        let kind = if e.is_timeout() {
            FailureKind::TimedOut
        } else if e.is_connect() {
            FailureKind::Connect
        } else {
            FailureKind::Other
        };
        Self {
            kind,
            cause: root_cause(&e),
        }
    }
}

/// Whether a provider at `url` is called without reqwest: plain http, no credentials in the
/// URL (reqwest sends them as basic authentication), and none of [`PROXY_VARIABLES`] set to a
/// value in the environment `var` reads.
pub(super) fn goes_plain(url: &reqwest::Url, var: impl Fn(&str) -> Option<OsString>) -> bool {
    url.scheme() == "http"
        && url.username().is_empty()
        && url.password().is_none()
        && !PROXY_VARIABLES
            .iter()
            .any(|name| var(name).is_some_and(|value| !value.is_empty()))
}

impl Transport {
    /// The bare client for the plain-http provider at `url`.
    pub(super) fn plain(
        url: &reqwest::Url,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Self, String> {
        let uri = url
            .as_str()
            .parse::<hyper::Uri>()
            .map_err(|e| format!("provider.base_url is not a URI hyper accepts: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .build(connector);
        Ok(Self::Plain {
            client: Box::new(client),
            uri,
            connect_timeout,
            read_timeout,
        })
    }

    /// Which path calls take, as the startup log names it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Plain { .. } => "plain http",
            Self::Reqwest { .. } => "reqwest",
        }
    }

    /// POSTs a JSON `body`; `total` bounds the whole exchange, the answer's body included.
    pub(super) async fn post(
        &self,
        body: Bytes,
        authorization: Option<&HeaderValue>,
        total: Option<Duration>,
    ) -> Result<Answer, TransportError> {
        match self {
            Self::Plain {
                client,
                uri,
                connect_timeout,
                read_timeout,
            } => {
                let started = Instant::now();
                let mut request = hyper::Request::post(uri.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .header(ACCEPT, HeaderValue::from_static("*/*"));
                if let Some(value) = authorization {
                    request = request.header(AUTHORIZATION, value.clone());
                }
                let request = request
                    .body(Full::new(body))
                    .map_err(|e| TransportError::hyper(FailureKind::Other, &e))?;
                let deadline = total.map(|total| started + total);
                // Waiting for the head covers connecting, then one quiet spell of reading.
                let head_by = started + *connect_timeout + *read_timeout;
                let head_by = deadline.map_or(head_by, |deadline| deadline.min(head_by));
                let response = tokio::time::timeout_at(head_by, client.request(request))
                    .await
                    .map_err(|_| TransportError::timed_out())?
                    .map_err(|e| {
                        let kind = if e.is_connect() {
                            FailureKind::Connect
                        } else {
                            FailureKind::Other
                        };
                        TransportError::hyper(kind, &e)
                    })?;
                Ok(Answer::Plain {
                    response,
                    read_timeout: *read_timeout,
                    deadline,
                })
            }
            Self::Reqwest { client, url } => {
                let mut request = client
                    .post(url.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body);
                if let Some(timeout) = total {
                    request = request.timeout(timeout);
                }
                if let Some(value) = authorization {
                    request = request.header(AUTHORIZATION, value.clone());
                }
                Ok(Answer::Reqwest(request.send().await?))
            }
        }
    }
}

/// A provider's answer: its head, and a body read chunk by chunk.
pub(super) enum Answer {
    Plain {
        response: hyper::Response<Incoming>,
        read_timeout: Duration,
        /// When the whole exchange must be over, if it is bounded.
        deadline: Option<Instant>,
    },
    Reqwest(reqwest::Response),
}

impl Answer {
    pub(super) fn status(&self) -> u16 {
        match self {
            Self::Plain { response, .. } => response.status().as_u16(),
            Self::Reqwest(response) => response.status().as_u16(),
        }
    }

    pub(super) fn headers(&self) -> &HeaderMap {
        match self {
            Self::Plain { response, .. } => response.headers(),
            Self::Reqwest(response) => response.headers(),
        }
    }

    /// The body's length, when the provider declared it.
    pub(super) fn content_length(&self) -> Option<u64> {
        match self {
            Self::Plain { response, .. } => response.body().size_hint().exact(),
            Self::Reqwest(response) => response.content_length(),
        }
    }

    /// The body's next bytes; `None` once it has ended. A provider quiet for longer than
    /// `provider.read_timeout`, or an exchange past its bound, fails as timed out.
    pub(super) async fn chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        match self {
            Self::Plain {
                response,
                read_timeout,
                deadline,
            } => loop {
                let quiet_until = Instant::now() + *read_timeout;
                let until = deadline.map_or(quiet_until, |deadline| deadline.min(quiet_until));
                let frame = tokio::time::timeout_at(until, response.body_mut().frame())
                    .await
                    .map_err(|_| TransportError::timed_out())?;
                match frame {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(TransportError::hyper(FailureKind::Other, &e)),
                    // Trailers carry nothing agentd reads.
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if data.is_empty() => {}
                        Ok(data) => return Ok(Some(data)),
                        Err(_) => {}
                    },
                }
            },
            Self::Reqwest(response) => Ok(response.chunk().await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_only_for_http_without_a_proxy_in_the_environment() {
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        let local = url("HTTP://127.0.0.1:11434/v1/chat/completions");
        let none = |_: &str| None;
        assert!(goes_plain(&local, none));
        assert!(!goes_plain(&url("https://api.openai.com/v1"), none));
        assert!(!goes_plain(
            &url("http://user:secret@127.0.0.1:4000/v1"),
            none
        ));
        for name in PROXY_VARIABLES {
            let set = |asked: &str| (asked == name).then(|| OsString::from("http://proxy:3128"));
            assert!(!goes_plain(&local, set), "{name}");
            let empty = |asked: &str| (asked == name).then(OsString::new);
            assert!(goes_plain(&local, empty), "{name}");
        }
        // `https_proxy` concerns https URLs only, which never go plain.
        let https_proxy =
            |asked: &str| (asked == "https_proxy").then(|| OsString::from("http://proxy:3128"));
        assert!(goes_plain(&local, https_proxy));
    }
}
