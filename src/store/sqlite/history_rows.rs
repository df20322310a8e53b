//! How a session's history lies in SQLite: rows appended to one table in commit order, each
//! pointing at the session's previous row (`prev`), and one row per session in
//! `history_heads` naming its newest row, written in batches (`heads.rs`).
//!
//! There is no index by session. A turn's commit appends its rows at the end of `history`
//! (the same pages every other turn of the commit appends to). An index by session and
//! position instead took one leaf of its own per turn, at a place no other turn of the commit
//! touched, in a B-tree as large as the history itself: once that tree outgrew the cache,
//! every turn read a leaf back from the file, wrote it to the WAL and had the checkpoint copy
//! it again, and a turn cost more the longer the daemon ran (docs/benchmarks.md, "History as
//! a chain from its newest entry").
//!
//! Reading a history walks the chain back from its head, one rowid lookup per entry: a
//! session's rows are far apart in the file either way, so this reads the same pages the
//! index led to, without the index's own. A whole history is read on the way, each row
//! looked up once.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};

use crate::session::message::Entry;
use crate::store::sqlite::heads::{PendingHeads, stored_head};
use crate::store::sqlite::rows::{EntryRow, Outcome};
use crate::store::sqlite::writer::Txn;

/// Appends `rows` to their sessions' histories, in order: per run of one session's rows, one
/// look-up of its head, the rows each linked to the one before, and the head moved (in
/// memory; `heads.rs` writes it to the table later).
pub(super) fn insert_entries(tx: &Txn<'_>, rows: &[EntryRow]) -> Outcome<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut heads = tx.heads();
    let mut insert = tx.prepare_cached(
        "INSERT INTO history (seq, session_id, prev, id, source, role, created_at, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for run in rows.chunk_by(|a, b| a.session_id() == b.session_id()) {
        let session_id = run[0].session_id();
        let mut prev = heads.head(tx, session_id)?;
        for row in run {
            let seq = heads.next_seq();
            insert.execute(params![
                seq,
                session_id,
                prev,
                row.entry.id.as_str(),
                row.source(),
                row.entry.message.role.as_str(),
                row.created_at,
                row.message()
            ])?;
            prev = Some(seq);
        }
        heads.stage(session_id, prev);
    }
    Ok(())
}

/// `?1`'s rows from its head `?2` as the table `chain (seq, prev)`, newest first. Each step
/// must go to a smaller `seq` of the same session, so a damaged link ends the walk instead of
/// looping or wandering into another session's rows. A step reads a row's first columns only.
const CHAIN: &str = "WITH RECURSIVE chain (seq, prev) AS (
        SELECT seq, prev FROM history h WHERE h.seq = ?2 AND h.session_id = ?1
        UNION ALL
        SELECT h.seq, h.prev FROM chain c JOIN history h ON h.seq = c.prev
        WHERE h.seq < c.seq AND h.session_id = ?1
    )";

/// The `seq` of the row before row `?1`, if row `?1` is one of session `?2`'s.
pub(super) const PREV: &str = "SELECT prev FROM history WHERE seq = ?1 AND session_id = ?2";

/// One row, whole.
pub(super) const ROW: &str =
    "SELECT session_id, id, source, message, created_at FROM history WHERE seq = ?1";

/// Row `?1`, whole, with the `seq` of the row before it, if it is one of session `?2`'s.
pub(super) const LINK: &str = "SELECT session_id, id, source, message, created_at, prev
    FROM history WHERE seq = ?1 AND session_id = ?2";

/// Every row of `?1`'s history.
pub(super) static DELETE: LazyLock<String> =
    LazyLock::new(|| format!("{CHAIN} DELETE FROM history WHERE seq IN (SELECT seq FROM chain)"));

