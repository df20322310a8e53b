//! The storage boundary: everything agentd keeps across restarts goes through [`Store`].
//!
//! Resources (agents, users, sessions, agent tools) are stored as JSON documents with an id,
//! timestamps and an optional parent; the API layer owns their shape. History entries are
//! append-only per session. The tool-call journal records each server-tool call before its
//! handler runs and its result after, so that a restart can tell "never ran" from "ran, result
//! lost" and never runs a side effect twice.

#[cfg(test)]
mod contract;
mod heap;
pub mod migrate;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use crate::session::History;
use crate::session::message::Entry;

/// The kinds of documents the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    Agents,
    Users,
    Sessions,
    /// Tools declared on an agent; `parent` is the agent id.
    AgentTools,
}

impl Collection {
    /// Singular name for messages ("agent not found").
    pub fn noun(self) -> &'static str {
        match self {
            Collection::Agents => "agent",
            Collection::Users => "user",
            Collection::Sessions => "session",
            Collection::AgentTools => "tool",
        }
    }

    /// The collection's name in the stores' `resources` table.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Collection::Agents => "agents",
            Collection::Users => "users",
            Collection::Sessions => "sessions",
            Collection::AgentTools => "agent_tools",
        }
    }
}

/// One stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// The owning document (the agent of an agent tool), if any.
    pub parent: Option<String>,
    /// The resource fields, without `id`, `created_at` and `updated_at`.
    pub body: Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    CreatedAt,
    UpdatedAt,
}

impl SortBy {
    /// The stores' column it orders by.
    pub(crate) fn column(self) -> &'static str {
        match self {
            SortBy::CreatedAt => "created_at",
            SortBy::UpdatedAt => "updated_at",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    Asc,
    #[default]
    Desc,
}

impl Direction {
    /// The SQL keyword.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        }
    }
}

/// A page of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: u32,
    pub offset: u32,
    pub sort_by: SortBy,
    pub direction: Direction,
    /// `(key, value)` pairs: a record matches when `body.metadata[key]` equals `value`
    /// (a JSON string equal to it, or a scalar whose JSON text equals it).
    pub metadata_filter: Vec<(String, String)>,
    /// Only records with this parent.
    pub parent: Option<String>,
    /// Most bytes of record bodies one page may hold; a page that would hold more fails with
    /// [`StoreError::PageTooLarge`] instead of being built.
    pub max_bytes: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: 100,
            offset: 0,
            sort_by: SortBy::default(),
            direction: Direction::default(),
            metadata_filter: Vec::new(),
            parent: None,
            max_bytes: usize::MAX,
        }
    }
}

impl ListQuery {
    /// Every record with this parent, oldest first.
    pub fn children_of(parent: &str) -> Self {
        Self {
            limit: u32::MAX,
            direction: Direction::Asc,
            parent: Some(parent.to_owned()),
            ..Self::default()
        }
    }
}

/// The state of one journaled tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    /// Recorded before the handler ran; no result yet.
    Started,
    /// Finished; `result` holds the tool result text.
    Finished,
}

/// One journaled call. A call is identified by its session, its id and the digest of its
/// content ([`crate::session`]): the same id with other content is another call.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub session_id: String,
    pub call_id: String,
    pub digest: String,
    pub tool: String,
    /// The arguments text; empty for a call of a turn that saves no history, whose journal
    /// keeps only what exactly-once needs (id, digest, outcome).
    pub arguments: String,
    pub status: CallStatus,
    /// The tool result text given to the model (set when finished).
    pub result: Option<String>,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// The reason both stores record on a held call whose time ran out before a decision.
pub(crate) const EXPIRED_REASON: &str = "expired";

