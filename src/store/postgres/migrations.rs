//! The PostgreSQL store's schema and its ordered migrations, applied at connect.
//!
//! `schema_version` holds how many entries of [`MIGRATIONS`] have run. They run in one
//! transaction holding the advisory lock [`MIGRATION_LOCK`], so agentd instances starting
//! together against a new database migrate it once: the second waits for the first's commit,
//! then finds nothing left to do. A new version is added by appending to the list; never edit
//! an entry that has shipped.

use deadpool_postgres::Pool;

use crate::store::StoreResult;
use crate::store::postgres::codec::{backend, fail};

/// The advisory lock key migrations hold ("agentd" in ASCII, then schema lock number 1).
pub(super) const MIGRATION_LOCK: i64 = 0x6167_656e_7464_0001;

/// Schema migrations, applied in order.
///
/// Timestamps are unix nanoseconds (UTC) as BIGINT, like the SQLite store's. Text keys compare
/// byte-wise (`COLLATE "C"`), so ordering does not depend on the database's locale and ties
/// break as in SQLite. Bodies and messages are kept as the exact JSON text agentd wrote.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: resources, history, tool-call journal, calls held for approval.
    r#"CREATE TABLE resources (
        collection TEXT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        parent TEXT COLLATE "C",
        body TEXT NOT NULL,
        -- What list filters compare: body.metadata's scalar fields as text (see resources.rs).
        filter_fields JSONB NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (collection, id)
    );
    CREATE INDEX resources_by_created ON resources (collection, created_at, id);
    CREATE INDEX resources_by_updated ON resources (collection, updated_at, id);
    CREATE INDEX resources_by_parent ON resources (collection, parent, created_at, id);

    -- seq comes from the server's sequence at insert, so a session's rows keep the order
    -- they were appended in even when several agentd instances append.
    CREATE TABLE history (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT COLLATE "C" NOT NULL,
        id TEXT NOT NULL,
        source TEXT NOT NULL,
        role TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX history_by_session ON history (session_id, seq);

    CREATE TABLE journal (
        session_id TEXT COLLATE "C" NOT NULL,
        call_id TEXT COLLATE "C" NOT NULL,
        digest TEXT COLLATE "C" NOT NULL,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('started', 'finished')),
        result TEXT,
        started_at BIGINT NOT NULL,
        finished_at BIGINT,
        PRIMARY KEY (session_id, call_id, digest)
    );

    -- The partial index serves the count of pending calls not yet past their time without
    -- reading the decided ones; the primary key serves a session's calls.
    CREATE TABLE approvals (
        session_id TEXT COLLATE "C" NOT NULL,
        call_id TEXT COLLATE "C" NOT NULL,
        digest TEXT NOT NULL,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'superseded')),
        reason TEXT,
        decided_at BIGINT,
        PRIMARY KEY (session_id, call_id)
    );
    CREATE INDEX approvals_pending_by_expiry ON approvals (expires_at) WHERE state = 'pending';"#,
    // 2: which agentd instance runs each session's turn, until when (see claims.rs).
    r#"CREATE TABLE turn_claims (
        session_id TEXT COLLATE "C" PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );"#,
];

/// Brings the database's schema up to date; fails on a schema newer than this build knows, or
/// a database whose encoding is not UTF-8 (text would not round-trip).
pub(super) async fn migrate(pool: &Pool) -> StoreResult<()> {
    const OPERATION: &str = "migrate";
    let mut client = pool.get().await.map_err(fail(OPERATION))?;
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .await
        .map_err(fail(OPERATION))?
        .try_get(0)
        .map_err(fail(OPERATION))?;
    if !encoding.eq_ignore_ascii_case("UTF8") {
        return Err(backend(
            OPERATION,
            format!("the database's encoding is {encoding}; agentd needs UTF8"),
        ));
    }
    let tx = client.transaction().await.map_err(fail(OPERATION))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail(OPERATION))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
            version INTEGER NOT NULL
        )",
    )
    .await
    .map_err(fail(OPERATION))?;
    let current: i32 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(fail(OPERATION))?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(fail(OPERATION))?
        .unwrap_or(0);
    let known = MIGRATIONS.len();
    let applied = usize::try_from(current).unwrap_or(usize::MAX);
    if applied > known {
        return Err(backend(
            OPERATION,
            format!(
                "database schema version {current} is newer than this build understands ({known})"
            ),
        ));
    }
    if applied == known {
        return tx.commit().await.map_err(fail(OPERATION));
    }
    for sql in &MIGRATIONS[applied..] {
        tx.batch_execute(sql).await.map_err(fail(OPERATION))?;
    }
    let version = i32::try_from(known).map_err(|e| backend(OPERATION, e))?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)
         ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
        &[&version],
    )
    .await
    .map_err(fail(OPERATION))?;
    tx.commit().await.map_err(fail(OPERATION))
}
