//! The embedded [`Store`]: one SQLite file in WAL mode, migrations at open.
//!
//! rusqlite is synchronous, so every operation runs on tokio's blocking pool and no lock is
//! ever held across an `.await`. Writes go through a single connection behind a mutex (SQLite
//! admits one writer at a time anyway); reads borrow a connection from a small pool, since WAL
//! lets readers run alongside the writer and see every committed write.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;

use super::message::Entry;
use super::sqlite_rows::{
    EntryRow, Failure, JOURNAL_COLUMNS, Outcome, RECORD_COLUMNS, RecordRow, collection_key,
    list_query, read_journal, status_key, to_nanos,
};
use super::sqlite_schema::{open_reader, open_writer};
use super::store::{
    CallStatus, Collection, JournalRecord, ListQuery, Record, Store, StoreError, StoreResult,
};

/// Read connections kept open between calls; more are opened on demand under load. Opening
/// one costs a schema parse and a cold page cache, so enough are kept for a busy daemon.
const IDLE_READERS: usize = 64;

/// SQLite-backed store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Shared {
    fn with_writer<T>(&self, work: impl FnOnce(&mut Connection) -> Outcome<T>) -> Outcome<T> {
        // A panic mid-operation drops its transaction, which rolls back: the connection is
        // still consistent, so a poisoned lock is safe to reuse.
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut conn)
    }

    fn with_reader<T>(&self, work: impl FnOnce(&Connection) -> Outcome<T>) -> Outcome<T> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let outcome = work(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < IDLE_READERS {
            readers.push(conn);
        }
        outcome
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations. The parent directory
    /// must exist.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let fail = |e: Failure| StoreError::Backend(format!("sqlite open {}: {e}", path.display()));
        let writer = open_writer(path).map_err(fail)?;
        // Readers are opened later, possibly after the working directory changed.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let reader = open_reader(&path).map_err(|e| fail(e.into()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(vec![reader]),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write<T, F>(&self, operation: &'static str, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Outcome<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        blocking(operation, move || shared.with_writer(work)).await
    }

    async fn read<T, F>(&self, operation: &'static str, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Outcome<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        blocking(operation, move || shared.with_reader(work)).await
    }
}

async fn blocking<T, F>(operation: &'static str, work: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> Outcome<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome.map_err(|failure| failure.into_store_error(operation)),
        Err(join) => Err(StoreError::Backend(format!(
            "sqlite {operation}: task failed: {join}"
        ))),
    }
}

