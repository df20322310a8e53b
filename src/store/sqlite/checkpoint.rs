//! WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs inside the
//! commit that crosses the threshold, fsyncs there, and so stalls every write queued behind it
//! (milliseconds on a slow disk). The writer connection has it turned off; this thread runs a
//! passive checkpoint (it never blocks the writer or readers) every [`INTERVAL`].

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::store::sqlite::worker_thread::WorkerThread;

/// Time between checkpoints; the WAL holds at most about this much writing.
const INTERVAL: Duration = Duration::from_millis(500);

/// Handle to the checkpoint thread; dropping it stops the thread and waits for it.
pub(super) struct Checkpointer {
    _thread: WorkerThread<()>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(std::io::Error::other)?;
        // Nothing is ever sent: the channel closing (the handle dropped) is the stop signal.
        WorkerThread::spawn("agentd-store-checkpoint", move |stopped| {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                if let Err(error) = checkpoint(&conn) {
                    tracing::warn!(%error, "WAL checkpoint failed; retrying later");
                }
            }
        })
        .map(|thread| Self { _thread: thread })
    }
}

/// One passive checkpoint: copies what no reader still needs from the WAL into the database.
pub(super) fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
