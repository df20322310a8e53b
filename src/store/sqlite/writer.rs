//! The store's one writing connection, on a thread of its own, with group commit.
//!
//! Every write is a job sent to this thread. The thread takes whatever jobs are waiting (up to
//! [`MAX_BATCH`]), runs each inside its own savepoint of one `BEGIN IMMEDIATE` transaction,
//! commits once, and only then tells each job how it ended. A job that fails is rolled back to
//! its savepoint without touching the others; a commit that fails fails every job of the batch,
//! and so does a savepoint that cannot be closed or a transaction SQLite rolled back by itself.
//! A job alone in its batch needs no savepoint: its failure rolls back the transaction.
//! Under load many turns share one commit (one WAL append, one lock round), and no write ever
//! waits on tokio's blocking pool. Between batches the thread writes the history heads its
//! commits moved once they are due ([`Heads`]), and restarts the WAL when asked to.

use std::cell::{RefCell, RefMut};
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::Connection;

use crate::store::sqlite::checkpoint::WalPressure;
use crate::store::sqlite::heads::Heads;
use crate::store::sqlite::rows::{Failure, Outcome};
use crate::store::sqlite::worker_thread::WorkerThread;

/// Jobs committed together at most.
const MAX_BATCH: usize = 256;

/// How a job ended inside the batch: `Err` carries why it was not written.
pub(super) type Settle = Box<dyn FnOnce(Result<(), &BatchError>) + Send>;

/// Why a job was not written although it ran (or never ran): the transaction step that failed
/// and SQLite's error, shared by every job it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step} failed: {source}")]
pub(super) struct BatchError {
    step: &'static str,
    #[source]
    source: Arc<rusqlite::Error>,
}

impl BatchError {
    fn new(step: &'static str, source: rusqlite::Error) -> Self {
        Self {
            step,
            source: Arc::new(source),
        }
    }

    /// The step, for the context of a store error; the SQLite error is its source.
    pub(super) fn into_parts(self) -> (&'static str, Arc<rusqlite::Error>) {
        (self.step, self.source)
    }
}

/// One write. `run` executes it inside the open transaction and says whether its changes stay
/// (false rolls it back to its savepoint); `abort` answers a job that never got to run.
pub(super) trait Job: Send {
    fn run(self: Box<Self>, tx: &Txn<'_>) -> (bool, Settle);
    fn abort(self: Box<Self>, reason: &BatchError);
}

/// The open transaction as a job sees it: the connection (it derefs to it), and the history
/// heads the transaction moves.
pub(super) struct Txn<'a> {
    conn: &'a Connection,
    heads: &'a RefCell<Heads>,
}

impl Txn<'_> {
    /// The heads as this transaction sees them; moved ones are published if it commits.
    pub(super) fn heads(&self) -> RefMut<'_, Heads> {
        self.heads.borrow_mut()
    }
}

impl Deref for Txn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// Handle to the writer thread. Dropping it lets queued jobs finish, then joins the thread, so
/// the connection is closed when the drop returns.
pub(super) struct Writer(WorkerThread<Box<dyn Job>>);

impl Writer {
    pub(super) fn start(
        conn: Connection,
        heads: Heads,
        pressure: Arc<WalPressure>,
    ) -> std::io::Result<Self> {
        WorkerThread::spawn("agentd-store-writer", move |queue| {
            let heads = RefCell::new(heads);
            let tx = Txn {
                conn: &conn,
                heads: &heads,
            };
            run(&tx, &queue, &pressure);
            flush_heads(&tx);
        })
        .map(Self)
    }

    /// Queues a job; gives it back if the thread is gone.
    pub(super) fn submit(&self, job: Box<dyn Job>) -> Result<(), Box<dyn Job>> {
        self.0.send(job)
    }
}

fn run(tx: &Txn<'_>, queue: &mpsc::Receiver<Box<dyn Job>>, pressure: &WalPressure) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let due_in = tx.heads().flush_due_in();
        let first = match due_in {
            None => queue
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(wait) => queue.recv_timeout(wait),
        };
        match first {
            Ok(job) => batch.push(job),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                flush_heads(tx);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(tx, &mut batch);
        if tx.heads().flush_due_in() == Some(Duration::ZERO) {
            flush_heads(tx);
        }
        pressure.relieve(tx);
    }
}

