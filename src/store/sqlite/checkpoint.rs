//! WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs inside the
//! commit that crosses the threshold, fsyncs there, and so stalls every write queued behind it
//! (milliseconds on a slow disk). The writer connection has it turned off; this thread runs a
//! passive checkpoint (it never blocks the writer or readers) every [`INTERVAL`].
//!
//! Passive checkpoints alone do not bound the WAL under continuous writes: SQLite starts the
//! file over only when a write begins with every frame copied back, and a writer that never
//! pauses always has frames the last checkpoint did not see. So once the WAL holds more than
//! [`RESTART_FRAMES`], this thread raises [`WalPressure`] and the writer thread, between two
//! commits, runs a RESTART checkpoint on its own connection (another connection would wait for
//! a writer that never pauses): it copies the few frames the passive checkpoints left (they
//! run every half second), waits for readers to move off the WAL, and the next commit starts
//! the file over (cut back to `journal_size_limit`). Writes wait only for that last copy, once
//! per 64 MiB written.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Set when the WAL has grown past [`RESTART_FRAMES`]; the writer restarts it between commits.
#[derive(Debug, Default)]
pub(super) struct WalPressure(AtomicBool);

impl WalPressure {
    /// Restarts the WAL on the writer's connection if the checkpoint thread asked for it.
    pub(super) fn relieve(&self, writer: &Connection) {
        if self.0.swap(false, Ordering::Relaxed)
            && let Err(error) = run(writer, "RESTART")
        {
            tracing::warn!(%error, "restarting the WAL failed; retrying after the next checkpoint");
        }
    }
}

impl Checkpointer {
    pub(super) fn start(path: &Path, pressure: Arc<WalPressure>) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(std::io::Error::other)?;
        // Nothing is ever sent: the channel closing (the handle dropped) is the stop signal.
        WorkerThread::spawn("agentd-store-checkpoint", move |stopped| {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                if let Err(error) = checkpoint_past(&conn, RESTART_FRAMES, &pressure) {
                    tracing::warn!(%error, "WAL checkpoint failed; retrying later");
                }
            }
        })
        .map(|thread| Self { _thread: thread })
    }
}

/// Frames (pages) the WAL may hold before a checkpoint makes the next write start it over:
/// 16,384 pages of 4 KiB, 64 MiB.
const RESTART_FRAMES: i64 = 16_384;

/// One passive checkpoint: copies what no reader still needs from the WAL into the database;
/// past `restart_frames` in the WAL, asks the writer to start it over.
fn checkpoint_past(
    conn: &Connection,
    restart_frames: i64,
    pressure: &WalPressure,
) -> rusqlite::Result<()> {
    if run(conn, "PASSIVE")? > restart_frames {
        pressure.0.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs a checkpoint of `mode` and returns the frames in the WAL when it ran.
fn run(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicU64;

    /// A writer that never pauses, relieving the pressure between commits as the store's writer
    /// does, and checkpoints every 20 ms asking for a restart past 64 frames: the WAL file
    /// stays a small fraction of what was written through it.
    #[test]
    fn continuous_writes_do_not_grow_the_wal_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.busy_timeout(Duration::from_secs(5)).unwrap();
        writer
            .execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)", [])
            .unwrap();
        let checkpointer = Connection::open(&path).unwrap();
        checkpointer.busy_timeout(Duration::from_secs(5)).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let pressure = Arc::new(WalPressure::default());
        let writing = {
            let (stop, written, pressure) = (stop.clone(), written.clone(), pressure.clone());
            std::thread::spawn(move || {
                let body = vec![7u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    writer
                        .execute("INSERT INTO t (body) VALUES (?1)", [&body])
                        .unwrap();
                    written.fetch_add(body.len() as u64, Ordering::Relaxed);
                    pressure.relieve(&writer);
                }
            })
        };
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(20));
            checkpoint_past(&checkpointer, 64, &pressure).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        writing.join().unwrap();

        let written = written.load(Ordering::Relaxed);
        let wal = std::fs::metadata(dir.path().join("wal.db-wal"))
            .unwrap()
            .len();
        assert!(written > 1 << 20, "the writer wrote {written} bytes");
        assert!(
            wal < written / 4,
            "the WAL holds {wal} bytes after {written} written through it"
        );
    }
}