fn conflict(collection: Collection, id: &str) -> Failure {
    Failure::Store(StoreError::Conflict(format!("{} {id}", collection.noun())))
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, collection: Collection, record: Record) -> StoreResult<()> {
        let row = RecordRow::from_record(&record).map_err(|f| f.into_store_error("insert"))?;
        self.write("insert", move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO resources (collection, id, parent, body, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    collection_key(collection),
                    row.id,
                    row.parent,
                    row.body,
                    row.created_at,
                    row.updated_at
                ])?;
            if inserted == 0 {
                return Err(conflict(collection, &row.id));
            }
            Ok(())
        })
        .await
    }

    async fn upsert(&self, collection: Collection, record: Record) -> StoreResult<()> {
        let row = RecordRow::from_record(&record).map_err(|f| f.into_store_error("upsert"))?;
        self.write("upsert", move |conn| {
            conn.prepare_cached(
                "INSERT INTO resources (collection, id, parent, body, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (collection, id) DO UPDATE SET
                     parent = excluded.parent,
                     body = excluded.body,
                     updated_at = excluded.updated_at",
            )?
            .execute(params![
                collection_key(collection),
                row.id,
                row.parent,
                row.body,
                row.created_at,
                row.updated_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn get(&self, collection: Collection, id: &str) -> StoreResult<Option<Record>> {
        let id = id.to_owned();
        self.read("get", move |conn| {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM resources WHERE collection = ?1 AND id = ?2"
                ))?
                .query_row(params![collection_key(collection), id], RecordRow::read)
                .optional()?;
            row.map(RecordRow::into_record).transpose()
        })
        .await
    }

    async fn list(&self, collection: Collection, query: &ListQuery) -> StoreResult<Vec<Record>> {
        let (sql, params) = list_query(collection, query);
        self.read("list", move |conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params_from_iter(params), RecordRow::read)?;
            let mut records = Vec::new();
            for row in rows {
                records.push(row?.into_record()?);
            }
            Ok(records)
        })
        .await
    }

    async fn update(&self, collection: Collection, record: Record) -> StoreResult<bool> {
        let row = RecordRow::from_record(&record).map_err(|f| f.into_store_error("update"))?;
        self.write("update", move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE resources SET body = ?3, updated_at = ?4
                     WHERE collection = ?1 AND id = ?2",
                )?
                .execute(params![
                    collection_key(collection),
                    row.id,
                    row.body,
                    row.updated_at
                ])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn delete(&self, collection: Collection, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write("delete", move |conn| {
            let tx = conn.transaction()?;
            let deleted = tx
                .prepare_cached("DELETE FROM resources WHERE collection = ?1 AND id = ?2")?
                .execute(params![collection_key(collection), id])?;
            if deleted == 0 {
                return Ok(false);
            }
            match collection {
                Collection::Agents => {
                    tx.prepare_cached(
                        "DELETE FROM resources WHERE collection = ?1 AND parent = ?2",
                    )?
                    .execute(params![collection_key(Collection::AgentTools), id])?;
                }
                Collection::Sessions => {
                    tx.prepare_cached("DELETE FROM history WHERE session_id = ?1")?
                        .execute(params![id])?;
                    tx.prepare_cached("DELETE FROM journal WHERE session_id = ?1")?
                        .execute(params![id])?;
                }
                Collection::Users | Collection::AgentTools => {}
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn append_entries(&self, entries: &[Entry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // Serialize before taking the writer, so the lock covers only the inserts.
        let rows = entries
            .iter()
            .map(EntryRow::from_entry)
            .collect::<Outcome<Vec<_>>>()
            .map_err(|f| f.into_store_error("append entries"))?;
        self.write("append entries", move |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO history (session_id, id, source, role, message, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for row in &rows {
                    insert.execute(params![
                        row.session_id,
                        row.id,
                        row.source,
                        row.role,
                        row.message,
                        row.created_at
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn history(&self, session_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Entry>> {
        read_history(self, session_id, i64::from(limit), i64::from(offset)).await
    }

    async fn full_history(&self, session_id: &str) -> StoreResult<Vec<Entry>> {
        // A negative LIMIT means no limit in SQLite.
        read_history(self, session_id, -1, 0).await
    }

    async fn clear_history(&self, session_id: &str) -> StoreResult<()> {
        let session_id = session_id.to_owned();
        self.write("clear history", move |conn| {
            conn.prepare_cached("DELETE FROM history WHERE session_id = ?1")?
                .execute(params![session_id])?;
            Ok(())
        })
        .await
    }

    async fn journal_start(&self, record: &JournalRecord) -> StoreResult<()> {
        let record = record.clone();
        let started_at =
            to_nanos(record.started_at).map_err(|f| f.into_store_error("journal start"))?;
        let finished_at = record
            .finished_at
            .map(to_nanos)
            .transpose()
            .map_err(|f| f.into_store_error("journal start"))?;
        self.write("journal start", move |conn| {
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT DO NOTHING"
                ))?
                .execute(params![
                    record.session_id,
                    record.call_id,
                    record.tool,
                    record.arguments,
                    status_key(record.status),
                    record.result,
                    started_at,
                    finished_at
                ])?;
            if inserted == 0 {
                return Err(Failure::Store(StoreError::Conflict(format!(
                    "tool call {} of session {}",
                    record.call_id, record.session_id
                ))));
            }
            Ok(())
        })
        .await
    }

    async fn journal_finish(
        &self,
        session_id: &str,
        call_id: &str,
        result: &str,
    ) -> StoreResult<()> {
        let (session_id, call_id, result) =
            (session_id.to_owned(), call_id.to_owned(), result.to_owned());
        let finished_at = to_nanos(OffsetDateTime::now_utc())
            .map_err(|f| f.into_store_error("journal finish"))?;
        self.write("journal finish", move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE journal SET status = ?3, result = ?4, finished_at = ?5
                     WHERE session_id = ?1 AND call_id = ?2",
                )?
                .execute(params![
                    session_id,
                    call_id,
                    status_key(CallStatus::Finished),
                    result,
                    finished_at
                ])?;
            if changed == 0 {
                return Err(Failure::Invalid(format!(
                    "tool call {call_id} of session {session_id} was never started"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn journal_get(
        &self,
        session_id: &str,
        call_id: &str,
    ) -> StoreResult<Option<JournalRecord>> {
        let (session_id, call_id) = (session_id.to_owned(), call_id.to_owned());
        self.read("journal get", move |conn| {
            let record = conn
                .prepare_cached(&format!(
                    "SELECT {JOURNAL_COLUMNS} FROM journal WHERE session_id = ?1 AND call_id = ?2"
                ))?
                .query_row(params![session_id, call_id], read_journal)
                .optional()?;
            record.transpose()
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read("ping", |conn| {
            conn.prepare_cached("SELECT 1")?
                .query_row([], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }
}

async fn read_history(
    store: &SqliteStore,
    session_id: &str,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<Entry>> {
    let session_id = session_id.to_owned();
    store
        .read("history", move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT session_id, id, source, message, created_at FROM history
                 WHERE session_id = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3",
            )?;
            let rows =
                statement.query_map(params![session_id, limit, offset], EntryRow::read_entry)?;
            let mut entries = Vec::new();
            for row in rows {
                entries.push(row??);
            }
            Ok(entries)
        })
        .await
}