/// Writes the pending heads; a failure leaves them pending, to be tried again later.
fn flush_heads(tx: &Txn<'_>) {
    if let Err(failure) = tx.heads().flush(tx) {
        tracing::warn!(
            error = %failure.into_store_error("writing history heads"),
            "history heads stay in memory; retrying later"
        );
    }
}

fn commit_batch(tx: &Txn<'_>, batch: &mut Vec<Box<dyn Job>>) {
    if let Err(e) = exec(tx, "BEGIN IMMEDIATE") {
        let reason = BatchError::new("beginning a transaction", e);
        for job in batch.drain(..) {
            job.abort(&reason);
        }
        return;
    }
    if batch.len() == 1 {
        let job = batch.pop().expect("a batch of one");
        return commit_alone(tx, job);
    }
    let mut settles = Vec::with_capacity(batch.len());
    let mut jobs = batch.drain(..);
    let ended = loop {
        let Some(job) = jobs.next() else {
            break commit(tx);
        };
        let (settle, broken) = run_in_savepoint(tx, job);
        settles.push(settle);
        // SQLite may roll the whole transaction back by itself (an I/O error, a full disk):
        // a later savepoint would then start a transaction of its own.
        let gone = || {
            tx.is_autocommit()
                .then(|| BatchError::new("running a job", transaction_gone()))
        };
        if let Some(reason) = broken.or_else(gone) {
            jobs.by_ref().for_each(|job| job.abort(&reason));
            break abandon(tx, reason);
        }
    };
    settle_all(settles, ended);
}

/// Gives up a transaction that can no longer be trusted: whatever is left of it is rolled
/// back and every job of the batch hears `reason`.
fn abandon(tx: &Txn<'_>, reason: BatchError) -> Result<(), BatchError> {
    tx.heads().discard();
    if !tx.is_autocommit() {
        let _ = exec(tx, "ROLLBACK");
    }
    Err(reason)
}

/// A job alone in its batch runs without a savepoint: rolling back the transaction undoes
/// exactly its changes, and SQLite writes no statement journal for it. With one turn at a
/// time, every write takes this path.
fn commit_alone(tx: &Txn<'_>, job: Box<dyn Job>) {
    let (keep, settle) = run_guarded(tx, job);
    let ended = if keep {
        commit(tx)
    } else {
        tx.heads().discard();
        exec(tx, "ROLLBACK").map_err(|e| BatchError::new("rollback", e))
    };
    settle_all([settle], ended);
}

/// Commits and, before any job hears of it, publishes the heads the transaction moved.
fn commit(tx: &Txn<'_>) -> Result<(), BatchError> {
    match exec(tx, "COMMIT") {
        Ok(()) => {
            tx.heads().publish();
            Ok(())
        }
        Err(e) => abandon(tx, BatchError::new("commit", e)),
    }
}

/// Tells every job of the batch how the transaction ended.
fn settle_all(settles: impl IntoIterator<Item = Settle>, ended: Result<(), BatchError>) {
    for settle in settles {
        let outcome = ended.as_ref().map(|_| ());
        if panic::catch_unwind(AssertUnwindSafe(|| settle(outcome))).is_err() {
            tracing::error!("settling a store write panicked");
        }
    }
}

/// Runs a job in a savepoint of the batch's transaction; with an error when the savepoint could
/// not be closed. The batch then fails as a whole, as it does when SQLite rolled the
/// transaction back: no job's rows are committed while another's heads are dropped, or the
/// other way round.
fn run_in_savepoint(tx: &Txn<'_>, job: Box<dyn Job>) -> (Settle, Option<BatchError>) {
    if let Err(e) = exec(tx, "SAVEPOINT job") {
        let reason = BatchError::new("opening a savepoint", e);
        return (Box::new(move |_| job.abort(&reason)), None);
    }
    let mark = tx.heads().savepoint();
    let (keep, settle) = run_guarded(tx, job);
    let closed = if keep {
        exec(tx, "RELEASE job")
    } else {
        tx.heads().roll_back_to(mark);
        exec(tx, "ROLLBACK TO job").and_then(|()| exec(tx, "RELEASE job"))
    };
    let broken = closed
        .err()
        .map(|e| BatchError::new("closing a savepoint", e));
    (settle, broken)
}

/// SQLite's error for a transaction it rolled back by itself.
fn transaction_gone() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("SQLite rolled the transaction back".to_owned()),
    )
}

