//! SQLite connection setup (pragmas) and the ordered schema migrations of the embedded store.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::config::Synchronous;
use crate::session::call_digest_of_text;
use crate::store::sqlite::rows::{Failure, Outcome};

/// How long a statement waits for another connection's lock before failing with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection (list queries vary with their filters).
const STATEMENT_CACHE: usize = 64;

/// Schema migrations, applied in order. `PRAGMA user_version` holds how many have run, so a
/// new version is added by appending to this list; never edit an entry that has shipped.
///
/// Timestamps are unix nanoseconds (UTC) as INTEGER: exact, compact and cheap to sort.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: resources, history, tool-call journal.
    "CREATE TABLE resources (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        parent TEXT,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (collection, id)
    );
    CREATE INDEX resources_by_created ON resources (collection, created_at, id);
    CREATE INDEX resources_by_updated ON resources (collection, updated_at, id);
    CREATE INDEX resources_by_parent ON resources (collection, parent);

    -- seq is the rowid: a new row always gets a larger seq than every row present, so
    -- ordering a session's rows by seq is append order.
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        id TEXT NOT NULL,
        source TEXT NOT NULL,
        role TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX history_by_session ON history (session_id, seq);

    CREATE TABLE journal (
        session_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('started', 'finished')),
        result TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        PRIMARY KEY (session_id, call_id)
    );",
    // 2: a call is its id and the digest of its content; digests of existing rows are filled
    // in by `backfill_digests` in the same transaction.
    "CREATE TABLE journal_v2 (
        session_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('started', 'finished')),
        result TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        PRIMARY KEY (session_id, call_id, digest)
    );
    INSERT INTO journal_v2
        SELECT session_id, call_id, '', tool, arguments, status, result, started_at, finished_at
        FROM journal;
    DROP TABLE journal;
    ALTER TABLE journal_v2 RENAME TO journal;",
    // 3: calls held for a person's approval. The partial index serves the count of pending
    // calls not yet past their time without reading the decided ones.
    "CREATE TABLE approvals (
        session_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'superseded')),
        reason TEXT,
        decided_at INTEGER,
        PRIMARY KEY (session_id, call_id)
    );
    CREATE INDEX approvals_pending_by_expiry ON approvals (expires_at) WHERE state = 'pending';",
    // 4: a session's history as a chain from its newest row (`history_rows.rs`) instead of
    // an index by session: each row names the session's row before it (`prev`, before the
    // message, so following a link never reads a long message's overflow pages), and
    // `history_heads` the newest. Rows are copied in order, linked through the old index.
    "CREATE TABLE history_chain (
        seq INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        prev INTEGER,
        id TEXT NOT NULL,
        source TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        message TEXT NOT NULL
    );
    INSERT INTO history_chain (seq, session_id, prev, id, source, role, created_at, message)
        SELECT seq, session_id,
            (SELECT max(earlier.seq) FROM history earlier
             WHERE earlier.session_id = history.session_id AND earlier.seq < history.seq),
            id, source, role, created_at, message
        FROM history ORDER BY seq;
    CREATE TABLE history_heads (
        session_id TEXT PRIMARY KEY,
        last INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO history_heads (session_id, last)
        SELECT session_id, max(seq) FROM history GROUP BY session_id;
    DROP TABLE history;
    ALTER TABLE history_chain RENAME TO history;",
    // 5: heads are written in batches (`heads.rs`); `upto` is the last `seq` handed out when
    // they were, so opening reads back the heads of the rows after it.
    "CREATE TABLE history_flushed (upto INTEGER NOT NULL);
    INSERT INTO history_flushed (upto) SELECT coalesce(max(seq), 0) FROM history;",
    // 6: one row per commit and session instead of one per entry (`history_cells.rs`):
    // `entry_heads` holds each entry's id, source, role, time and message length, `messages` the
    // messages, both as JSON arrays; `entries` counts them. Each existing row becomes a row of
    // one entry, with its `seq` and link kept, so `history_heads` stays as it is.
    "CREATE TABLE history_runs (
        seq INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        prev INTEGER,
        entries INTEGER NOT NULL,
        entry_heads TEXT NOT NULL,
        messages TEXT NOT NULL
    );
    INSERT INTO history_runs (seq, session_id, prev, entries, entry_heads, messages)
        SELECT seq, session_id, prev, 1,
            json_array(json_array(id, source, role, created_at,
                length(CAST(message AS BLOB)))),
            '[' || message || ']'
        FROM history ORDER BY seq;
    DROP TABLE history;
    ALTER TABLE history_runs RENAME TO history;",
];

/// The schema version after which journal rows carry digests.
const DIGESTS_FROM: usize = 2;

/// Bytes the WAL file is cut back to once checkpointed.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Opens the read-write connection, switches the file to WAL and brings the schema up to date.
pub(super) fn open_writer(path: &Path, synchronous: Synchronous) -> Outcome<Connection> {
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Invalid(format!(
            "could not switch {} to WAL mode (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    // Checkpoints run on their own thread (`checkpoint.rs`), not inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // The WAL is rewritten from its start once a checkpoint has copied all of it; this cuts
    // the file back then, so a burst of writes does not leave it large for good.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    // The page cache stays at SQLite's default (2 MiB): a larger one costs the writer more
    // than the reads it saves. A commit whose inserts split a B-tree page renumbers pages
    // through the locking page's number (`balance_nonroot`), which leaves the cache's highest
    // page number past the end of the database, so the commit's end walks every bucket of the
    // cache's hash table to drop pages past the end. With 128 MiB that walk was half of the
    // writer thread's time under sustained load (its user time per turn 14 → 39 µs). It stops
    // once the file passes 1 GiB (the locking page is then inside it), so a larger cache may
    // pay off on big databases; one short run suggests so (docs/benchmarks.md), a longer one
    // is still to be made.
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a connection used only for reads; WAL lets it run alongside the writer.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Runs the migrations the file has not seen yet, each with its version bump in one
/// transaction. The write lock is taken first, so two processes opening the same new file do
/// not both migrate it.
fn migrate(conn: &mut Connection) -> Outcome<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = MIGRATIONS.len();
    let applied = usize::try_from(current).unwrap_or(usize::MAX);
    if applied > known {
        return Err(Failure::Invalid(format!(
            "database schema version {current} is newer than this build understands ({known})"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        if index + 1 == DIGESTS_FROM {
            backfill_digests(&tx)?;
        }
        tx.pragma_update(None, "user_version", index + 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// Gives every journal row written before digests existed the digest of its stored tool and
/// arguments, so a call journaled by an older build is still recognised as the same call.
fn backfill_digests(conn: &Connection) -> Outcome<()> {
    let rows: Vec<(i64, String, String)> = conn
        .prepare("SELECT rowid, tool, arguments FROM journal WHERE digest = ''")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn.prepare("UPDATE journal SET digest = ?2 WHERE rowid = ?1")?;
    for (rowid, tool, arguments) in rows {
        update.execute(rusqlite::params![
            rowid,
            call_digest_of_text(&tool, &arguments)
        ])?;
    }
    Ok(())
}
