//! What of the provider's settings is secret (its API key, the user and password in
//! `provider.base_url`) and how text about a model call is cleaned of it before a client or a
//! log sees it. Only failures pay for this: answers that succeed are never scanned.

use secrecy::{ExposeSecret, SecretString};

use super::ProviderError;

/// The provider's secrets, searched for in error text.
pub(crate) struct Scrubber {
    secrets: Vec<SecretString>,
}

impl Scrubber {
    /// The user-info of `url` (as written and percent-decoded) and the API key.
    pub(crate) fn new(url: &reqwest::Url, api_key: Option<&str>) -> Self {
        let mut secrets: Vec<SecretString> =
            agentd_sdk::userinfo_secrets(url.username(), url.password().unwrap_or_default())
                .into_iter()
                .map(SecretString::from)
                .collect();
        if let Some(key) = api_key.filter(|key| !key.is_empty()) {
            secrets.push(SecretString::from(key.to_owned()));
        }
        Self { secrets }
    }

    /// `text` without URL user-info and without any of the secrets.
    pub(crate) fn clean(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(|s| s.expose_secret()).collect();
        agentd_sdk::scrub(text, &secrets).into_owned()
    }

    /// `text` cleaned, then cut to [`MAX_ERROR_TEXT`] bytes: what a client or a log may see of
    /// a message that can quote the provider's answer (a parse error quotes the value it
    /// choked on). Cutting after cleaning keeps a secret across the cut from half-surviving.
    pub(crate) fn text(&self, text: &str) -> String {
        shortened(self.clean(text))
    }

    /// The same error with its text cleaned.
    pub(crate) fn error(&self, error: ProviderError) -> ProviderError {
        match error {
            ProviderError::Connect(text) => ProviderError::Connect(self.text(&text)),
            ProviderError::Status { status, message } => ProviderError::Status {
                status,
                message: self.text(&message),
            },
            ProviderError::Protocol(text) => ProviderError::Protocol(self.text(&text)),
            other @ (ProviderError::Timeout(_) | ProviderError::RequestTooLarge { .. }) => other,
        }
    }
}

/// Longest error text quoted back to a client or into a log.
pub(crate) const MAX_ERROR_TEXT: usize = 500;

/// `text` cut to [`MAX_ERROR_TEXT`] bytes at a character boundary, marked with `…` when cut.
pub(crate) fn shortened(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `scheme://host:port/path` of `url`, for logs: no user-info, query or fragment.
pub(crate) fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have user-info, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_key_are_scrubbed_in_both_spellings() {
        let url =
            reqwest::Url::parse("http://alice:p%40ss%2Fword@model.internal:8000/v1?k=q").unwrap();
        let scrubber = Scrubber::new(&url, Some("sk-provider-key"));
        let text = scrubber.text(
            "refused p@ss/word and p%40ss%2Fword for alice with sk-provider-key at \
             http://alice:p%40ss%2Fword@model.internal:8000/v1",
        );
        assert_eq!(
            text,
            "refused *** and *** for *** with *** at http://***@model.internal:8000/v1"
        );
        assert_eq!(shown_url(&url), "http://model.internal:8000/v1");
    }
}
