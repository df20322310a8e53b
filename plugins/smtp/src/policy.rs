//! Recipient policy: which addresses a tool may write to, and how many at once. It covers every
//! address the model controls: the envelope's (to, cc, bcc) and the replies' (reply_to), which
//! would otherwise send the answers to a message outside the allowed domains.
//!
//! Domains match exactly and case-insensitively: `example.com` allows `a@example.com` and
//! `a@EXAMPLE.com` but not `a@mail.example.com` (list each subdomain that is allowed).
//! Addresses match exactly, case-insensitively. With neither list configured every address is
//! allowed; with either, a recipient must match one entry of one of them.

use agentd_sdk::HandlerError;
use lettre::message::Mailbox;
use serde_json::json;

/// Allowed recipients of one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecipientPolicy {
    /// Lower-case domains.
    allowed_domains: Vec<String>,
    /// Lower-case addresses.
    allowed_addresses: Vec<String>,
    max_recipients: usize,
}

impl RecipientPolicy {
    pub(crate) fn new(
        allowed_domains: Vec<String>,
        allowed_addresses: Vec<String>,
        max_recipients: usize,
    ) -> Self {
        Self {
            allowed_domains,
            allowed_addresses,
            max_recipients,
        }
    }

    fn is_restricted(&self) -> bool {
        !self.allowed_domains.is_empty() || !self.allowed_addresses.is_empty()
    }

    fn allows(&self, recipient: &Mailbox) -> bool {
        if !self.is_restricted() {
            return true;
        }
        let address = recipient.email.to_string().to_ascii_lowercase();
        let domain = recipient.email.domain().to_ascii_lowercase();
        self.allowed_addresses.contains(&address) || self.allowed_domains.contains(&domain)
    }

    /// Refuses more than `max_recipients` addresses (to, cc, bcc and reply_to together).
    pub(crate) fn check_count(&self, addresses: usize) -> Result<(), HandlerError> {
        if addresses <= self.max_recipients {
            return Ok(());
        }
        Err(HandlerError::new(
            "too_many_recipients",
            format!(
                "{addresses} addresses (to, cc, bcc and reply_to together) but this tool allows \
                 at most {}; send fewer addresses per message",
                self.max_recipients
            ),
        )
        .with_details(json!({
            "recipients": addresses,
            "max_recipients": self.max_recipients,
        })))
    }

    /// Checks every address with the field it came from (counted before they were parsed, by
    /// [`RecipientPolicy::check_count`]); the error names the first one refused.
    pub(crate) fn check<'a>(
        &self,
        mut addresses: impl Iterator<Item = (&'a str, &'a Mailbox)>,
    ) -> Result<(), HandlerError> {
        let Some((field, refused)) = addresses.find(|(_, m)| !self.allows(m)) else {
            return Ok(());
        };
        Err(HandlerError::new(
            "denied",
            format!(
                "`{field}` address {} is not allowed by this tool's policy ({}); nothing was sent",
                refused.email,
                self.describe()
            ),
        )
        .with_details(json!({
            "field": field,
            "recipient": refused.email.to_string(),
            "allowed_domains": self.allowed_domains,
            "allowed_addresses": self.allowed_addresses,
        })))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.allowed_domains.is_empty() {
            parts.push(format!(
                "allowed domains: {}",
                self.allowed_domains.join(", ")
            ));
        }
        if !self.allowed_addresses.is_empty() {
            parts.push(format!(
                "allowed addresses: {}",
                self.allowed_addresses.join(", ")
            ));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailboxes(list: &[&str]) -> Vec<Mailbox> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn check(policy: &RecipientPolicy, list: &[&str]) -> Result<(), HandlerError> {
        let all = mailboxes(list);
        policy.check_count(all.len())?;
        policy.check(all.iter().map(|m| ("to", m)))
    }

    #[test]
    fn unrestricted_policy_only_counts() {
        let policy = RecipientPolicy::new(vec![], vec![], 2);
        assert!(check(&policy, &["a@x.org", "b@y.net"]).is_ok());
        let err = check(&policy, &["a@x.org", "b@y.net", "c@z.com"]).unwrap_err();
        assert_eq!(err.kind, "too_many_recipients");
        assert!(err.message.contains("at most 2"), "{}", err.message);
    }

    #[test]
    fn domains_match_exactly_and_ignore_case() {
        let policy = RecipientPolicy::new(vec!["example.com".into()], vec![], 10);
        assert!(check(&policy, &["Ann <ann@EXAMPLE.com>"]).is_ok());
        let err = check(&policy, &["ann@example.com", "bob@mail.example.com"]).unwrap_err();
        assert_eq!(err.kind, "denied");
        assert!(
            err.message.contains("bob@mail.example.com"),
            "{}",
            err.message
        );
        assert!(err.message.contains("example.com"), "{}", err.message);
        assert_eq!(
            err.details.unwrap()["recipient"],
            json!("bob@mail.example.com")
        );
    }

    #[test]
    fn addresses_extend_the_domain_list() {
        let policy = RecipientPolicy::new(
            vec!["example.com".into()],
            vec!["ops@partner.org".into()],
            10,
        );
        assert!(check(&policy, &["x@example.com", "OPS@partner.org"]).is_ok());
        let err = check(&policy, &["sales@partner.org"]).unwrap_err();
        assert_eq!(err.kind, "denied");
        assert!(err.message.contains("sales@partner.org"));
    }
}
