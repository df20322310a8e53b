//! The embedded [`Store`]: one SQLite file in WAL mode, migrations at open.
//!
//! rusqlite is synchronous, so no SQLite call runs on the async runtime. Writes go to one
//! connection on a thread of its own that commits them in groups ([`writer`]).
//! Reads a turn makes (records by id, an agent's tools, whole histories) are answered from an
//! in-memory mirror kept in step with the commits ([`cache`]), and so are pages of a history it
//! holds; the rest borrow a read connection from a pool on tokio's blocking pool, since WAL
//! lets readers run alongside the writer and see every committed write. The data directory is
//! locked for the store's lifetime: one process writes the file, so the mirror is never stale.

mod approvals;
mod cache;
mod checkpoint;
mod entry_heads;
mod export;
mod frequency;
mod heads;
mod history_cells;
mod history_rows;
mod rows;
mod schema;
mod step;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_approvals;
#[cfg(test)]
mod tests_chain;
#[cfg(test)]
mod tests_heads;
#[cfg(test)]
mod tests_history;
#[cfg(test)]
mod tests_mirror;
#[cfg(test)]
mod tests_runs;
mod worker_thread;
mod writer;

use std::fs::File;
use std::future::Future;
use std::hash::Hash;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;

use self::cache::{Cache, EMPTY_HISTORY, Mirror, Table, record_bytes};
use self::checkpoint::{Checkpointer, WalPressure};
use self::heads::{Heads, PendingHeads};
use self::rows::{
    Failure, JOURNAL_COLUMNS, Outcome, RECORD_COLUMNS, RecordRow, list_query, read_journal,
};
use self::schema::{open_reader, open_writer};
use self::writer::{Txn, Write, Writer};
use crate::config::Synchronous;
use crate::ids::Id;
use crate::session::message::Entry;
use crate::session::{History, StoredEntry};
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalState, Collection, JournalRecord, ListQuery, Record,
    StepWrite, Store, StoreError, StoreResult,
};

/// Read connections kept open between calls; more are opened on demand under load. Opening
/// one costs a schema parse and a cold page cache, so enough are kept for a busy daemon.
const IDLE_READERS: usize = 16;

/// How long opening waits for another process (a daemon still shutting down) to release the
/// data directory's lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How [`SqliteStore::open_with`] opens the database.
#[derive(Debug, Clone, Copy)]
pub struct SqliteOptions {
    /// How hard a commit waits for the disk.
    pub synchronous: Synchronous,
    /// Bytes the in-memory mirror may hold (0: every read goes to SQLite).
    pub mirror_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::default(),
            mirror_bytes: 64 << 20,
        }
    }
}

/// SQLite-backed store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

/// Fields drop in order: the writer and checkpoint threads are joined (their connections
/// closed) before the readers close and the lock is released.
struct Shared {
    writer: Writer,
    _checkpointer: Checkpointer,
    readers: Mutex<Vec<Connection>>,
    cache: Arc<Cache>,
    /// History heads moved since the writer last wrote them to the file.
    heads: Arc<PendingHeads>,
    /// The first history `seq` this store's writer handed out: the rows from it on hold the
    /// message texts this build made, and a miss copies them instead of serializing their
    /// messages again (the data directory's lock keeps any other process from writing).
    own_from: i64,
    path: PathBuf,
    _lock: File,
}

impl Shared {
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
    /// Opens (creating if needed) the database file with `synchronous = FULL` and runs
    /// migrations. The parent directory must exist. Fails if another process has the database
    /// open through this store ([`SqliteStore::is_locked_elsewhere`] tells that failure apart).
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with the durability level of commits and the mirror's budget.
    pub fn open_with(path: &Path, options: SqliteOptions) -> StoreResult<Self> {
        Self::open_flushing_heads(path, options, heads::FLUSH_INTERVAL)
    }

