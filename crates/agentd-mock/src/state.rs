//! The state one mock server shares between its handlers and its [`MockModel`] handle: the
//! script queue, recorded requests, counters and runtime settings.
//!
//! [`MockModel`]: super::MockModel

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::script::Reply;

/// One request received on a chat-completions route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    /// When the request arrived.
    #[serde(serialize_with = "unix_millis")]
    pub received_at: SystemTime,
    /// The request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Request headers, names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body; a JSON string holding the raw text when the body was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(have, _)| have.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

fn unix_millis<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    s.serialize_u128(millis)
}

/// Counters for benchmarks, also served as `GET /_mock/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MockStats {
    /// Chat-completions requests received since start or the last reset.
    pub requests: u64,
    /// Nanoseconds spent answering them, configured delays and streaming included.
    pub busy_ns_total: u64,
    /// Scripted replies not yet used.
    pub pending_replies: usize,
    /// Requests currently recorded.
    pub recorded: usize,
}

pub(crate) struct Shared {
    latency_ns: AtomicU64,
    record: AtomicBool,
    script: Mutex<VecDeque<Reply>>,
    recorded: Mutex<Vec<RecordedRequest>>,
    requests: AtomicU64,
    busy_ns: AtomicU64,
    call_ids: AtomicU64,
    completion_ids: AtomicU64,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    pub(crate) fn new(latency: Duration, record: bool) -> Arc<Self> {
        Arc::new(Self {
            latency_ns: AtomicU64::new(nanos(latency)),
            record: AtomicBool::new(record),
            script: Mutex::new(VecDeque::new()),
            recorded: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            call_ids: AtomicU64::new(1),
            completion_ids: AtomicU64::new(1),
        })
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.latency_ns.store(nanos(latency), Ordering::Relaxed);
    }

    pub(crate) fn recording(&self) -> bool {
        self.record.load(Ordering::Relaxed)
    }

    pub(crate) fn set_recording(&self, on: bool) {
        self.record.store(on, Ordering::Relaxed);
    }

    pub(crate) fn push(&self, replies: impl IntoIterator<Item = Reply>) -> usize {
        let mut script = locked(&self.script);
        script.extend(replies);
        script.len()
    }

    pub(crate) fn next_reply(&self) -> Option<Reply> {
        locked(&self.script).pop_front()
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        locked(&self.recorded).push(request);
    }

    pub(crate) fn recorded(&self) -> Vec<RecordedRequest> {
        locked(&self.recorded).clone()
    }

    /// The most recent recorded body, copying nothing else.
    pub(crate) fn last_body(&self) -> Option<Value> {
        locked(&self.recorded)
            .last()
            .map(|request| request.body.clone())
    }

    pub(crate) fn bodies(&self) -> Vec<Value> {
        locked(&self.recorded)
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    pub(crate) fn clear_recorded(&self) {
        locked(&self.recorded).clear();
    }

    /// Counts a request; the returned guard adds its lifetime to the busy time when dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Busy {
            shared: Arc::clone(self),
            since: Instant::now(),
        }
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn pending_replies(&self) -> usize {
        locked(&self.script).len()
    }

    pub(crate) fn next_call_id(&self) -> u64 {
        self.call_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_completion_id(&self) -> u64 {
        self.completion_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> MockStats {
        MockStats {
            requests: self.requests.load(Ordering::Relaxed),
            busy_ns_total: self.busy_ns.load(Ordering::Relaxed),
            pending_replies: locked(&self.script).len(),
            recorded: locked(&self.recorded).len(),
        }
    }

    /// Forgets the script, the recordings and the counters (ids keep counting up).
    pub(crate) fn reset(&self) {
        locked(&self.script).clear();
        locked(&self.recorded).clear();
        self.requests.store(0, Ordering::Relaxed);
        self.busy_ns.store(0, Ordering::Relaxed);
    }
}

/// Time spent answering one request; counted when dropped.
pub(crate) struct Busy {
    shared: Arc<Shared>,
    since: Instant,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let spent = nanos(self.since.elapsed());
        self.shared.busy_ns.fetch_add(spent, Ordering::Relaxed);
    }
}
