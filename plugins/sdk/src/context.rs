//! Per-call context handed to a handler: who is calling, until when, and how to notice a cancel.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Everything a handler may know about the call it is serving.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The chat session the call belongs to.
    pub session_id: String,
    /// The model's id for this tool call (`tool_call_id` in the history).
    pub call_id: String,
    /// Stable across retries and replays of the same call: derived from the session, the call
    /// id and (when agentd dispatches) the digest of the call's tool and arguments, so a model
    /// reusing an id for other content gets another key. Handlers with side effects use it to
    /// avoid doing them twice (for example as a Message-ID).
    pub idempotency_key: String,
    /// When agentd stops waiting for this call.
    pub deadline: Instant,
    /// Cancelled when the turn is abandoned (client gone, daemon shutting down).
    pub cancel: CancellationToken,
}

impl CallContext {
    /// Builds a context; the idempotency key is derived from the session and call ids.
    pub fn new(
        session_id: impl Into<String>,
        call_id: impl Into<String>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Self {
        let session_id = session_id.into();
        let call_id = call_id.into();
        let idempotency_key = idempotency_key(&session_id, &call_id);
        Self {
            session_id,
            call_id,
            idempotency_key,
            deadline: Instant::now() + timeout,
            cancel,
        }
    }

    /// The same context for the call whose content has this digest: the idempotency key then
    /// names the call's content too, not only its id.
    /// The key keeps its first half (session and call id) and takes the digest's first 16
    /// characters as its second: still 32 hex digits, no second hash over all three parts.
    pub fn with_content_digest(mut self, digest: &str) -> Self {
        let content = digest.get(..16).unwrap_or(digest);
        self.idempotency_key.truncate(16);
        self.idempotency_key.push_str(content);
        self
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A short, stable, printable key for one call: FNV-1a over both ids, twice with different
/// offsets, as 32 hex digits. Not a security boundary; only uniqueness and stability matter.
pub(crate) fn idempotency_key(session_id: &str, call_id: &str) -> String {
    key_of(&[session_id, call_id])
}

fn key_of(parts: &[&str]) -> String {
    fn fnv(seed: u64, parts: &[&str]) -> u64 {
        let mut h = seed;
        for part in parts {
            for b in part.bytes().chain(std::iter::once(0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325, parts),
        fnv(0x6c62_272e_07bb_0142, parts)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_and_distinguishes_calls() {
        let a = idempotency_key("s1", "call_1");
        assert_eq!(a, idempotency_key("s1", "call_1"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, idempotency_key("s1", "call_2"));
        assert_ne!(a, idempotency_key("s2", "call_1"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(idempotency_key("ab", "c"), idempotency_key("a", "bc"));
    }

    #[test]
    fn the_content_digest_is_part_of_the_key() {
        let ctx = || CallContext::new("s1", "call_0", Duration::from_secs(1), Default::default());
        let (d1, d2) = ("1f".repeat(32), "2e".repeat(32));
        let first = ctx().with_content_digest(&d1);
        assert_eq!(
            first.idempotency_key,
            ctx().with_content_digest(&d1).idempotency_key
        );
        assert_ne!(
            first.idempotency_key,
            ctx().with_content_digest(&d2).idempotency_key
        );
        assert_ne!(first.idempotency_key, ctx().idempotency_key);
        assert_eq!(first.idempotency_key.len(), 32);
    }
}
