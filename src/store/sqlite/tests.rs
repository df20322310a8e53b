//! The store contract (`store/contract`) run on the embedded store, each test on a database
//! file in a temporary directory of its own, and the helpers the other SQLite tests share.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::store::contract::Fixture;
use crate::store::sqlite::SqliteStore;
pub(super) use crate::store::test_support::{
    DIGEST, at, entry, entry_ids, ids, record, shared, tool,
};

pub(super) fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agentd.db");
    (dir, path)
}

pub(super) fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("open store")
}

/// A plain connection to the store's file, for writing or checking behind the store's back.
pub(super) fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw open")
}

/// A plain connection to a new file at schema `version`: the first `version` migrations run,
/// as a build of that version left it, for rows written behind the store's back.
pub(super) fn raw_at_version(path: &Path, version: usize) -> rusqlite::Connection {
    let conn = raw(path);
    for migration in &crate::store::sqlite::schema::MIGRATIONS[..version] {
        conn.execute_batch(migration).expect("older schema");
    }
    conn.pragma_update(None, "user_version", version)
        .expect("version");
    conn
}

/// SQL: whether the `history` row at hand holds the entry `id`.
pub(super) fn holding(id: &str) -> String {
    format!("EXISTS (SELECT 1 FROM json_each(history.entry_heads) WHERE value ->> 0 = '{id}')")
}

/// The plan SQLite makes for `sql` with `params` bound, one step per row.
pub(super) fn query_plan(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Vec<String> {
    conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain")
        .query_map(params, |row| row.get::<_, String>(3))
        .expect("plan")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// A database file in a temporary directory of its own.
struct SqliteFixture {
    _dir: TempDir,
    path: PathBuf,
}

impl Fixture for SqliteFixture {
    type Opened = SqliteStore;

    async fn new() -> Self {
        let (_dir, path) = temp_db();
        Self { _dir, path }
    }

    async fn open(&self) -> SqliteStore {
        open(&self.path)
    }
}

mod contract {
    crate::store::contract::contract_tests!(super::SqliteFixture);
}
