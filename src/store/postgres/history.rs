//! History entries in PostgreSQL: appending a step's entries, reading a session's history in
//! append order, and removing a conversation (history, journal, held calls) together.

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::Row;

use crate::session::message::{ChatMessage, Entry, MessageJson};
use crate::session::{History, Id};
use crate::store::StoreResult;
use crate::store::postgres::codec::{
    backend, fail, from_nanos, parse_source, source_key, to_nanos,
};
use crate::store::postgres::resources::execute;

/// A history entry ready to bind, borrowed: its message as the exact JSON text the entry made
/// (and keeps), nothing of it copied.
pub(super) struct EntryRow<'a> {
    entry: &'a Entry,
    message: &'a str,
    created_at: i64,
}

impl<'a> EntryRow<'a> {
    pub(super) fn from_entry(operation: &str, entry: &'a Entry) -> StoreResult<Self> {
        let message = entry
            .message_json()
            .map_err(|e| backend(&format!("{operation}: invalid JSON"), e))?;
        Ok(Self {
            entry,
            message: message.get(),
            created_at: to_nanos(operation, entry.created_at)?,
        })
    }
}

/// The advisory lock class of a session's history (the second key is the session id's hash).
const HISTORY_LOCK_CLASS: i32 = 0x6869_7374; // "hist"

/// Appends rows in order; each gets the next value of the server's sequence. Each session's
/// history lock is taken first and held to the commit, so when several instances append to
/// one session, a step's entries stay together and sequence order is commit order.
pub(super) async fn insert_entries(
    tx: &Transaction<'_>,
    operation: &'static str,
    rows: &[EntryRow<'_>],
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sessions: Vec<&str> = rows
        .iter()
        .map(|row| row.entry.session_id.as_str())
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    // In one statement, in the order of the lock keys, so two steps touching the same
    // sessions cannot wait for each other.
    let lock = tx
        .prepare_cached(
            "SELECT pg_advisory_xact_lock($1, key)
             FROM (SELECT DISTINCT hashtext(session_id) AS key
                   FROM unnest($2::text[]) AS session_id) AS keys
             ORDER BY key",
        )
        .await
        .map_err(fail(operation))?;
    tx.execute(&lock, &[&HISTORY_LOCK_CLASS, &sessions])
        .await
        .map_err(fail(operation))?;
    let statement = tx
        .prepare_cached(
            "INSERT INTO history (session_id, id, source, role, message, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(fail(operation))?;
    for row in rows {
        tx.execute(
            &statement,
            &[
                &row.entry.session_id.as_str(),
                &row.entry.id.as_str(),
                &source_key(row.entry.source),
                &row.entry.message.role.as_str(),
                &row.message,
                &row.created_at,
            ],
        )
        .await
        .map_err(fail(operation))?;
    }
    Ok(())
}

/// A page of a session's history, oldest first; no `limit` reads to the end.
pub(super) async fn read(
    pool: &Pool,
    session_id: &str,
    limit: Option<i64>,
    offset: i64,
) -> StoreResult<Vec<Entry>> {
    const OPERATION: &str = "history";
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(
            "SELECT session_id, id, source, message, created_at FROM history
             WHERE session_id = $1 ORDER BY seq LIMIT $2 OFFSET $3",
        )
        .await
        .map_err(fail(OPERATION))?;
    let rows = client
        .query(&statement, &[&session_id, &limit, &offset])
        .await
        .map_err(fail(OPERATION))?;
    rows.iter().map(|row| read_entry(OPERATION, row)).collect()
}

/// Every entry of a session, shared.
pub(super) async fn full(pool: &Pool, session_id: &str) -> StoreResult<History> {
    let entries = read(pool, session_id, None, 0).await?;
    Ok(History::from_stored(entries))
}

/// Reads `session_id, id, source, message, created_at` into an entry.
fn read_entry(operation: &str, row: &Row) -> StoreResult<Entry> {
    let get = |e| backend(operation, e);
    let source: &str = row.try_get(2).map_err(get)?;
    let message: &str = row.try_get(3).map_err(get)?;
    Ok(Entry {
        session_id: Id::new(row.try_get(0).map_err(get)?),
        id: Id::new(row.try_get(1).map_err(get)?),
        source: parse_source(operation, source)?,
        message: serde_json::from_str::<ChatMessage>(message)
            .map_err(|e| backend(&format!("{operation}: invalid JSON"), e))?,
        created_at: from_nanos(operation, row.try_get(4).map_err(get)?)?,
        // Made again from the parsed message when first needed, not taken from the row:
        // fields this build does not know are not passed on to the model.
        json: MessageJson::default(),
    })
}

/// Removes a session's history entries, the journal of its calls and its held calls.
pub(super) async fn remove_conversation(
    tx: &Transaction<'_>,
    operation: &'static str,
    session_id: &str,
) -> StoreResult<()> {
    for sql in [
        "DELETE FROM history WHERE session_id = $1",
        "DELETE FROM journal WHERE session_id = $1",
        "DELETE FROM approvals WHERE session_id = $1",
    ] {
        execute(tx, operation, sql, &[&session_id]).await?;
    }
    Ok(())
}

/// [`crate::store::Store::clear_history`]: the conversation removed in one transaction.
pub(super) async fn clear(pool: &Pool, session_id: &str) -> StoreResult<()> {
    const OPERATION: &str = "clear history";
    let mut client = pool.get().await.map_err(fail(OPERATION))?;
    let tx = client.transaction().await.map_err(fail(OPERATION))?;
    remove_conversation(&tx, OPERATION, session_id).await?;
    tx.commit().await.map_err(fail(OPERATION))
}
