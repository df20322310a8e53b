//! One turn at a time per session: a second chat on a busy session is refused with 409
//! rather than queued, so a client never waits behind a turn it cannot see.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per-session locks, created on demand and dropped when no turn holds them.
#[derive(Default)]
pub struct TurnLocks {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Held for the length of a turn; releases the session when dropped.
pub struct TurnGuard {
    _guard: OwnedMutexGuard<()>,
}

impl TurnLocks {
    /// Takes the session's lock, or `None` when a turn is already running on it.
    pub fn try_acquire(&self, session_id: &str) -> Option<TurnGuard> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget locks nobody holds, so the map does not grow with every session ever seen.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        let lock = locks.entry(session_id.to_owned()).or_default().clone();
        drop(locks);
        lock.try_lock_owned().ok().map(|g| TurnGuard { _guard: g })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_first_is_dropped() {
        let locks = TurnLocks::default();
        let first = locks.try_acquire("s").expect("free");
        assert!(locks.try_acquire("s").is_none());
        assert!(locks.try_acquire("other").is_some());
        drop(first);
        assert!(locks.try_acquire("s").is_some());
    }
}