    /// [`SqliteStore::open_with`], writing moved history heads to the file `flush_interval`
    /// after the first of them at the latest.
    fn open_flushing_heads(
        path: &Path,
        options: SqliteOptions,
        flush_interval: Duration,
    ) -> StoreResult<Self> {
        let SqliteOptions {
            synchronous,
            mirror_bytes,
        } = options;
        let fail = |e: Failure| e.into_store_error(&format!("open {}", path.display()));
        let lock = lock_database(path)
            .map_err(|e| StoreError::backend(format!("sqlite open {}", path.display()), e))?;
        let writer = open_writer(path, synchronous).map_err(fail)?;
        // Readers are opened later, possibly after the working directory changed.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let reader = open_reader(&path).map_err(|e| fail(e.into()))?;
        let pending = Arc::new(PendingHeads::default());
        let heads = Heads::open(&writer, Arc::clone(&pending), flush_interval).map_err(fail)?;
        let own_from = heads.upcoming_seq();
        let pressure = Arc::new(WalPressure::default());
        let writer = Writer::start(writer, heads, Arc::clone(&pressure))
            .map_err(|e| StoreError::backend("sqlite open: writer thread", e))?;
        let checkpointer = Checkpointer::start(&path, pressure)
            .map_err(|e| StoreError::backend("sqlite open: checkpoint thread", e))?;
        Ok(Self {
            shared: Arc::new(Shared {
                writer,
                _checkpointer: checkpointer,
                readers: Mutex::new(vec![reader]),
                cache: Arc::new(Cache::new(mirror_bytes)),
                heads: pending,
                own_from,
                path,
                _lock: lock,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Commits `work` with the next group of writes; `after_commit` then updates the mirror.
    async fn write<T, F, A>(
        &self,
        operation: &'static str,
        work: F,
        after_commit: A,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Txn<'_>) -> Outcome<T> + Send + 'static,
        A: FnOnce(&Cache, &T) + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let cache = Arc::clone(&self.shared.cache);
        let job = Box::new(Write {
            work,
            after_commit: move |value: &T| {
                // A half-applied change would leave the copy wrong; an empty one is only slower.
                if panic::catch_unwind(AssertUnwindSafe(|| after_commit(&cache, value))).is_err() {
                    tracing::error!(
                        operation,
                        "updating the in-memory copy panicked; emptied it"
                    );
                    cache.clear();
                }
            },
            reply,
        });
        if self.shared.writer.submit(job).is_err() {
            return Err(StoreError::backend(
                format!("sqlite {operation}"),
                "the writer thread has stopped",
            ));
        }
        match answer.await {
            Ok(outcome) => outcome.map_err(|failure| failure.into_store_error(operation)),
            Err(_) => Err(StoreError::backend(
                format!("sqlite {operation}"),
                "the write failed in the writer thread and was rolled back",
            )),
        }
    }

    /// A mirrored read: the mirror's value, else what `load` reads from SQLite (a value and
    /// its weight), filed into the mirror unless a write touched the key meanwhile.
    async fn read_through<K, V, L>(
        &self,
        table: fn(&mut Mirror) -> &mut Table<K, V>,
        key: K,
        load: impl FnOnce() -> L,
    ) -> StoreResult<Option<V>>
    where
        K: Eq + Hash + Clone,
        V: Clone,
        L: Future<Output = StoreResult<Option<(V, usize)>>>,
    {
        let token = match table(&mut self.shared.cache.lock()).get(&key, Clone::clone) {
            Ok(value) => return Ok(Some(value)),
            Err(token) => token,
        };
        let loaded = load().await;
        table(&mut self.shared.cache.lock()).settle(key, token, loaded)
    }

    async fn read<T, F>(&self, operation: &'static str, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Outcome<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        crate::telemetry::metrics().store().read();
        match tokio::task::spawn_blocking(move || shared.with_reader(work)).await {
            Ok(outcome) => outcome.map_err(|failure| failure.into_store_error(operation)),
            Err(join) => Err(StoreError::backend(format!("sqlite {operation}"), join)),
        }
    }
}

/// Takes `<database>.lock` exclusively, waiting up to [`LOCK_WAIT`] for a previous owner.
fn lock_database(path: &Path) -> std::io::Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", lock_path.display())))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!(
                        "{} is in use by another agentd process ({} is locked)",
                        path.display(),
                        lock_path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", lock_path.display()),
                ));
            }
        }
    }
}