/// Where a call held for a person's approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    /// Waiting for a decision.
    Pending,
    Approved,
    Denied,
    /// Not decided before its `expires_at`: answered to the model as denied.
    Expired,
    /// A new user message came before a decision: answered to the model as denied.
    Superseded,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "denied" => ApprovalState::Denied,
            "expired" => ApprovalState::Expired,
            "superseded" => ApprovalState::Superseded,
            _ => return None,
        })
    }
}

/// A tool call held for a person's approval: bound to its exact arguments by their digest.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub session_id: String,
    pub call_id: String,
    /// The call's digest (tool name and canonical arguments): a decision names it.
    pub digest: String,
    pub tool: String,
    /// The call's arguments as canonical JSON text.
    pub arguments: String,
    pub requested_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub state: ApprovalState,
    /// Why it was denied (by a person, or `expired` / `superseded`).
    pub reason: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
}

/// What [`Store::approval_decide`] found and did.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalDecision {
    /// The call was pending, the digest matched, in time: the decision is recorded.
    Decided(ApprovalRecord),
    /// No held call of the session has that id.
    NotFound,
    /// The digest names other arguments than the held call's: nothing changed.
    DigestMismatch(ApprovalRecord),
    /// Already decided (or expired, or superseded) before: nothing changed.
    AlreadyDecided(ApprovalRecord),
    /// Its `expires_at` had passed: now recorded as `Expired`, the decision not taken.
    Expired(ApprovalRecord),
}

/// What one step of a turn commits at once (see [`Store::write_step`]).
#[derive(Debug, Default)]
pub struct StepWrite {
    /// Appended to their sessions' histories, in order.
    pub entries: Vec<Arc<Entry>>,
    /// Calls about to run, journaled as started.
    pub start: Vec<JournalRecord>,
    /// Calls that ran, journaled as finished with their results.
    pub finish: Vec<CallResult>,
    /// Calls held for approval, recorded `Pending` (a call already held under the same session
    /// and id is left as it is).
    pub hold: Vec<ApprovalRecord>,
}

/// The result text of a journaled call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub session_id: String,
    pub call_id: String,
    pub digest: String,
    pub result: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    /// The storage engine failed; `context` says doing what, `source` is the engine's error.
    #[error("storage failure: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A list page would hold more than its byte budget.
    #[error("the page would be larger than {0} bytes")]
    PageTooLarge(usize),
}

impl StoreError {
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Durable storage. Implementations must be safe to call from many tasks at once and must never
/// block the async runtime (run blocking I/O off the runtime threads).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new record; `Conflict` if the id exists in that collection.
    async fn insert(&self, collection: Collection, record: Record) -> StoreResult<()>;
    /// Inserts or replaces a record by id (keeps the original `created_at` when replacing).
    async fn upsert(&self, collection: Collection, record: Record) -> StoreResult<()>;
    /// A record by id, shared with the store's in-memory copy (a turn reads its session and
    /// agent every time; changing one means `Arc::unwrap_or_clone` and `update`).
    async fn get(&self, collection: Collection, id: &str) -> StoreResult<Option<Arc<Record>>>;
    async fn list(&self, collection: Collection, query: &ListQuery) -> StoreResult<Vec<Record>>;
    /// Every record of a collection with this parent, oldest first (an agent's tools).
    async fn children(&self, collection: Collection, parent: &str) -> StoreResult<Vec<Record>> {
        self.list(collection, &ListQuery::children_of(parent)).await
    }
    /// Replaces body and `updated_at` of an existing record; false if it does not exist.
    async fn update(&self, collection: Collection, record: Record) -> StoreResult<bool>;
    /// Deletes a record and what hangs off it (an agent's tools; a session's history, journal
    /// and held calls); false if it did not exist.
    async fn delete(&self, collection: Collection, id: &str) -> StoreResult<bool>;

