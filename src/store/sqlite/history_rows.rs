//! How a session's history lies in SQLite: rows appended to one table in commit order, each
//! the entries one commit appended for the session (`history_cells.rs`) and pointing at the
//! session's previous row (`prev`), and one row per session in `history_heads` naming its
//! newest row, written in batches (`heads.rs`).
//!
//! There is no index by session. A turn's commit appends its row at the end of `history`
//! (the same pages every other turn of the commit appends to). An index by session and
//! position instead took one leaf of its own per turn, at a place no other turn of the commit
//! touched, in a B-tree as large as the history itself: once that tree outgrew the cache,
//! every turn read a leaf back from the file, wrote it to the WAL and had the checkpoint copy
//! it again, and a turn cost more the longer the daemon ran (docs/benchmarks.md, "History as
//! a chain from its newest entry").
//!
//! Reading a history walks the chain back from its head: a session's rows are far apart in
//! the file either way, so this reads the same pages the index led to, without the index's
//! own: one seek per commit that wrote to the history, or a step back where the session's
//! previous row is the one just before (`seq` one apart). A whole history is read on the way,
//! each row once; a delete walks the same way ([`walk`] is the one place a chain is
//! followed).

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, params};

use crate::ids::Id;
use crate::session::StoredEntry;
use crate::store::sqlite::heads::{PendingHeads, stored_head};
use crate::store::sqlite::history_cells::{PackedRun, unpack};
use crate::store::sqlite::rows::Outcome;
use crate::store::sqlite::writer::Txn;

/// Appends `runs` to their sessions' histories, in order, one row each: per run, one look-up
/// of its session's head, the row linked to it, and the head moved (in memory; `heads.rs`
/// writes it to the table later).
pub(super) fn insert_entries(tx: &Txn<'_>, runs: &[PackedRun]) -> Outcome<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut heads = tx.heads();
    let mut insert = tx.prepare_cached(
        "INSERT INTO history (seq, session_id, prev, entries, entry_heads, messages)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for run in runs {
        let prev = heads.head(tx, &run.session_id)?;
        let seq = heads.next_seq();
        insert.execute(params![
            seq,
            run.session_id,
            prev,
            run.entries,
            run.entry_heads,
            run.messages
        ])?;
        heads.stage(run.session_id.clone(), Some(seq));
    }
    Ok(())
}

/// Rows from `?1` back, newest first, each with its `seq`, the `seq` of its session's row
/// before it, its session and how many entries it holds: one seek, then a step back per row.
/// [`walk`] takes a row only if it is the one the link names, and seeks again where a link
/// skips rows.
pub(super) const PREV: &str =
    "SELECT seq, prev, session_id, entries FROM history WHERE seq <= ?1 ORDER BY seq DESC";

/// [`PREV`] with each row's entries, from column [`CELLS_FROM`] on.
pub(super) const LINK: &str = "SELECT seq, prev, session_id, entry_heads, messages
    FROM history WHERE seq <= ?1 ORDER BY seq DESC";

/// Where a row's `entry_heads` and `messages` start in a row of [`LINK`].
const CELLS_FROM: usize = 3;

/// One row's entries (but its session, which the walk that found it checked).
pub(super) const ROW: &str = "SELECT entry_heads, messages FROM history WHERE seq = ?1";

/// One row, gone.
pub(super) const DELETE_ROW: &str = "DELETE FROM history WHERE seq = ?1";

/// Appends to `entries` those of the row `row` is at, its `entry_heads` and `messages` from
/// column `from` on.
fn read_cells(
    row: &Row<'_>,
    from: usize,
    session: &Id,
    own: bool,
    entries: &mut Vec<(StoredEntry, usize)>,
) -> rusqlite::Result<Outcome<()>> {
    let entry_heads = row.get_ref(from)?.as_str()?;
    let messages = row.get_ref(from + 1)?.as_str()?;
    Ok(unpack(entries, entry_heads, messages, session, own))
}

/// Entries `offset..offset + limit` of a session's history, oldest first (a negative `limit`
/// means all), each with the length of its stored message text, read in one read
/// transaction: a commit meanwhile is either wholly seen or not at all. A whole history's
/// entries from rows at or past `own_from` (the first `seq` this store wrote) come unparsed,
/// with their text.
///
/// The head is looked up in `pending` before the snapshot is taken, and in the table only
/// inside it: a head published before the look is committed, so the snapshot holds its row.
pub(super) fn read_entries(
    conn: &Connection,
    pending: &PendingHeads,
    session_id: &str,
    limit: i64,
    offset: i64,
    own_from: i64,
) -> Outcome<Vec<(StoredEntry, usize)>> {
    let pending_head = pending.get(session_id);
    let snapshot = conn.unchecked_transaction()?;
    let head = match pending_head {
        Some(head) => Some(head),
        None => stored_head(&snapshot, session_id)?,
    };
    let Some(head) = head else {
        return Ok(Vec::new());
    };
    let skip = usize::try_from(offset).unwrap_or(0);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    if skip == 0 && take == usize::MAX {
        read_whole(&snapshot, session_id, head, own_from)
    } else {
        read_page(&snapshot, session_id, head, skip, take)
    }
}