/// Runs a job; a panicking one is reported as failed (its changes are to be rolled back) and
/// only its caller hears of it (its reply is dropped): the thread and the other jobs go on.
fn run_guarded(tx: &Txn<'_>, job: Box<dyn Job>) -> (bool, Settle) {
    match panic::catch_unwind(AssertUnwindSafe(|| job.run(tx))) {
        Ok(ran) => ran,
        Err(_) => {
            tracing::error!("a store write panicked; it was rolled back");
            let nothing: Settle = Box::new(|_: Result<(), &BatchError>| {});
            (false, nothing)
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// A write whose outcome goes to `reply` once the batch is committed. `after_commit` runs on
/// the writer thread, in commit order, only for work that is durable.
pub(super) struct Write<W, A, T> {
    pub work: W,
    pub after_commit: A,
    pub reply: tokio::sync::oneshot::Sender<Outcome<T>>,
}

impl<W, A, T> Job for Write<W, A, T>
where
    W: FnOnce(&Txn<'_>) -> Outcome<T> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, tx: &Txn<'_>) -> (bool, Settle) {
        let Write {
            work,
            after_commit,
            reply,
        } = *self;
        let outcome = work(tx);
        let keep = outcome.is_ok();
        let settle: Settle = Box::new(move |committed| {
            let outcome = match (outcome, committed) {
                (Ok(value), Ok(())) => {
                    after_commit(&value);
                    Ok(value)
                }
                (Ok(_), Err(reason)) => Err(Failure::Batch(reason.clone())),
                (Err(failure), _) => Err(failure),
            };
            let _ = reply.send(outcome);
        });
        (keep, settle)
    }

    fn abort(self: Box<Self>, reason: &BatchError) {
        let _ = self.reply.send(Err(Failure::Batch(reason.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::heads::PendingHeads;

    fn write<T: Send + 'static>(
        writer: &Writer,
        work: impl FnOnce(&Txn<'_>) -> Outcome<T> + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<Outcome<T>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(Write {
            work,
            after_commit: |_: &T| {},
            reply,
        });
        assert!(writer.submit(job).is_ok(), "writer accepts jobs");
        answer
    }

    /// A writer on `conn` that never flushes heads by time, and the heads it publishes.
    fn start_on(conn: Connection) -> (Writer, Arc<PendingHeads>) {
        let pending = Arc::new(PendingHeads::default());
        let heads = Heads::new(Arc::clone(&pending), 1, Duration::MAX);
        let writer = Writer::start(conn, heads, Arc::default()).expect("start");
        (writer, pending)
    }

    /// A writer on an in-memory database with one table, `t (n INTEGER)`.
    fn writer_on_table_t() -> Writer {
        writer_with_heads().0
    }

    /// A writer on `t` whose published heads the test can see.
    fn writer_with_heads() -> (Writer, Arc<PendingHeads>) {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (n INTEGER)")
            .expect("schema");
        start_on(conn)
    }

    /// Occupies the writer thread with a job until the returned sender is used, so the jobs
    /// queued meanwhile run together in the next batch, each in a savepoint.
    fn hold(writer: &Writer) -> std::sync::mpsc::Sender<()> {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (running, started) = std::sync::mpsc::channel::<()>();
        // Its answer is of no interest: the receiver is dropped.
        drop(write(writer, move |_| {
            running.send(()).ok();
            held.recv().ok();
            Ok(())
        }));
        started.recv().expect("the holding job runs");
        release
    }

    /// A job inserting `n` into `t` and moving `session`'s head to `n`.
    fn insert_and_move(
        writer: &Writer,
        session: &'static str,
        n: i64,
        fail: bool,
    ) -> tokio::sync::oneshot::Receiver<Outcome<()>> {
        write(writer, move |tx| {
            tx.execute("INSERT INTO t VALUES (?1)", [n])?;
            tx.heads().stage(session, Some(n));
            if fail {
                return Err(Failure::Invalid("refused after moving a head".into()));
            }
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_job_rolled_back_in_a_batch_publishes_no_head_and_the_others_do() {
        let (writer, pending) = writer_with_heads();
        let release = hold(&writer);
        let kept = insert_and_move(&writer, "a", 1, false);
        let failed = insert_and_move(&writer, "a", 2, true);
        let failed_too = insert_and_move(&writer, "b", 3, true);
        let after = insert_and_move(&writer, "c", 4, false);
        release.send(()).expect("release");
        assert!(matches!(kept.await, Ok(Ok(()))));
        assert!(matches!(failed.await, Ok(Err(Failure::Invalid(_)))));
        assert!(matches!(failed_too.await, Ok(Err(Failure::Invalid(_)))));
        assert!(matches!(after.await, Ok(Ok(()))));
        assert_eq!(rows_of_t(&writer).await, vec![1, 4]);
        assert_eq!(
            pending.get("a"),
            Some(1),
            "the failed job's move was undone"
        );
        assert_eq!(pending.get("b"), None);
        assert_eq!(pending.get("c"), Some(4));
    }

    #[tokio::test]
    async fn a_savepoint_that_cannot_be_closed_fails_the_whole_batch() {
        let (writer, pending) = writer_with_heads();
        let release = hold(&writer);
        let before = insert_and_move(&writer, "a", 1, false);
        // Releasing the writer's savepoint itself leaves the writer nothing to close.
        let breaking = write(&writer, |tx| {
            tx.execute("INSERT INTO t VALUES (2)", [])?;
            tx.execute_batch("RELEASE job")?;
            Ok(())
        });
        let after = insert_and_move(&writer, "c", 3, false);
        release.send(()).expect("release");
        for answer in [before, breaking, after] {
            let outcome = answer.await.expect("reply");
            assert!(matches!(outcome, Err(Failure::Batch(_))), "{outcome:?}");
        }
        assert!(
            rows_of_t(&writer).await.is_empty(),
            "nothing of the batch stays"
        );
        assert_eq!(pending.get("a"), None);
        assert_eq!(pending.get("c"), None);
    }

    /// What `t` holds, in order, read through the writer.
    async fn rows_of_t(writer: &Writer) -> Vec<i64> {
        let rows = write(writer, |c| {
            let mut rows = c.prepare("SELECT n FROM t ORDER BY n")?;
            let ns = rows
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ns)
        });
        rows.await.expect("reply").expect("read")
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let writer = writer_on_table_t();
        let before = write(&writer, |c| {
            c.execute("INSERT INTO t VALUES (1)", [])?;
            Ok(())
        });
        let panicking = write(&writer, |c| -> Outcome<()> {
            c.execute("INSERT INTO t VALUES (2)", [])?;
            panic!("a bug in a write");
        });
        let after = write(&writer, |c| {
            c.execute("INSERT INTO t VALUES (3)", [])?;
            Ok(())
        });
        assert!(matches!(before.await, Ok(Ok(()))));
        assert!(
            panicking.await.is_err(),
            "the caller of the panicking write hears of it"
        );
        assert!(matches!(after.await, Ok(Ok(()))));
        assert_eq!(rows_of_t(&writer).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_lone_job_that_fails_or_panics_leaves_nothing_behind() {
        let writer = writer_on_table_t();
        // Each job is awaited before the next is sent, so each is alone in its batch.
        let failing = write(&writer, |c| -> Outcome<()> {
            c.execute("INSERT INTO t VALUES (1)", [])?;
            Err(Failure::Invalid("refused after writing".into()))
        });
        assert!(matches!(failing.await, Ok(Err(Failure::Invalid(_)))));
        let panicking = write(&writer, |c| -> Outcome<()> {
            c.execute("INSERT INTO t VALUES (2)", [])?;
            panic!("a bug in a write");
        });
        assert!(panicking.await.is_err());
        let kept = write(&writer, |c| {
            c.execute("INSERT INTO t VALUES (3)", [])?;
            Ok(())
        });
        assert!(matches!(kept.await, Ok(Ok(()))));
        assert_eq!(rows_of_t(&writer).await, vec![3]);
    }

    #[tokio::test]
    async fn a_commit_that_fails_keeps_sqlites_error_as_the_source() {
        let conn = Connection::open_in_memory().expect("open");
        // A deferred foreign key is checked at COMMIT: the write runs, the commit refuses it.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .expect("schema");
        let (writer, _) = start_on(conn);
        let orphan = write(&writer, |c| {
            c.execute("INSERT INTO child VALUES (7)", [])?;
            Ok(())
        });
        let failure = orphan
            .await
            .expect("reply")
            .expect_err("the commit refuses it");
        assert!(matches!(failure, Failure::Batch(_)), "{failure:?}");
        let error = failure.into_store_error("write");
        assert!(
            error.to_string().contains("sqlite write: commit"),
            "{error}"
        );
        let source = std::error::Error::source(&error).expect("a source");
        let sqlite = source
            .downcast_ref::<Arc<rusqlite::Error>>()
            .expect("SQLite's own error");
        assert_eq!(
            sqlite.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
    }
}