    /// Commits a step of a turn in one transaction: history entries, calls about to run, and
    /// results of calls that ran. Returns, for each record of `start` in order, whether it was
    /// journaled now; `false` means the same call (id and digest) was journaled before (it may
    /// have run, so it must not run again). A `finish` for a call that was never started fails
    /// the step.
    async fn write_step(&self, step: StepWrite) -> StoreResult<Vec<bool>>;
    /// Appends entries to a session's history in one transaction, in the given order.
    async fn append_entries(&self, entries: Vec<Arc<Entry>>) -> StoreResult<()> {
        self.write_step(StepWrite {
            entries,
            ..StepWrite::default()
        })
        .await
        .map(drop)
    }
    /// A session's history, oldest first.
    async fn history(&self, session_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Entry>>;
    /// Every history entry of a session, oldest first. The entries are shared, not copied:
    /// a turn reads the whole history every time, and it only grows at the end.
    async fn full_history(&self, session_id: &str) -> StoreResult<History>;
    /// Removes a session's history entries, the journal of its calls and its calls held for
    /// approval (the session itself stays): nothing of the cleared conversation is kept.
    async fn clear_history(&self, session_id: &str) -> StoreResult<()>;

    /// Records that a call is about to run. Fails with `Conflict` if the same call (id and
    /// digest) is already journaled (so a call can be started at most once).
    async fn journal_start(&self, record: &JournalRecord) -> StoreResult<()> {
        let started = self
            .write_step(StepWrite {
                start: vec![record.clone()],
                ..StepWrite::default()
            })
            .await?;
        match started.first() {
            Some(true) => Ok(()),
            _ => Err(StoreError::Conflict(format!(
                "tool call {} of session {}",
                record.call_id, record.session_id
            ))),
        }
    }
    /// Records a call's result.
    async fn journal_finish(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
        result: &str,
    ) -> StoreResult<()> {
        self.write_step(StepWrite {
            finish: vec![CallResult {
                session_id: session_id.to_owned(),
                call_id: call_id.to_owned(),
                digest: digest.to_owned(),
                result: result.to_owned(),
            }],
            ..StepWrite::default()
        })
        .await
        .map(drop)
    }
    /// The journaled call with this id and digest, if any.
    async fn journal_get(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
    ) -> StoreResult<Option<JournalRecord>>;

    /// Every call of the session held for approval (decided ones too), oldest first.
    async fn approvals(&self, session_id: &str) -> StoreResult<Vec<ApprovalRecord>>;

    /// Records a decision on a held call, atomically: only a `Pending` call whose digest is
    /// `digest` and whose `expires_at` is after `now` takes `state` (`Approved`, `Denied` or
    /// `Superseded`) with `reason`; a pending call past its time becomes `Expired` instead.
    async fn approval_decide(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
        state: ApprovalState,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> StoreResult<ApprovalDecision>;

    /// Held calls still `Pending` and not past their time, across sessions (the
    /// `agentd_approvals_pending` gauge).
    async fn approvals_pending(&self, now: OffsetDateTime) -> StoreResult<u64>;

    /// Whether other agentd instances may use this store at the same time, so a session's turn
    /// must be claimed in it ([`Store::claim_turn`]) as well as locked in the process.
    fn shared(&self) -> bool {
        false
    }

    /// Claims a session's turn for `owner` (one agentd instance) until `ttl` from now, across
    /// every instance sharing the store; renews it when `owner` holds it already. `false` when
    /// another owner holds a claim that has not expired (an instance that died stops renewing
    /// and its claim lapses). A store one instance owns alone (SQLite, whose file is locked
    /// for the process) needs no claims: the in-process turn lock is enough.
    async fn claim_turn(
        &self,
        _session_id: &str,
        _owner: &str,
        _ttl: std::time::Duration,
    ) -> StoreResult<bool> {
        Ok(true)
    }

    /// Gives up `owner`'s claim on a session's turn (a claim of another owner stays).
    async fn release_turn(&self, _session_id: &str, _owner: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Cheap liveness probe of the backend (used by readiness and the watchdog).
    async fn ping(&self) -> StoreResult<()>;
}