fn conflict(collection: Collection, id: &str) -> Failure {
    Failure::Store(StoreError::Conflict(format!("{} {id}", collection.noun())))
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, collection: Collection, record: Record) -> StoreResult<()> {
        let row = RecordRow::from_record(&record).map_err(|f| f.into_store_error("insert"))?;
        let weight = record_bytes(&record);
        self.write(
            "insert",
            move |conn| {
                let inserted = row.insert_into(
                    &mut *conn.prepare_cached(
                        "INSERT INTO resources (collection, id, parent, body, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    )?,
                    collection,
                )?;
                if inserted == 0 {
                    return Err(conflict(collection, &row.id));
                }
                // A new session's history is known to be empty (checked, not assumed), so its
                // first turn finds it in the mirror instead of reading SQLite.
                let empty_history = collection == Collection::Sessions
                    && !history_rows::has_history(conn, &row.id)?;
                Ok(empty_history)
            },
            move |cache, &empty_history| {
                let mut mirror = cache.lock();
                if let Some(parent) = &record.parent {
                    mirror.children.remove(&(collection, Id::new(parent)));
                }
                if empty_history {
                    mirror
                        .histories
                        .put(Id::new(&record.id), History::default(), EMPTY_HISTORY);
                }
                mirror
                    .records
                    .put((collection, Id::new(&record.id)), Arc::new(record), weight);
            },
        )
        .await
        .map(|_| ())
    }

    async fn upsert(&self, collection: Collection, record: Record) -> StoreResult<()> {
        let row = RecordRow::from_record(&record).map_err(|f| f.into_store_error("upsert"))?;
        let (id, parent) = (record.id, record.parent);
        self.write(
            "upsert",
            move |conn| {
                row.insert_into(
                    &mut *conn.prepare_cached(
                        "INSERT INTO resources (collection, id, parent, body, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (collection, id) DO UPDATE SET
                             parent = excluded.parent,
                             body = excluded.body,
                             updated_at = excluded.updated_at",
                    )?,
                    collection,
                )?;
                Ok(())
            },
            // A replaced record keeps its stored created_at (and may have had another parent):
            // the next read loads it.
            move |cache, ()| forget_record(cache, collection, &id, parent.as_deref()),
        )
        .await
    }

    async fn get(&self, collection: Collection, id: &str) -> StoreResult<Option<Arc<Record>>> {
        let key = (collection, Id::new(id));
        let load = || {
            let id = id.to_owned();
            self.read("get", move |conn| {
                let row = conn
                    .prepare_cached(&format!(
                        "SELECT {RECORD_COLUMNS} FROM resources WHERE collection = ?1 AND id = ?2"
                    ))?
                    .query_row(params![collection.key(), id], RecordRow::read)
                    .optional()?;
                row.map(|row| {
                    row.into_record().map(|record| {
                        let weight = record_bytes(&record);
                        (Arc::new(record), weight)
                    })
                })
                .transpose()
            })
        };
        self.read_through(|mirror| &mut mirror.records, key, load)
            .await
    }

    async fn list(&self, collection: Collection, query: &ListQuery) -> StoreResult<Vec<Record>> {
        let (sql, params) = list_query(collection, query);
        let max_bytes = query.max_bytes;
        self.read("list", move |conn| {
            read_records(conn, &sql, params, max_bytes)
        })
        .await
        .map(|(records, _)| records)
    }

    async fn children(&self, collection: Collection, parent: &str) -> StoreResult<Vec<Record>> {
        let key = (collection, Id::new(parent));
        let load = || async {
            let (sql, params) = list_query(collection, &ListQuery::children_of(parent));
            self.read("children", move |conn| {
                read_records(conn, &sql, params, usize::MAX)
            })
            .await
            .map(Some)
        };
        let records = self
            .read_through(|mirror| &mut mirror.children, key, load)
            .await?;
        Ok(records.unwrap_or_default())
    }

    async fn update(&self, collection: Collection, record: Record) -> StoreResult<bool> {
        let row = RecordRow::from_record(&record).map_err(|f| f.into_store_error("update"))?;
        let (id, parent) = (record.id, record.parent);
        self.write(
            "update",
            move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE resources SET body = ?3, updated_at = ?4
                         WHERE collection = ?1 AND id = ?2",
                    )?
                    .execute(params![collection.key(), row.id, row.body, row.updated_at])?;
                Ok(changed > 0)
            },
            move |cache, _| forget_record(cache, collection, &id, parent.as_deref()),
        )
        .await
    }

    async fn delete(&self, collection: Collection, id: &str) -> StoreResult<bool> {
        let key = Id::new(id);
        let id = id.to_owned();
        self.write(
            "delete",
            move |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM resources WHERE collection = ?1 AND id = ?2")?
                    .execute(params![collection.key(), id])?;
                if deleted == 0 {
                    return Ok(false);
                }
                match collection {
                    Collection::Agents => {
                        conn.prepare_cached(
                            "DELETE FROM resources WHERE collection = ?1 AND parent = ?2",
                        )?
                        .execute(params![Collection::AgentTools.key(), id])?;
                    }
                    Collection::Sessions => delete_conversation(conn, &id)?,
                    Collection::Users | Collection::AgentTools => {}
                }
                Ok(true)
            },
            move |cache, _| {
                let mut mirror = cache.lock();
                mirror.records.remove(&(collection, key.clone()));
                match collection {
                    Collection::Agents => {
                        mirror.children.remove(&(Collection::AgentTools, key));
                    }
                    Collection::Sessions => mirror.histories.remove(&key),
                    // The tool's parent is not known here; tools change rarely.
                    Collection::AgentTools => mirror.children.clear(),
                    Collection::Users => {}
                }
            },
        )
        .await
    }

    async fn write_step(&self, step: StepWrite) -> StoreResult<Vec<bool>> {
        crate::store::sqlite::step::write_step(self, step).await
    }

    /// A page of a history the mirror holds is cut from it; any other page is read from the
    /// file, without filling the mirror, so reading an idle session's history leaves the
    /// active sessions' histories where they are.
    async fn history(&self, session_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Entry>> {
        let (skip, take) = (offset as usize, limit as usize);
        let held = self
            .shared
            .cache
            .lock()
            .histories
            .peek(session_id.as_bytes(), |history| {
                history
                    .iter_from(skip)
                    .take(take)
                    .map(|entry| Entry::clone(entry))
                    .collect()
            });
        if let Some(page) = held {
            return Ok(page);
        }
        let read = read_history(self, session_id, i64::from(limit), i64::from(offset)).await?;
        read.into_iter()
            .map(|(stored, _)| {
                stored
                    .into_entry()
                    .map_err(|error| StoreError::backend("history", error))
            })
            .collect()
    }

    async fn full_history(&self, session_id: &str) -> StoreResult<History> {
        let load = || async {
            // A negative LIMIT means no limit.
            let read = read_history(self, session_id, -1, 0).await?;
            let weight = read
                .iter()
                .fold(EMPTY_HISTORY, |weight, (stored, text_len)| {
                    weight + stored.heap_bytes(*text_len)
                });
            let entries = read.into_iter().map(|(stored, _)| stored);
            let history = History::from_stored(entries);
            let weight = weight + history.heads_bytes();
            Ok(Some((history, weight)))
        };
        let entries = self
            .read_through(|mirror| &mut mirror.histories, Id::new(session_id), load)
            .await?;
        Ok(entries.unwrap_or_default())
    }

    async fn clear_history(&self, session_id: &str) -> StoreResult<()> {
        let key = Id::new(session_id);
        let session_id = session_id.to_owned();
        self.write(
            "clear history",
            move |conn| delete_conversation(conn, &session_id),
            move |cache, ()| cache.lock().histories.remove(&key),
        )
        .await
    }

    async fn journal_get(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
    ) -> StoreResult<Option<JournalRecord>> {
        let key = (session_id.to_owned(), call_id.to_owned(), digest.to_owned());
        self.read("journal get", move |conn| {
            let (session_id, call_id, digest) = key;
            let record = conn
                .prepare_cached(&format!(
                    "SELECT {JOURNAL_COLUMNS} FROM journal
                     WHERE session_id = ?1 AND call_id = ?2 AND digest = ?3"
                ))?
                .query_row(params![session_id, call_id, digest], read_journal)
                .optional()?;
            record.transpose()
        })
        .await
    }

    async fn approvals(&self, session_id: &str) -> StoreResult<Vec<ApprovalRecord>> {
        approvals::of_session(self, session_id).await
    }

    async fn approval_decide(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
        state: ApprovalState,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> StoreResult<ApprovalDecision> {
        let key = approvals::CallKey {
            session_id: session_id.to_owned(),
            call_id: call_id.to_owned(),
            digest: digest.to_owned(),
        };
        approvals::decide(self, key, state, reason, now).await
    }

    async fn approvals_pending(&self, now: OffsetDateTime) -> StoreResult<u64> {
        approvals::count_pending(self, now).await
    }

    /// Proves both sides answer: a read connection, and the writer thread with a commit.
    async fn ping(&self) -> StoreResult<()> {
        self.read("ping", |conn| {
            conn.prepare_cached("SELECT 1")?
                .query_row([], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await?;
        self.write("ping", |_| Ok(()), |_, ()| {}).await
    }
}

/// The records a query selects, with their weight in the mirror; more than `max_bytes` of
/// bodies is [`StoreError::PageTooLarge`], found before the rest of the page is read.
fn read_records(
    conn: &Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    max_bytes: usize,
) -> Outcome<(Vec<Record>, usize)> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params_from_iter(params), RecordRow::read)?;
    let (mut records, mut weight, mut bytes) = (Vec::new(), 0, 0usize);
    for row in rows {
        let row = row?;
        bytes = bytes.saturating_add(row.body.len());
        if bytes > max_bytes {
            return Err(StoreError::PageTooLarge(max_bytes).into());
        }
        let record = row.into_record()?;
        weight += record_bytes(&record);
        records.push(record);
    }
    Ok((records, weight))
}

/// Drops a changed record (and its parent's list of children) from the mirror.
fn forget_record(cache: &Cache, collection: Collection, id: &str, parent: Option<&str>) {
    let mut mirror = cache.lock();
    mirror.records.remove(&(collection, Id::new(id)));
    match parent {
        Some(parent) => mirror.children.remove(&(collection, Id::new(parent))),
        // A record replaced without a parent may have had one before.
        None if collection == Collection::AgentTools => mirror.children.clear(),
        None => {}
    }
}

/// Deletes what a session said and did: its history, journal and held calls.
fn delete_conversation(conn: &Txn<'_>, session_id: &str) -> Outcome<()> {
    history_rows::delete_history(conn, session_id)?;
    conn.prepare_cached("DELETE FROM journal WHERE session_id = ?1")?
        .execute(params![session_id])?;
    conn.prepare_cached("DELETE FROM approvals WHERE session_id = ?1")?
        .execute(params![session_id])?;
    Ok(())
}

/// A page of a session's history from the file, oldest first, each entry with the length of
/// its stored message text.
async fn read_history(
    store: &SqliteStore,
    session_id: &str,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<(StoredEntry, usize)>> {
    let session_id = session_id.to_owned();
    let pending = Arc::clone(&store.shared.heads);
    let own_from = store.shared.own_from;
    store
        .read("history", move |conn| {
            history_rows::read_entries(conn, &pending, &session_id, limit, offset, own_from)
        })
        .await
}