/// Hands `each` entries `offset..offset + limit` of a session's history, oldest first (a
/// negative `limit` means all), each with the length of its stored message text, in one read
/// transaction: a commit meanwhile is either wholly seen or not at all.
///
/// The head is looked up in `pending` before the snapshot is taken, and in the table only
/// inside it: a head published before the look is committed, so the snapshot holds its row.
pub(super) fn read_entries(
    conn: &Connection,
    pending: &PendingHeads,
    session_id: &str,
    limit: i64,
    offset: i64,
    mut each: impl FnMut(Entry, usize),
) -> Outcome<()> {
    let pending_head = pending.get(session_id);
    let snapshot = conn.unchecked_transaction()?;
    let head = match pending_head {
        Some(head) => Some(head),
        None => stored_head(&snapshot, session_id)?,
    };
    let Some(head) = head else {
        return Ok(());
    };
    let skip = usize::try_from(offset).unwrap_or(0);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let entries = if skip == 0 && take == usize::MAX {
        read_whole(&snapshot, session_id, head)?
    } else {
        read_page(&snapshot, session_id, head, skip, take)?
    };
    for (entry, text_len) in entries {
        each(entry, text_len);
    }
    Ok(())
}

/// Every entry up to `head`, oldest first: one rowid lookup per entry, each row read
/// whole on the way. Each step must go to a smaller `seq` of the same session, as in
/// [`CHAIN`]. A loop of single lookups costs a fifth less per entry than the same walk as
/// a recursive statement, whose queue is a temporary B-tree each row passes through
/// (docs/benchmarks.md, "A mirror smaller than the sessions").
fn read_whole(conn: &Connection, session_id: &str, head: i64) -> Outcome<Vec<(Entry, usize)>> {
    let mut newest_first = Vec::new();
    let mut link = conn.prepare_cached(LINK)?;
    let mut next = Some(head);
    while let Some(seq) = next {
        let step = link
            .query_row(params![seq, session_id], |row| {
                Ok((row.get::<_, Option<i64>>(5)?, EntryRow::read_entry(row)?))
            })
            .optional()?;
        let Some((prev, entry)) = step else {
            break;
        };
        newest_first.push(entry?);
        next = prev.filter(|&prev| prev < seq);
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// Entries `skip..skip + take` counted from the oldest, oldest first: a walk over the rows'
/// links picks the page's rows and only those are read whole. The walk costs one lookup per
/// entry the history holds, whatever the page (`limits.max_history_entries` bounds it).
fn read_page(
    conn: &Connection,
    session_id: &str,
    head: i64,
    skip: usize,
    take: usize,
) -> Outcome<Vec<(Entry, usize)>> {
    let mut newest_first = Vec::new();
    let mut prev = conn.prepare_cached(PREV)?;
    let mut next = Some(head);
    while let Some(seq) = next {
        let step = prev
            .query_row(params![seq, session_id], |row| row.get::<_, Option<i64>>(0))
            .optional()?;
        let Some(before) = step else {
            break;
        };
        newest_first.push(seq);
        next = before.filter(|&before| before < seq);
    }
    let mut row = conn.prepare_cached(ROW)?;
    let mut page = Vec::new();
    for seq in newest_first.iter().rev().skip(skip).take(take) {
        page.push(row.query_row(params![seq], EntryRow::read_entry)??);
    }
    Ok(page)
}

/// Whether the session has any history row.
pub(super) fn has_history(tx: &Txn<'_>, session_id: &str) -> Outcome<bool> {
    Ok(tx.heads().head(tx, session_id)?.is_some())
}

/// Deletes a session's history: every row of its chain, then its head.
pub(super) fn delete_history(tx: &Txn<'_>, session_id: &str) -> Outcome<()> {
    let mut heads = tx.heads();
    let Some(head) = heads.head(tx, session_id)? else {
        return Ok(());
    };
    tx.prepare_cached(&DELETE)?
        .execute(params![session_id, head])?;
    tx.prepare_cached("DELETE FROM history_heads WHERE session_id = ?1")?
        .execute(params![session_id])?;
    heads.stage(session_id, None);
    Ok(())
}
