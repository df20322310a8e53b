//! Where each session's history ends (the `seq` of its newest row) between two writes of
//! `history_heads`.
//!
//! Every turn moves its session's head. Written with the turn, each turn of a group commit
//! rewrote a page of `history_heads` of its own as soon as the sessions taking turns spread
//! over more pages than a commit has turns: at 20,000 sessions about three times the WAL
//! frames per commit, and on a small file the one page of heads rewritten by every commit
//! (docs/benchmarks.md, "Heads written in batches"). So the writer thread keeps the heads its
//! commits moved in memory and writes them to `history_heads` together, in key order (each
//! page once), [`FLUSH_INTERVAL`] after the first of them, as soon as [`MAX_PENDING`]
//! sessions' heads wait, and when the store closes.
//!
//! - A transaction's moves are staged on the writer thread ([`Heads::stage`]): a savepoint
//!   rolled back undoes its own, a transaction rolled back drops them all. A committed
//!   transaction publishes them ([`PendingHeads`]) before any of its writers hears back, so a
//!   reader that looks there first, and in the table only after that (inside its snapshot),
//!   finds the head of every write that has finished.
//! - Once written, heads stay known to the writer ([`MAX_WRITTEN`] at most), so the next turn
//!   of a session whose head was flushed since its last one finds it without a read of
//!   `history_heads`: with more sessions taking turns than a second of turns covers, that
//!   read was one indexed look-up per turn on the writer thread.
//! - `history_flushed.upto` is the last `seq` handed out when the heads were written. Rows
//!   get their `seq` from the writer ([`Heads::next_seq`]), always past `upto`, so after a
//!   crash the rows past `upto` are the only ones whose heads the table may lack; opening
//!   reads them back ([`Heads::open`]). How long that takes is bounded by what a flush waits
//!   for: [`MAX_PENDING`] sessions or [`FLUSH_INTERVAL`] of turns.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::ids::{Id, IdMap};
use crate::store::sqlite::rows::Outcome;

/// How long a moved head waits in memory at most before it is written to the table.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Sessions whose heads may wait: once this many do, the writer flushes after its current
/// batch. Bounds the memory waiting heads take (some 100 bytes each, plus at most a batch's
/// worth more) and the rows opening reads after a crash.
pub(super) const MAX_PENDING: usize = 16_384;

/// Written heads the writer remembers: some 64 bytes each, 4 MiB at most. Past this many they
/// are all forgotten at once (a session's head is then read from the table once more), so
/// keeping them costs O(1) per flushed head whatever the number of sessions.
pub(super) const MAX_WRITTEN: usize = 65_536;

/// Heads moved by committed writes and not yet in `history_heads`. The writer thread alone
/// changes it; readers look a session up here before they read the table.
#[derive(Debug, Default)]
pub(super) struct PendingHeads(Mutex<IdMap<Id, i64>>);

impl PendingHeads {
    /// The session's head if a committed write moved it since the last flush.
    pub(super) fn get(&self, session_id: &str) -> Option<i64> {
        self.lock().get(session_id.as_bytes()).copied()
    }

    fn lock(&self) -> MutexGuard<'_, IdMap<Id, i64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The head `history_heads` names, for a session [`PendingHeads`] had none of. Read inside the
/// reader's snapshot, after the look at the pending heads.
pub(super) fn stored_head(conn: &Connection, session_id: &str) -> Outcome<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT last FROM history_heads WHERE session_id = ?1")?
        .query_row(params![session_id], |row| row.get(0))
        .optional()?)
}

/// The writer thread's heads: the published ones, the open transaction's and the next `seq`.
#[derive(Debug)]
pub(super) struct Heads {
    pending: Arc<PendingHeads>,
    /// When the oldest pending head was published.
    waiting_since: Option<Instant>,
    /// After a failed flush, when to try again (however many heads wait).
    retry_at: Option<Instant>,
    /// The open transaction's heads (`None`: its history was deleted).
    staged: IdMap<Id, Option<i64>>,
    /// What each staging replaced in `staged`, newest last, to undo a savepoint.
    undo: Vec<(Id, Option<Option<i64>>)>,
    /// Heads as `history_heads` holds them, of sessions whose heads this writer wrote.
    written: IdMap<Id, i64>,
    next_seq: i64,
    /// [`FLUSH_INTERVAL`], but for tests.
    flush_interval: Duration,
}

impl Heads {
    /// Heads of a file whose table holds them all, with rows from `next_seq` on.
    pub(super) fn new(pending: Arc<PendingHeads>, next_seq: i64, flush_interval: Duration) -> Self {
        Self {
            pending,
            waiting_since: None,
            retry_at: None,
            staged: IdMap::default(),
            undo: Vec::new(),
            written: IdMap::default(),
            next_seq,
            flush_interval,
        }
    }

