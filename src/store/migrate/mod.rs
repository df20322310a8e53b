//! Copying the embedded SQLite store into an empty PostgreSQL database (`agentd migrate`),
//! so one instance's data can be served by several.
//!
//! Every resource keeps its id, parent, body and timestamps; each session's history keeps its
//! order, its entries' ids, sources and times; the journal of its calls is copied as it stands
//! (a call started and never finished stays started, so it is still reported
//! `outcome_unknown` and never run again); its held calls keep their state, reason and times.
//! The target must hold no agentd data, so two instances' data are never mixed.

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalState, CallStatus, Collection, Direction, ListQuery,
    StepWrite, Store, StoreError,
};

/// Records read from the source per list call.
const RECORDS_PER_PAGE: u32 = 500;
/// History entries, or journaled calls, per read from the source and per target commit.
const ROWS_PER_WRITE: u32 = 500;

/// The collections in the order they are copied.
const COLLECTIONS: [Collection; 4] = [
    Collection::Agents,
    Collection::AgentTools,
    Collection::Users,
    Collection::Sessions,
];

/// What a migration copied, per kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub agents: u64,
    pub agent_tools: u64,
    pub users: u64,
    pub sessions: u64,
    pub history_entries: u64,
    pub journaled_calls: u64,
    /// Of `journaled_calls`: started and never finished.
    pub unfinished_calls: u64,
    pub held_calls: u64,
    /// Of `held_calls`: still waiting for a decision.
    pub pending_held_calls: u64,
}

impl Copied {
    fn count_record(&mut self, collection: Collection) {
        let count = match collection {
            Collection::Agents => &mut self.agents,
            Collection::AgentTools => &mut self.agent_tools,
            Collection::Users => &mut self.users,
            Collection::Sessions => &mut self.sessions,
        };
        *count += 1;
    }
}

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "agents           {}", self.agents)?;
        writeln!(f, "agent tools      {}", self.agent_tools)?;
        writeln!(f, "users            {}", self.users)?;
        writeln!(f, "sessions         {}", self.sessions)?;
        writeln!(f, "history entries  {}", self.history_entries)?;
        writeln!(
            f,
            "journaled calls  {} ({} started and not finished)",
            self.journaled_calls, self.unfinished_calls
        )?;
        write!(
            f,
            "held calls       {} ({} pending)",
            self.held_calls, self.pending_held_calls
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The target holds resources, history, journaled or held calls: nothing was written.
    #[error(
        "the target database already holds agentd data; agentd migrate copies only into an \
         empty database (nothing was written)"
    )]
    TargetNotEmpty,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A row the target stores differently from the source; the copy stopped there.
    #[error("{0}")]
    NotCopiedFaithfully(String),
}

/// Copies everything `source` holds into `target`, which must hold no agentd data.
pub async fn copy_store(
    source: &SqliteStore,
    target: &PostgresStore,
) -> Result<Copied, MigrateError> {
    if target.holds_data().await? {
        return Err(MigrateError::TargetNotEmpty);
    }
    let mut copied = Copied::default();
    for collection in COLLECTIONS {
        copy_collection(source, target, collection, &mut copied).await?;
    }
    Ok(copied)
}

/// Every record of `collection`, oldest first; a session with its conversation.
async fn copy_collection(
    source: &SqliteStore,
    target: &PostgresStore,
    collection: Collection,
    copied: &mut Copied,
) -> Result<(), MigrateError> {
    let mut query = ListQuery {
        limit: RECORDS_PER_PAGE,
        direction: Direction::Asc,
        ..ListQuery::default()
    };
    loop {
        let page = source.list(collection, &query).await?;
        let full_page = page.len() == RECORDS_PER_PAGE as usize;
        for record in page {
            let id = record.id.clone();
            target.insert(collection, record).await?;
            copied.count_record(collection);
            if collection == Collection::Sessions {
                copy_history(source, target, &id, copied).await?;
                copy_journal(source, target, &id, copied).await?;
                copy_held_calls(source, target, &id, copied).await?;
            }
        }
        if !full_page {
            return Ok(());
        }
        query.offset += RECORDS_PER_PAGE;
    }
}

