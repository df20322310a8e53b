//! Test doubles shared by the dispatch tests: an in-memory journal and calls held for
//! approval (the only parts of the store dispatch uses) and handler kinds with observable behaviour (sleep, panic, deny).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentd_sdk::{
    CallContext, HandlerError, HandlerFactory, OptionsError, ToolCall, ToolHandler, ToolOutput,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::session::Entry;
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalState, CallStatus, Collection, JournalRecord,
    ListQuery, Record, StepWrite, Store, StoreError, StoreResult,
};

// ---------------------------------------------------------------------------------------------
// The journal double.

#[derive(Default)]
pub(super) struct MemoryJournal {
    calls: Mutex<HashMap<(String, String, String), JournalRecord>>,
    /// Held calls by session and call id.
    held: Mutex<HashMap<(String, String), ApprovalRecord>>,
}

impl MemoryJournal {
    /// The record of a call id (of whichever content, when several share it).
    pub(super) fn record(&self, session: &str, call: &str) -> Option<JournalRecord> {
        self.records(session, call).into_iter().next()
    }

    /// Every record with this call id, oldest first.
    pub(super) fn records(&self, session: &str, call: &str) -> Vec<JournalRecord> {
        let mut records: Vec<JournalRecord> = self
            .calls
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.session_id == session && r.call_id == call)
            .cloned()
            .collect();
        records.sort_by_key(|r| r.started_at);
        records
    }
}

fn not_journal<T>() -> StoreResult<T> {
    Err(StoreError::backend(
        "memory journal",
        "only the journal is kept here",
    ))
}