    /// Picks up after the last writer: the heads of rows past `history_flushed.upto` (a crash
    /// left them out of the table) are written to it before anything else.
    pub(super) fn open(
        conn: &Connection,
        pending: Arc<PendingHeads>,
        flush_interval: Duration,
    ) -> Outcome<Self> {
        let upto: i64 = conn.query_row("SELECT upto FROM history_flushed", [], |row| row.get(0))?;
        let last: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM history", [], |row| {
            row.get(0)
        })?;
        let mut heads = Self::new(pending, upto.max(last) + 1, flush_interval);
        if last > upto {
            let mut newer = conn.prepare("SELECT seq, session_id FROM history WHERE seq > ?1")?;
            let mut recovered = heads.pending.lock();
            for row in newer.query_map(params![upto], |row| Ok((row.get(0)?, row.get(1)?)))? {
                let (seq, session_id): (i64, String) = row?;
                let head = recovered.entry(Id::new(&session_id)).or_insert(seq);
                *head = seq.max(*head);
            }
            drop(recovered);
            heads.flush(conn)?;
        }
        Ok(heads)
    }

    /// The session's head as the open transaction sees it.
    pub(super) fn head(&self, conn: &Connection, session_id: &str) -> Outcome<Option<i64>> {
        if let Some(staged) = self.staged.get(session_id.as_bytes()) {
            return Ok(*staged);
        }
        if let Some(pending) = self.pending.get(session_id) {
            return Ok(Some(pending));
        }
        if let Some(written) = self.written.get(session_id.as_bytes()) {
            return Ok(Some(*written));
        }
        stored_head(conn, session_id)
    }

    /// The `seq` [`Heads::next_seq`] hands out next.
    pub(super) fn upcoming_seq(&self) -> i64 {
        self.next_seq
    }

    /// A `seq` for a new row: past every `seq` handed out since the file was opened and past
    /// `history_flushed.upto`.
    pub(super) fn next_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Moves the session's head in the open transaction (`None`: its history is gone; the
    /// transaction deletes its row of `history_heads` itself).
    pub(super) fn stage(&mut self, session_id: impl Into<Id>, head: Option<i64>) {
        let session_id = session_id.into();
        let before = self.staged.insert(session_id.clone(), head);
        self.undo.push((session_id, before));
    }

    /// A mark to undo the stagings after it.
    pub(super) fn savepoint(&self) -> usize {
        self.undo.len()
    }

    /// Undoes the stagings since `mark`, as its savepoint was rolled back.
    pub(super) fn roll_back_to(&mut self, mark: usize) {
        for (session_id, before) in self.undo.drain(mark..).rev() {
            match before {
                Some(head) => self.staged.insert(session_id, head),
                None => self.staged.remove(&session_id),
            };
        }
    }

    /// The transaction was rolled back: its stagings go with it.
    pub(super) fn discard(&mut self) {
        self.staged.clear();
        self.undo.clear();
    }

    /// The transaction committed: its heads become what readers find.
    pub(super) fn publish(&mut self) {
        self.undo.clear();
        if self.staged.is_empty() {
            return;
        }
        let mut pending = self.pending.lock();
        for (session_id, head) in self.staged.drain() {
            match head {
                Some(head) => pending.insert(session_id, head),
                None => {
                    self.written.remove(&session_id);
                    pending.remove(&session_id)
                }
            };
        }
        if !pending.is_empty() {
            self.waiting_since.get_or_insert_with(Instant::now);
        }
    }

    /// How long until the pending heads are to be written: `None` while none wait.
    pub(super) fn flush_due_in(&self) -> Option<Duration> {
        let since = self.waiting_since?;
        if let Some(retry_at) = self.retry_at {
            return Some(retry_at.saturating_duration_since(Instant::now()));
        }
        if self.pending.lock().len() >= MAX_PENDING {
            return Some(Duration::ZERO);
        }
        Some(self.flush_interval.saturating_sub(since.elapsed()))
    }

    /// Writes the pending heads, if any, to `history_heads`, in key order, in a transaction
    /// of their own (none may be open). A failure keeps them pending and waits the flush
    /// interval before the next attempt.
    pub(super) fn flush(&mut self, conn: &Connection) -> Outcome<()> {
        let mut moved: Vec<(Id, i64)> = {
            let pending = self.pending.lock();
            pending.iter().map(|(s, head)| (s.clone(), *head)).collect()
        };
        if moved.is_empty() {
            (self.waiting_since, self.retry_at) = (None, None);
            return Ok(());
        }
        moved.sort_unstable();
        let written = write_heads(conn, &moved, self.next_seq - 1);
        if written.is_err() {
            self.retry_at = Some(Instant::now() + self.flush_interval);
            return written;
        }
        self.pending.lock().clear();
        if self.written.len() + moved.len() > MAX_WRITTEN {
            self.written.clear();
        }
        self.written.extend(moved);
        (self.waiting_since, self.retry_at) = (None, None);
        Ok(())
    }
}