/// Follows `session_id`'s chain back from `head`: `sql` (one of [`PREV`] and [`LINK`]) lists
/// rows from a `seq` back, and `read` takes a value from each row of the chain. The walk
/// steps on while each link names the row just before, and seeks again where it skips.
///
/// Each step must go to a smaller `seq` of the same session, so a damaged link ends the walk
/// instead of looping or wandering into another session's rows; so does a link to a row that
/// is gone. The values come newest first; the first that fails to read ends the walk with its
/// failure.
///
/// A seek and a step back each cost less than the recursive statement this replaced, whose
/// queue is a temporary B-tree every row passes through, and a step back less than a seek
/// (docs/benchmarks.md, "A miss steps back within a commit").
fn walk<T>(
    conn: &Connection,
    sql: &str,
    session_id: &str,
    head: i64,
    mut read: impl FnMut(i64, &Row<'_>) -> rusqlite::Result<Outcome<T>>,
) -> Outcome<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut newest_first = Vec::new();
    let mut next = Some(head);
    'seek: while let Some(seek) = next {
        let mut rows = statement.query(params![seek])?;
        next = None;
        let mut wanted = seek;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let ours = matches!(row.get_ref(2)?, ValueRef::Text(id) if id == session_id.as_bytes());
            if seq != wanted || !ours {
                break 'seek;
            }
            newest_first.push(read(seq, row)??);
            let prev: Option<i64> = row.get(1)?;
            match prev.filter(|&prev| prev < seq) {
                Some(prev) if prev == seq - 1 => wanted = prev,
                prev => {
                    next = prev;
                    continue 'seek;
                }
            }
        }
    }
    Ok(newest_first)
}

/// The `seq` of every row of the chain from `head`, newest first, with how many entries it
/// holds.
fn chain_rows(conn: &Connection, session_id: &str, head: i64) -> Outcome<Vec<(i64, usize)>> {
    walk(conn, PREV, session_id, head, |seq, row| {
        let entries: i64 = row.get(3)?;
        Ok(Ok((seq, usize::try_from(entries).unwrap_or(0))))
    })
}

/// Every entry up to `head`, oldest first, each row read whole on the way; those of rows
/// at or past `own_from` unparsed, with their text.
fn read_whole(
    conn: &Connection,
    session_id: &str,
    head: i64,
    own_from: i64,
) -> Outcome<Vec<(StoredEntry, usize)>> {
    let session = Id::new(session_id);
    // Rows come newest first: each row's entries are laid out newest first too, and the whole
    // turned around at the end, so every entry is moved once into one vector.
    let mut entries = Vec::new();
    walk(conn, LINK, session_id, head, |seq, row| {
        let newer = entries.len();
        let read = read_cells(row, CELLS_FROM, &session, seq >= own_from, &mut entries)?;
        entries[newer..].reverse();
        Ok(read)
    })?;
    entries.reverse();
    Ok(entries)
}

/// Entries `skip..skip + take` counted from the oldest, oldest first: the walk counts the
/// entries of each row, and only the rows the page overlaps are read whole. The walk visits
/// every row the history holds, whatever the page (`limits.max_history_entries` bounds it).
fn read_page(
    conn: &Connection,
    session_id: &str,
    head: i64,
    skip: usize,
    take: usize,
) -> Outcome<Vec<(StoredEntry, usize)>> {
    let rows = chain_rows(conn, session_id, head)?;
    let session = Id::new(session_id);
    let mut read = conn.prepare_cached(ROW)?;
    let end = skip.saturating_add(take);
    let mut page = Vec::new();
    let mut first = 0;
    for (seq, count) in rows.into_iter().rev() {
        let (from, to) = (skip.max(first), end.min(first + count));
        if from < to {
            let mut entries = Vec::new();
            read.query_row(params![seq], |row| {
                read_cells(row, 0, &session, false, &mut entries)
            })??;
            page.extend(entries.into_iter().skip(from - first).take(to - from));
        }
        first += count;
        if first >= end {
            break;
        }
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
    for (seq, _) in chain_rows(tx, session_id, head)? {
        delete.execute(params![seq])?;
    }
    tx.prepare_cached("DELETE FROM history_heads WHERE session_id = ?1")?
        .execute(params![session_id])?;
    heads.stage(session_id, None);
    Ok(())
}