#[async_trait]
impl Store for MemoryJournal {
    async fn insert(&self, _: Collection, _: Record) -> StoreResult<()> {
        not_journal()
    }
    async fn upsert(&self, _: Collection, _: Record) -> StoreResult<()> {
        not_journal()
    }
    async fn get(&self, _: Collection, _: &str) -> StoreResult<Option<std::sync::Arc<Record>>> {
        not_journal()
    }
    async fn list(&self, _: Collection, _: &ListQuery) -> StoreResult<Vec<Record>> {
        not_journal()
    }
    async fn update(&self, _: Collection, _: Record) -> StoreResult<bool> {
        not_journal()
    }
    async fn delete(&self, _: Collection, _: &str) -> StoreResult<bool> {
        not_journal()
    }
    async fn write_step(&self, step: StepWrite) -> StoreResult<Vec<bool>> {
        if !step.entries.is_empty() {
            return not_journal();
        }
        let mut calls = self.calls.lock().unwrap();
        let started = step
            .start
            .into_iter()
            .map(|record| {
                let key = (
                    record.session_id.clone(),
                    record.call_id.clone(),
                    record.digest.clone(),
                );
                let fresh = !calls.contains_key(&key);
                if fresh {
                    calls.insert(key, record);
                }
                fresh
            })
            .collect();
        for finish in step.finish {
            let record = calls
                .get_mut(&(finish.session_id, finish.call_id, finish.digest))
                .ok_or_else(|| StoreError::backend("memory journal", "finish without start"))?;
            record.status = CallStatus::Finished;
            record.result = Some(finish.result);
            record.finished_at = Some(OffsetDateTime::now_utc());
        }
        let mut held = self.held.lock().unwrap();
        for record in step.hold {
            let key = (record.session_id.clone(), record.call_id.clone());
            held.entry(key).or_insert(ApprovalRecord {
                state: ApprovalState::Pending,
                reason: None,
                decided_at: None,
                ..record
            });
        }
        Ok(started)
    }
    async fn history(&self, _: &str, _: u32, _: u32) -> StoreResult<Vec<Entry>> {
        not_journal()
    }
    async fn full_history(&self, _: &str) -> StoreResult<crate::session::History> {
        not_journal()
    }
    async fn clear_history(&self, _: &str) -> StoreResult<()> {
        not_journal()
    }
    async fn journal_get(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
    ) -> StoreResult<Option<JournalRecord>> {
        Ok(self
            .records(session_id, call_id)
            .into_iter()
            .find(|r| r.digest == digest))
    }
    async fn approvals(&self, session_id: &str) -> StoreResult<Vec<ApprovalRecord>> {
        let mut records: Vec<ApprovalRecord> = self
            .held
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.session_id == session_id)
            .cloned()
            .collect();
        records.sort_by(|a, b| (a.requested_at, &a.call_id).cmp(&(b.requested_at, &b.call_id)));
        Ok(records)
    }
    async fn approval_decide(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
        state: ApprovalState,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> StoreResult<ApprovalDecision> {
        let mut held = self.held.lock().unwrap();
        let Some(record) = held.get_mut(&(session_id.to_owned(), call_id.to_owned())) else {
            return Ok(ApprovalDecision::NotFound);
        };
        if record.digest != digest {
            return Ok(ApprovalDecision::DigestMismatch(record.clone()));
        }
        if record.state != ApprovalState::Pending {
            return Ok(ApprovalDecision::AlreadyDecided(record.clone()));
        }
        record.decided_at = Some(now);
        if record.expires_at <= now {
            record.state = ApprovalState::Expired;
            record.reason = Some("expired".to_owned());
            return Ok(ApprovalDecision::Expired(record.clone()));
        }
        record.state = state;
        record.reason = reason;
        Ok(ApprovalDecision::Decided(record.clone()))
    }
    async fn approvals_pending(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let held = self.held.lock().unwrap();
        let pending = held
            .values()
            .filter(|r| r.state == ApprovalState::Pending && r.expires_at > now)
            .count();
        Ok(pending as u64)
    }
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Test handlers: each factory is a real handler kind with options, built through the catalog.

/// `sleep`: waits `ms` milliseconds, then returns `{"slept": ms}`; counts calls and tracks how
/// many run at once.
#[derive(Default)]
pub(super) struct SleepFactory {
    pub calls: Arc<AtomicUsize>,
    pub running: Arc<AtomicUsize>,
    pub most_at_once: Arc<AtomicUsize>,
}

struct Sleep {
    ms: u64,
    calls: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

impl HandlerFactory for SleepFactory {
    fn name(&self) -> &'static str {
        "sleep"
    }
    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        let ms = options["ms"]
            .as_u64()
            .ok_or_else(|| OptionsError::one("`ms` must be a number"))?;
        Ok(Arc::new(Sleep {
            ms,
            calls: Arc::clone(&self.calls),
            running: Arc::clone(&self.running),
            most_at_once: Arc::clone(&self.most_at_once),
        }))
    }
}

#[async_trait]
impl ToolHandler for Sleep {
    async fn call(&self, call: ToolCall, _ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(ToolOutput::new(
            json!({ "slept": self.ms, "arguments": call.arguments }),
        ))
    }
}

/// `fail`: panics (`mode = "panic"`) or returns a `denied` error (`mode = "deny"`).
pub(super) struct FailFactory;

struct Fail {
    panic: bool,
}

impl HandlerFactory for FailFactory {
    fn name(&self) -> &'static str {
        "fail"
    }
    fn build(&self, options: &Value) -> Result<Arc<dyn ToolHandler>, OptionsError> {
        match options["mode"].as_str() {
            Some("panic") => Ok(Arc::new(Fail { panic: true })),
            Some("deny") => Ok(Arc::new(Fail { panic: false })),
            _ => Err(OptionsError::one("`mode` must be \"panic\" or \"deny\"")),
        }
    }
}

#[async_trait]
impl ToolHandler for Fail {
    async fn call(&self, _call: ToolCall, _ctx: CallContext) -> Result<ToolOutput, HandlerError> {
        if self.panic {
            panic!("boom: the handler broke");
        }
        Err(HandlerError::new("denied", "recipient not allowed")
            .with_details(json!({"recipient": "x@y"})))
    }
}
