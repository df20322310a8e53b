//! `http`: a webhook handler. POSTs a call's validated arguments as JSON to a configured URL
//! whose host is on an allowlist, with a timeout and a response size cap.
//!
//! This file owns the options (`[tool.options]`) and building the handler; the call itself is
//! in `handler.rs`.

mod handler;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentd_sdk::{
    HandlerFactory, OptionsError, PositiveDuration, SecretRef, ToolHandler, duration_schema,
    resolve_secret, secret_ref_schema,
};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use handler::HttpHandler;

/// How long a call may take when the options do not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read when the options do not say (1 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// Headers the handler sets itself or that would break the request.
const RESERVED_HEADERS: [&str; 5] = [
    "idempotency-key",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

pub struct HttpFactory;

/// `[tool.options]` of an `http` tool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpOptions {
    url: String,
    method: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    bearer_token: Option<SecretRef>,
    timeout: Option<String>,
    max_response_bytes: Option<u64>,
}

impl HandlerFactory for HttpFactory {
    fn name(&self) -> &'static str {
        "http"
    }

    fn options_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["url"],
            "additionalProperties": false,
            "properties": {
                "url": { "type": "string", "description": "http(s) URL the arguments are sent to" },
                "method": { "enum": ["POST", "PUT"], "default": "POST" },
                "allowed_hosts": { "type": "array", "items": { "type": "string" }, "minItems": 1, "description": "the URL's host must be one of these" },
                "headers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "static request headers" },
                "bearer_token": secret_ref_schema("sent as Authorization: Bearer; a secret reference"),
                "timeout": duration_schema("the whole request", DEFAULT_TIMEOUT, false),
                "max_response_bytes": { "type": "integer", "minimum": 1, "default": DEFAULT_MAX_RESPONSE_BYTES },
            },
        })
    }

    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        let options: HttpOptions = serde_json::from_value(options.clone())
            .map_err(|e| OptionsError::one(e.to_string()))?;
        let mut problems = Vec::new();
        let url = check_url(&options, &mut problems);
        let method = match options.method.as_deref().map(str::to_ascii_uppercase) {
            None => Some(Method::POST),
            Some(m) if m == "POST" => Some(Method::POST),
            Some(m) if m == "PUT" => Some(Method::PUT),
            Some(other) => {
                problems.push(format!(
                    "method: `{other}` is not supported (use POST or PUT)"
                ));
                None
            }
        };
        let mut secrets = Vec::new();
        let headers = build_headers(&options, &mut problems, &mut secrets);
        let timeout = match options.timeout.as_deref().map(PositiveDuration::parse) {
            None => DEFAULT_TIMEOUT,
            Some(Ok(timeout)) => timeout.get(),
            Some(Err(message)) => {
                problems.push(format!("timeout: {message}"));
                DEFAULT_TIMEOUT
            }
        };
        let max_response_bytes = options
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        if max_response_bytes == 0 {
            problems.push("max_response_bytes: must be at least 1".to_owned());
        }
        let https = url.as_ref().is_some_and(|url| url.scheme() == "https");
        let client = build_client(timeout, https)
            .map_err(|e| problems.push(e))
            .ok();
        match (url, method, client) {
            (Some(url), Some(method), Some(client)) if problems.is_empty() => {
                secrets.extend(agentd_sdk::userinfo_secrets(
                    url.username(),
                    url.password().unwrap_or_default(),
                ));
                Ok(Arc::new(HttpHandler {
                    secrets,
                    client,
                    url,
                    method,
                    headers,
                    timeout,
                    max_response_bytes,
                }))
            }
            _ => Err(OptionsError(problems)),
        }
    }
}

/// The URL must be http(s) with a host, and that host must be allowed.
fn check_url(options: &HttpOptions, problems: &mut Vec<String>) -> Option<Url> {
    let url = match Url::parse(&options.url) {
        Ok(url) => url,
        Err(error) => {
            problems.push(format!(
                "url: `{}` is not a valid URL: {error}",
                agentd_sdk::redact_url(&options.url)
            ));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        problems.push(format!(
            "url: scheme `{}` is not supported (use http or https)",
            url.scheme()
        ));
        return None;
    }
    let Some(host) = url.host_str().map(normalize_host) else {
        problems.push("url: has no host".to_owned());
        return None;
    };
    if let Some(allowed) = &options.allowed_hosts {
        if allowed.is_empty() {
            problems.push("allowed_hosts: must name at least one host".to_owned());
            return None;
        }
        if !allowed.iter().any(|a| normalize_host(a) == host) {
            problems.push(format!(
                "url: host `{host}` is not in allowed_hosts ({})",
                allowed.join(", ")
            ));
            return None;
        }
    }
    Some(url)
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Static headers plus `Authorization: Bearer` from the secret, which is marked sensitive and
/// added to `secrets`.
fn build_headers(
    options: &HttpOptions,
    problems: &mut Vec<String>,
    secrets: &mut Vec<String>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &options.headers {
        let lowered = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lowered.as_str()) {
            problems.push(format!("headers: `{name}` is set by the handler itself"));
            continue;
        }
        if lowered == "authorization" && options.bearer_token.is_some() {
            problems.push("headers: `Authorization` conflicts with bearer_token".to_owned());
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            (Err(_), _) => problems.push(format!("headers: `{name}` is not a valid header name")),
            (_, Err(_)) => problems.push(format!("headers: the value of `{name}` is not valid")),
        }
    }
    if let Some(reference) = &options.bearer_token {
        match resolve_secret(reference) {
            Ok(token) => match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                    secrets.push(token);
                }
                Err(_) => problems.push(
                    "bearer_token: the secret contains characters not allowed in a header"
                        .to_owned(),
                ),
            },
            Err(error) => problems.push(format!("bearer_token: {error}")),
        }
    }
    headers
}

/// A client that never follows redirects (a redirect could leave the allowed hosts) and
/// connects directly (the checked host is the one connected to). The system's CA roots are
/// loaded only for an https URL, so a plain-http hook works on a host without a CA bundle.
fn build_client(timeout: Duration, https: bool) -> Result<reqwest::Client, String> {
    ensure_crypto_provider();
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout);
    let builder = if https {
        builder
    } else {
        builder.tls_certs_only(Vec::new())
    };
    builder
        .build()
        .map_err(|e| format!("cannot create the HTTP client: {}", handler::describe(&e)))
}

/// reqwest is built without a default TLS crypto provider; the daemon installs one at start.
/// When none is installed yet (a test, a tool like `agentd validate`), install ring's.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