/// One transaction: each head written, then `upto` moved to `last_seq`.
fn write_heads(conn: &Connection, heads: &[(Id, i64)], last_seq: i64) -> Outcome<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let written = (|| -> Outcome<()> {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO history_heads (session_id, last) VALUES (?1, ?2)
             ON CONFLICT (session_id) DO UPDATE SET last = excluded.last",
        )?;
        for (session_id, head) in heads {
            upsert.execute(params![session_id.as_str(), head])?;
        }
        conn.prepare_cached("UPDATE history_flushed SET upto = ?1")?
            .execute(params![last_seq])?;
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if written.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads_on_empty_table() -> (Connection, Heads) {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE history_heads (session_id TEXT PRIMARY KEY, last INTEGER NOT NULL);
             CREATE TABLE history_flushed (upto INTEGER NOT NULL);
             INSERT INTO history_flushed VALUES (0);",
        )
        .expect("schema");
        (conn, Heads::new(Arc::default(), 1, Duration::MAX))
    }

    #[test]
    fn a_savepoint_rolled_back_undoes_only_its_own_stagings() {
        let (conn, mut heads) = heads_on_empty_table();
        heads.stage("a", Some(1));
        let mark = heads.savepoint();
        heads.stage("a", Some(2));
        heads.stage("b", Some(3));
        heads.stage("a", None);
        heads.roll_back_to(mark);
        assert_eq!(heads.head(&conn, "a").expect("a"), Some(1));
        assert_eq!(heads.head(&conn, "b").expect("b"), None);
        assert_eq!(
            heads.pending.get("a"),
            None,
            "nothing is published before the commit"
        );
        heads.publish();
        assert_eq!(heads.pending.get("a"), Some(1));
        assert_eq!(heads.pending.get("b"), None);
    }

    #[test]
    fn a_transaction_rolled_back_publishes_nothing_and_a_deletion_unpublishes() {
        let (conn, mut heads) = heads_on_empty_table();
        heads.stage("a", Some(1));
        heads.publish();
        heads.stage("a", Some(2));
        heads.discard();
        assert_eq!(heads.head(&conn, "a").expect("a"), Some(1));
        heads.stage("a", None);
        heads.publish();
        assert_eq!(heads.pending.get("a"), None);
        assert_eq!(heads.head(&conn, "a").expect("a"), None);
    }

    #[test]
    fn a_flush_writes_the_published_heads_and_moves_the_mark() {
        let (conn, mut heads) = heads_on_empty_table();
        assert_eq!(heads.flush_due_in(), None, "nothing waits");
        for session in ["b", "a"] {
            let seq = heads.next_seq();
            heads.stage(session, Some(seq));
        }
        heads.publish();
        assert!(heads.flush_due_in().is_some());
        heads.flush(&conn).expect("flush");
        assert_eq!(heads.flush_due_in(), None);
        assert_eq!(heads.pending.get("a"), None);
        assert_eq!(stored_head(&conn, "b").expect("b"), Some(1));
        assert_eq!(heads.head(&conn, "a").expect("a"), Some(2));
        let upto: i64 = conn
            .query_row("SELECT upto FROM history_flushed", [], |row| row.get(0))
            .expect("upto");
        assert_eq!(upto, 2);
    }

    #[test]
    fn a_written_head_is_found_without_the_table_until_its_history_is_deleted() {
        let (conn, mut heads) = heads_on_empty_table();
        heads.stage("a", Some(1));
        heads.publish();
        heads.flush(&conn).expect("flush");
        assert_eq!(stored_head(&conn, "a").expect("a"), Some(1));
        conn.execute_batch("DELETE FROM history_heads")
            .expect("empty the table");
        assert_eq!(heads.head(&conn, "a").expect("a"), Some(1), "from memory");
        heads.stage("a", None);
        heads.discard();
        assert_eq!(heads.head(&conn, "a").expect("a"), Some(1), "not committed");
        heads.stage("a", None);
        heads.publish();
        assert_eq!(heads.head(&conn, "a").expect("a"), None);
    }

    #[test]
    fn written_heads_are_forgotten_together_past_the_bound_and_read_from_the_table() {
        let (conn, mut heads) = heads_on_empty_table();
        for n in 0..MAX_WRITTEN {
            heads.stage(format!("s{n}"), Some(n as i64 + 1));
        }
        heads.publish();
        heads.flush(&conn).expect("flush");
        assert_eq!(heads.written.len(), MAX_WRITTEN);
        heads.stage("new", Some(0));
        heads.publish();
        heads.flush(&conn).expect("flush");
        assert_eq!(
            heads.written.len(),
            1,
            "{:?}",
            heads.written.get("s0".as_bytes())
        );
        assert_eq!(heads.head(&conn, "s0").expect("s0"), Some(1));
        assert_eq!(heads.head(&conn, "new").expect("new"), Some(0));
    }
}
