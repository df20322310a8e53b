//! Idempotency inside one daemon process: results of calls already delivered, by key, and a
//! gate per key so two concurrent calls with the same key cannot both send.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

/// How many delivered calls are remembered; the oldest are forgotten first.
pub(crate) const REMEMBERED_CALLS: usize = 10_000;

type Gate = tokio::sync::Mutex<()>;

#[derive(Default)]
struct State {
    results: HashMap<String, Value>,
    order: VecDeque<String>,
    gates: HashMap<String, Weak<Gate>>,
}

/// Results of delivered calls, bounded, plus per-key gates.
pub(crate) struct SentLog {
    capacity: usize,
    state: Mutex<State>,
}

impl SentLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gate for `key`: hold its lock while checking and delivering.
    pub(crate) fn gate(&self, key: &str) -> Arc<Gate> {
        let mut state = self.lock();
        if let Some(gate) = state.gates.get(key).and_then(Weak::upgrade) {
            return gate;
        }
        state.gates.retain(|_, gate| gate.strong_count() > 0);
        let gate = Arc::new(Gate::new(()));
        state.gates.insert(key.to_owned(), Arc::downgrade(&gate));
        gate
    }

    /// The result recorded for `key`, if that call was delivered.
    pub(crate) fn get(&self, key: &str) -> Option<Value> {
        self.lock().results.get(key).cloned()
    }

    /// Records a delivered call, forgetting the oldest beyond capacity.
    pub(crate) fn record(&self, key: &str, result: Value) {
        let mut state = self.lock();
        if state.results.insert(key.to_owned(), result).is_none() {
            state.order.push_back(key.to_owned());
        }
        while state.order.len() > self.capacity {
            if let Some(old) = state.order.pop_front() {
                state.results.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remembers_results_up_to_capacity() {
        let log = SentLog::new(2);
        log.record("a", json!(1));
        log.record("b", json!(2));
        log.record("a", json!(3));
        assert_eq!(log.get("a"), Some(json!(3)));
        log.record("c", json!(4));
        assert_eq!(log.get("a"), None, "oldest key forgotten");
        assert_eq!(log.get("b"), Some(json!(2)));
        assert_eq!(log.get("c"), Some(json!(4)));
    }

    #[test]
    fn one_gate_per_live_key() {
        let log = SentLog::new(4);
        let first = log.gate("k");
        let second = log.gate("k");
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!Arc::ptr_eq(&first, &log.gate("other")));
        drop((first, second));
        let fresh = log.gate("k");
        assert!(Arc::strong_count(&fresh) == 1);
    }
}
