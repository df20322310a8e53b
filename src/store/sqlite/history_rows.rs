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
//! looked up once; a delete walks the same way ([`walk`] is the one place a chain is
//! followed).

use rusqlite::{Connection, OptionalExtension, Row, params};

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

/// The `seq` of the row before row `?1`, if row `?1` is one of session `?2`'s.
pub(super) const PREV: &str = "SELECT prev FROM history WHERE seq = ?1 AND session_id = ?2";

/// Row `?1`, whole, with the `seq` of the row before it, if it is one of session `?2`'s.
pub(super) const LINK: &str = "SELECT session_id, id, source, message, created_at, prev
    FROM history WHERE seq = ?1 AND session_id = ?2";

/// One row, whole.
pub(super) const ROW: &str =
    "SELECT session_id, id, source, message, created_at FROM history WHERE seq = ?1";

/// One row, gone.
pub(super) const DELETE_ROW: &str = "DELETE FROM history WHERE seq = ?1";

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

/// Follows `session_id`'s chain back from `head`, one rowid lookup per row: `sql` (one of
/// [`PREV`] and [`LINK`]) finds row `seq` of the session, and `read` takes from it the `seq`
/// of the row before and a value. Each step must go to a smaller `seq` of the same session,
/// so a damaged link ends the walk instead of looping or wandering into another session's
/// rows. The values come newest first; the first that fails to read ends the walk with its
/// failure.
///
/// A loop of single lookups costs a fifth less per entry than the same walk as a recursive
/// statement, whose queue is a temporary B-tree each row passes through (docs/benchmarks.md,
/// "A mirror smaller than the sessions").
fn walk<T>(
    conn: &Connection,
    sql: &str,
    session_id: &str,
    head: i64,
    read: impl Fn(i64, &Row<'_>) -> rusqlite::Result<Outcome<(Option<i64>, T)>>,
) -> Outcome<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut newest_first = Vec::new();
    let mut next = Some(head);
    while let Some(seq) = next {
        let step = statement
            .query_row(params![seq, session_id], |row| read(seq, row))
            .optional()?;
        let Some(step) = step else {
            break;
        };
        let (prev, value) = step?;
        newest_first.push(value);
        next = prev.filter(|&prev| prev < seq);
    }
    Ok(newest_first)
}

/// The `seq` of every row of the chain from `head`, newest first.
fn chain_seqs(conn: &Connection, session_id: &str, head: i64) -> Outcome<Vec<i64>> {
    walk(conn, PREV, session_id, head, |seq, row| {
        Ok(Ok((row.get(0)?, seq)))
    })
}

/// Every entry up to `head`, oldest first, each row read whole on the way.
fn read_whole(conn: &Connection, session_id: &str, head: i64) -> Outcome<Vec<(Entry, usize)>> {
    let mut entries = walk(conn, LINK, session_id, head, |_, row| {
        let prev = row.get(5)?;
        Ok(EntryRow::read_entry(row)?.map(|entry| (prev, entry)))
    })?;
    entries.reverse();
    Ok(entries)
}

/// Entries `skip..skip + take` counted from the oldest, oldest first: the walk picks the
/// page's rows and only those are read whole. The walk costs one lookup per entry the history
/// holds, whatever the page (`limits.max_history_entries` bounds it).
fn read_page(
    conn: &Connection,
    session_id: &str,
    head: i64,
    skip: usize,
    take: usize,
) -> Outcome<Vec<(Entry, usize)>> {
    let seqs = chain_seqs(conn, session_id, head)?;
    let mut row = conn.prepare_cached(ROW)?;
    let mut page = Vec::new();
    for seq in seqs.iter().rev().skip(skip).take(take) {
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
    let mut delete = tx.prepare_cached(DELETE_ROW)?;
    for seq in chain_seqs(tx, session_id, head)? {
        delete.execute(params![seq])?;
    }
    tx.prepare_cached("DELETE FROM history_heads WHERE session_id = ?1")?
        .execute(params![session_id])?;
    heads.stage(session_id, None);
    Ok(())
}
