//! Reads of the embedded store that only copying it elsewhere needs (`agentd migrate`): what
//! the [`crate::store::Store`] trait has no call for, because a turn never asks for it.

use rusqlite::params;

use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::rows::{JOURNAL_COLUMNS, read_journal};
use crate::store::{JournalRecord, StoreError, StoreResult};

impl SqliteStore {
    /// Every journaled call of a session, started and finished, oldest first.
    pub async fn journal_of_session(&self, session_id: &str) -> StoreResult<Vec<JournalRecord>> {
        let session_id = session_id.to_owned();
        self.read("journal of session", move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {JOURNAL_COLUMNS} FROM journal WHERE session_id = ?1
                 ORDER BY started_at, call_id, digest"
            ))?;
            let rows = statement.query_map(params![session_id], read_journal)?;
            let mut records = Vec::new();
            for row in rows {
                records.push(row??);
            }
            Ok(records)
        })
        .await
    }
}

impl SqliteStore {
    /// Whether `error`, from [`SqliteStore::open`], says another process holds the database's
    /// lock (a daemon still running on it).
    pub fn is_locked_elsewhere(error: &StoreError) -> bool {
        match error {
            StoreError::Backend { source, .. } => source
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            _ => false,
        }
    }
}
