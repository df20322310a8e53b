//! Redaction of secrets in text bound for a client, a model or a log: the user-info of URLs
//! (`scheme://user:password@host`) and known secret values.

use std::borrow::Cow;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "***";

/// Secrets shorter than this are not searched for in text: replacing every `ab` in a message
/// would garble it without protecting anything.
pub const MIN_SCRUBBED_LEN: usize = 4;

/// `text` with the user-info of every URL in it replaced by [`REDACTED`]:
/// `http://user:pass@host/v1` becomes `http://***@host/v1`. A URL ends at white space or a
/// quote; everything after `://` up to the last `@` before that end is user-info (a password
/// may hold `/`, so the authority is not cut at the first one).
pub fn redact_url_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        match url.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(REDACTED);
                out.push_str(&url[userinfo_end..]);
            }
            None => out.push_str(url),
        }
        rest = tail;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One URL as written in configuration, its user-info redacted even when the scheme is
/// missing (`user:pass@host` becomes `***@host`).
pub fn redact_url(url: &str) -> Cow<'_, str> {
    if url.contains("://") {
        return redact_url_credentials(url);
    }
    match url.rfind('@') {
        Some(at) => Cow::Owned(format!("{REDACTED}{}", &url[at..])),
        None => Cow::Borrowed(url),
    }
}

/// The secrets in a URL's user-info (its user name and password, each as written and, when it
/// differs, percent-decoded), for [`scrub`]: text about a request may quote either spelling.
pub fn userinfo_secrets(username: &str, password: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    for part in [username, password]
        .into_iter()
        .filter(|part| !part.is_empty())
    {
        let decoded = percent_encoding::percent_decode_str(part).decode_utf8_lossy();
        if decoded != part {
            secrets.push(decoded.into_owned());
        }
        secrets.push(part.to_owned());
    }
    secrets
}

/// `text` with every occurrence of each secret (of at least [`MIN_SCRUBBED_LEN`] bytes)
/// replaced by [`REDACTED`], and URL user-info redacted.
pub fn scrub<'a, S: AsRef<str>>(text: &'a str, secrets: &[S]) -> Cow<'a, str> {
    let mut text = redact_url_credentials(text);
    for secret in secrets {
        let secret = secret.as_ref();
        if secret.len() >= MIN_SCRUBBED_LEN && text.contains(secret) {
            text = Cow::Owned(text.replace(secret, REDACTED));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_user_info_is_redacted_wherever_the_url_is() {
        assert_eq!(
            redact_url_credentials(
                "cannot reach `http://bob:s3cr/et@model.example:8000/v1`: refused"
            ),
            "cannot reach `http://***@model.example:8000/v1`: refused"
        );
        assert_eq!(
            redact_url_credentials("a https://u@h/x and http://p:q@h2 end"),
            "a https://***@h/x and http://***@h2 end"
        );
        assert!(matches!(
            redact_url_credentials("http://host/v1 mail me@example.com"),
            Cow::Owned(ref s) if s == "http://host/v1 mail me@example.com"
        ));
        assert!(matches!(
            redact_url_credentials("no url here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_configured_url_is_redacted_with_or_without_its_scheme() {
        assert_eq!(redact_url("bob:pw@host:1/v1"), "***@host:1/v1");
        assert_eq!(redact_url("ftp://bob:pw@host"), "ftp://***@host");
        assert_eq!(redact_url("http://host/v1"), "http://host/v1");
    }

    #[test]
    fn known_secrets_are_replaced_and_short_ones_left_alone() {
        let secrets = ["sk-live-123", "ab"];
        assert_eq!(
            scrub("bad key sk-live-123 (ab) at http://x:y@h", &secrets),
            "bad key *** (ab) at http://***@h"
        );
    }
}