/// The session's entries in order, a page per read and per commit, so a long history of long
/// messages is never held whole. An entry read from SQLite writes the JSON text of its parsed
/// message, the text every later model request would send.
async fn copy_history(
    source: &SqliteStore,
    target: &PostgresStore,
    session_id: &str,
    copied: &mut Copied,
) -> Result<(), MigrateError> {
    let mut offset = 0;
    loop {
        let page = source.history(session_id, ROWS_PER_WRITE, offset).await?;
        let full_page = page.len() == ROWS_PER_WRITE as usize;
        copied.history_entries += page.len() as u64;
        target
            .append_entries(page.into_iter().map(Arc::new).collect())
            .await?;
        if !full_page {
            return Ok(());
        }
        offset += ROWS_PER_WRITE;
    }
}

/// The session's journaled calls as they stand. A start carries its whole record (status,
/// result and both times), so a finished call is copied by one insert with its own
/// `finished_at`; a `finish` would stamp the time of the copy instead.
async fn copy_journal(
    source: &SqliteStore,
    target: &PostgresStore,
    session_id: &str,
    copied: &mut Copied,
) -> Result<(), MigrateError> {
    let calls = source.journal_of_session(session_id).await?;
    for chunk in calls.chunks(ROWS_PER_WRITE as usize) {
        let journaled = target
            .write_step(StepWrite {
                start: chunk.to_vec(),
                ..StepWrite::default()
            })
            .await?;
        if let Some((call, _)) = chunk.iter().zip(&journaled).find(|(_, fresh)| !**fresh) {
            return Err(not_copied(
                "journaled call",
                &call.session_id,
                &call.call_id,
            ));
        }
        copied.journaled_calls += chunk.len() as u64;
        copied.unfinished_calls += chunk
            .iter()
            .filter(|call| call.status == CallStatus::Started)
            .count() as u64;
    }
    Ok(())
}

/// The session's held calls: each held as pending, then a decided one decided again at its
/// own `decided_at` with its reason. The stores decide by the same rule (a decision at or
/// after `expires_at` is recorded `expired`), so the target records the same state; each
/// result is compared with the source's row to prove it.
async fn copy_held_calls(
    source: &SqliteStore,
    target: &PostgresStore,
    session_id: &str,
    copied: &mut Copied,
) -> Result<(), MigrateError> {
    let held = source.approvals(session_id).await?;
    if held.is_empty() {
        return Ok(());
    }
    target
        .write_step(StepWrite {
            hold: held.clone(),
            ..StepWrite::default()
        })
        .await?;
    for call in &held {
        copied.held_calls += 1;
        if call.state == ApprovalState::Pending {
            copied.pending_held_calls += 1;
            continue;
        }
        decide_again(target, call).await?;
    }
    Ok(())
}

async fn decide_again(target: &PostgresStore, call: &ApprovalRecord) -> Result<(), MigrateError> {
    let Some(decided_at) = call.decided_at else {
        return Err(not_copied("held call", &call.session_id, &call.call_id));
    };
    // An expired call was not decided by anyone: any decision at its time records `expired`.
    let state = match call.state {
        ApprovalState::Expired => ApprovalState::Denied,
        decided => decided,
    };
    let decision = target
        .approval_decide(
            &call.session_id,
            &call.call_id,
            &call.digest,
            state,
            call.reason.clone(),
            decided_at,
        )
        .await?;
    match decision {
        ApprovalDecision::Decided(stored) | ApprovalDecision::Expired(stored)
            if stored == *call =>
        {
            Ok(())
        }
        _ => Err(not_copied("held call", &call.session_id, &call.call_id)),
    }
}

/// A row the target would not store as the source has it.
fn not_copied(kind: &str, session_id: &str, call_id: &str) -> MigrateError {
    MigrateError::NotCopiedFaithfully(format!(
        "{kind} {call_id} of session {session_id} could not be copied as it is stored; the \
         target database holds part of the copy: drop and recreate it before migrating again"
    ))
}
