//! The embedded [`Store`]: one SQLite file in WAL mode, migrations at open.

use std::path::Path;

use super::store::{StoreError, StoreResult};

/// SQLite-backed store.
pub struct SqliteStore {}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let _ = path;
        Err(StoreError::Backend("not implemented".into()))
    }
}
