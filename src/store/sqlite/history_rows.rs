//! How a session's history lies in SQLite: rows appended to one table in commit order, each
//! pointing at the session's previous row (`prev`), and one row per session in
//! `history_heads` naming its newest row.
//!
//! There is no index by session. A turn's commit appends its rows at the end of `history`
//! (the same pages every other turn of the commit appends to) and changes one row of
//! `history_heads`, a table of some 50 bytes per session that stays in SQLite's cache. An index
//! by session and position instead took one leaf of its own per turn, at a place no other turn
//! of the commit touched, in a B-tree as large as the history itself: once that tree outgrew
//! the cache, every turn read a leaf back from the file, wrote it to the WAL and had the
//! checkpoint copy it again, and a turn cost more the longer the daemon ran
//! (docs/benchmarks.md, "History as a chain from its newest entry").
//!
//! Reading a history walks the chain back from its head, one rowid lookup per entry: a
//! session's rows are far apart in the file either way, so this reads the same pages the
//! index led to, without the index's own.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};

use crate::session::message::Entry;
use crate::store::sqlite::rows::{EntryRow, Outcome};

/// Appends `rows` to their sessions' histories, in order: per run of one session's rows, one
/// read of its head, the rows each linked to the one before, one write of the new head.
pub(super) fn insert_entries(conn: &Connection, rows: &[EntryRow]) -> Outcome<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut head = conn.prepare_cached("SELECT last FROM history_heads WHERE session_id = ?1")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO history (session_id, prev, id, source, role, created_at, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for run in rows.chunk_by(|a, b| a.session_id == b.session_id) {
        let session_id = &run[0].session_id;
        let known: Option<i64> = head
            .query_row(params![session_id], |row| row.get(0))
            .optional()?;
        let mut prev = known;
        for row in run {
            insert.execute(params![
                row.session_id,
                prev,
                row.id,
                row.source,
                row.role,
                row.created_at,
                row.message
            ])?;
            prev = Some(conn.last_insert_rowid());
        }
        let sql = if known.is_some() {
            "UPDATE history_heads SET last = ?2 WHERE session_id = ?1"
        } else {
            "INSERT INTO history_heads (session_id, last) VALUES (?1, ?2)"
        };
        conn.prepare_cached(sql)?
            .execute(params![session_id, prev])?;
    }
    Ok(())
}

/// `?1`'s rows as the table `chain (seq, prev)`, newest first. Each step must go to a smaller
/// `seq` of the same session, so a damaged link ends the walk instead of looping or wandering
/// into another session's rows. A step reads a row's first columns only.
const CHAIN: &str = "WITH RECURSIVE chain (seq, prev) AS (
        SELECT h.seq, h.prev FROM history_heads t JOIN history h ON h.seq = t.last
        WHERE t.session_id = ?1 AND h.session_id = ?1
        UNION ALL
        SELECT h.seq, h.prev FROM chain c JOIN history h ON h.seq = c.prev
        WHERE h.seq < c.seq AND h.session_id = ?1
    )";

/// `?1`'s rows, newest first, by `seq`. (No bound `LIMIT` here: SQLite would compile the
/// statement again for every new value.)
pub(super) static WALK: LazyLock<String> =
    LazyLock::new(|| format!("{CHAIN} SELECT seq FROM chain"));

/// One row, whole.
pub(super) const ROW: &str =
    "SELECT session_id, id, source, message, created_at FROM history WHERE seq = ?1";

/// Every row of `?1`'s history.
pub(super) static DELETE: LazyLock<String> =
    LazyLock::new(|| format!("{CHAIN} DELETE FROM history WHERE seq IN (SELECT seq FROM chain)"));

/// Hands `each` entries `offset..offset + limit` of a session's history, oldest first (a
/// negative `limit` means all), each with the length of its stored message text. The walk
/// picks the page's rows and only those are read whole, in one read transaction: a commit
/// meanwhile is either wholly seen or not at all. The walk costs one lookup per entry the
/// history holds, whatever the page (`limits.max_history_entries` bounds it).
pub(super) fn read_entries(
    conn: &Connection,
    session_id: &str,
    limit: i64,
    offset: i64,
    mut each: impl FnMut(Entry, usize),
) -> Outcome<()> {
    let snapshot = conn.unchecked_transaction()?;
    let mut newest_first = Vec::new();
    let mut walk = snapshot.prepare_cached(&WALK)?;
    for seq in walk.query_map(params![session_id], |row| row.get::<_, i64>(0))? {
        newest_first.push(seq?);
    }
    let skip = usize::try_from(offset).unwrap_or(0);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut row = snapshot.prepare_cached(ROW)?;
    for seq in newest_first.iter().rev().skip(skip).take(take) {
        let (entry, text_len) = row.query_row(params![seq], EntryRow::read_entry)??;
        each(entry, text_len);
    }
    Ok(())
}

/// Whether the session has any history row.
pub(super) fn has_history(conn: &Connection, session_id: &str) -> Outcome<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM history_heads WHERE session_id = ?1)")?
        .query_row(params![session_id], |row| row.get(0))?)
}

/// Deletes a session's history: every row of its chain, then its head.
pub(super) fn delete_history(conn: &Connection, session_id: &str) -> Outcome<()> {
    conn.prepare_cached(&DELETE)?.execute(params![session_id])?;
    conn.prepare_cached("DELETE FROM history_heads WHERE session_id = ?1")?
        .execute(params![session_id])?;
    Ok(())
}
