//! How the embedded store's values map to SQLite columns and back: timestamps, enums, JSON
//! columns, the list query builder, and the error type the blocking closures return.

use std::sync::Arc;

use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use time::OffsetDateTime;

use crate::session::Id;
use crate::session::message::{Entry, EntrySource, Role};
use crate::store::sqlite::writer::BatchError;
use crate::store::{CallStatus, Collection, JournalRecord, ListQuery, Record, StoreError};

/// What can go wrong inside a blocking store operation; turned into a [`StoreError`] with the
/// operation's name at the boundary.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    /// The transaction the write ran in did not commit.
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure {
    pub(super) fn into_store_error(self, operation: &str) -> StoreError {
        match self {
            Failure::Store(error) => error,
            Failure::Sql(error) => StoreError::backend(format!("sqlite {operation}"), error),
            Failure::Json(error) => {
                StoreError::backend(format!("sqlite {operation}: invalid JSON"), error)
            }
            Failure::Invalid(reason) => StoreError::backend(format!("sqlite {operation}"), reason),
            Failure::Batch(failed) => {
                let (step, source) = failed.into_parts();
                StoreError::backend(format!("sqlite {operation}: {step}"), source)
            }
        }
    }
}

pub(super) type Outcome<T> = Result<T, Failure>;

/// Unix nanoseconds, UTC; covers the years 1677 to 2262.
pub(super) fn to_nanos(at: OffsetDateTime) -> Outcome<i64> {
    i64::try_from(at.unix_timestamp_nanos())
        .map_err(|_| Failure::Invalid(format!("timestamp {at} is outside the storable range")))
}

pub(super) fn from_nanos(nanos: i64) -> Outcome<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|e| Failure::Invalid(format!("stored timestamp {nanos} is invalid: {e}")))
}

fn source_key(source: EntrySource) -> &'static str {
    match source {
        EntrySource::ApiRequest => "api_request",
        EntrySource::ApiResponse => "api_response",
        EntrySource::ToolResponse => "tool_response",
        EntrySource::Internal => "internal",
    }
}

pub(super) fn parse_role(text: &str) -> Outcome<Role> {
    Ok(match text {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => return Err(Failure::Invalid(format!("unknown message role {other:?}"))),
    })
}

pub(super) fn parse_source(text: &str) -> Outcome<EntrySource> {
    Ok(match text {
        "api_request" => EntrySource::ApiRequest,
        "api_response" => EntrySource::ApiResponse,
        "tool_response" => EntrySource::ToolResponse,
        "internal" => EntrySource::Internal,
        other => return Err(Failure::Invalid(format!("unknown entry source {other:?}"))),
    })
}

pub(super) fn status_key(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Started => "started",
        CallStatus::Finished => "finished",
    }
}

fn parse_status(text: &str) -> Outcome<CallStatus> {
    match text {
        "started" => Ok(CallStatus::Started),
        "finished" => Ok(CallStatus::Finished),
        other => Err(Failure::Invalid(format!("unknown call status {other:?}"))),
    }
}

/// A record ready to bind: body serialized, timestamps converted.
pub(super) struct RecordRow {
    pub id: String,
    pub parent: Option<String>,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl RecordRow {
    /// Runs an `INSERT INTO resources (collection, id, parent, body, created_at, updated_at)`
    /// statement with this row bound to ?1..?6.
    pub(super) fn insert_into(
        &self,
        statement: &mut rusqlite::Statement<'_>,
        collection: Collection,
    ) -> rusqlite::Result<usize> {
        statement.execute(rusqlite::params![
            collection.key(),
            self.id,
            self.parent,
            self.body,
            self.created_at,
            self.updated_at
        ])
    }

    pub(super) fn from_record(record: &Record) -> Outcome<Self> {
        Ok(Self {
            id: record.id.clone(),
            parent: record.parent.clone(),
            body: serde_json::to_string(&record.body)?,
            created_at: to_nanos(record.created_at)?,
            updated_at: to_nanos(record.updated_at)?,
        })
    }

    /// Reads the columns `id, parent, body, created_at, updated_at`.
    pub(super) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            parent: row.get(1)?,
            body: row.get(2)?,
            created_at: row.get(3)?,
            updated_at: row.get(4)?,
        })
    }

    pub(super) fn into_record(self) -> Outcome<Record> {
        Ok(Record {
            id: self.id,
            parent: self.parent,
            body: serde_json::from_str(&self.body)?,
            created_at: from_nanos(self.created_at)?,
            updated_at: from_nanos(self.updated_at)?,
        })
    }
}

/// An id binds as text straight from its bytes: it was made from a `str`, so it is not
/// checked as UTF-8 again.
impl ToSql for Id {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.as_bytes())))
    }
}

pub(super) const RECORD_COLUMNS: &str = "id, parent, body, created_at, updated_at";

/// A history entry ready to pack (`history_cells.rs`): the entry itself, shared, with its
/// message's JSON text made (the entry keeps it) and its time converted.
pub(super) struct EntryRow {
    pub entry: Arc<Entry>,
    pub created_at: i64,
}

impl EntryRow {
    pub(super) fn from_entry(entry: &Arc<Entry>) -> Outcome<Self> {
        entry.message_json()?;
        Ok(Self {
            entry: Arc::clone(entry),
            created_at: to_nanos(entry.created_at)?,
        })
    }

    pub(super) fn session_id(&self) -> &Id {
        &self.entry.session_id
    }

    pub(super) fn source(&self) -> &'static str {
        source_key(self.entry.source)
    }

    /// The message's JSON text, as made by [`EntryRow::from_entry`].
    pub(super) fn message(&self) -> &str {
        self.entry.message_text()
    }
}

pub(super) const JOURNAL_COLUMNS: &str =
    "session_id, call_id, digest, tool, arguments, status, result, started_at, finished_at";

/// Reads [`JOURNAL_COLUMNS`] into a journal record.
pub(super) fn read_journal(row: &rusqlite::Row<'_>) -> rusqlite::Result<Outcome<JournalRecord>> {
    let session_id: String = row.get(0)?;
    let call_id: String = row.get(1)?;
    let digest: String = row.get(2)?;
    let tool: String = row.get(3)?;
    let arguments: String = row.get(4)?;
    let status: String = row.get(5)?;
    let result: Option<String> = row.get(6)?;
    let started_at: i64 = row.get(7)?;
    let finished_at: Option<i64> = row.get(8)?;
    Ok((|| {
        Ok(JournalRecord {
            session_id,
            call_id,
            digest,
            tool,
            arguments,
            status: parse_status(&status)?,
            result,
            started_at: from_nanos(started_at)?,
            finished_at: finished_at.map(from_nanos).transpose()?,
        })
    })())
}

/// The SQL and parameters of one list page.
///
/// A metadata filter `(key, value)` matches when `body.metadata[key]` is the string `value`,
/// or a number or boolean whose JSON text is `value`. The key goes into the JSON path as a
/// quoted, escaped label (`$.metadata."a.b"`), so dots and quotes in keys are taken literally.
pub(super) fn list_query(collection: Collection, query: &ListQuery) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE collection = ?1");
    let mut params = vec![SqlValue::Text(collection.key().to_owned())];
    if let Some(parent) = &query.parent {
        params.push(SqlValue::Text(parent.clone()));
        sql.push_str(&format!(" AND parent = ?{}", params.len()));
    }
    for (key, value) in &query.metadata_filter {
        params.push(SqlValue::Text(metadata_path(key)));
        let path = params.len();
        params.push(SqlValue::Text(value.clone()));
        let value = params.len();
        sql.push_str(&format!(
            " AND (CASE json_type(body, ?{path}) \
               WHEN 'text' THEN json_extract(body, ?{path}) \
               WHEN 'integer' THEN body -> ?{path} \
               WHEN 'real' THEN body -> ?{path} \
               WHEN 'true' THEN 'true' \
               WHEN 'false' THEN 'false' \
             END) = ?{value}"
        ));
    }
    let (column, direction) = (query.sort_by.column(), query.direction.keyword());
    params.push(SqlValue::Integer(i64::from(query.limit)));
    let limit = params.len();
    params.push(SqlValue::Integer(i64::from(query.offset)));
    let offset = params.len();
    sql.push_str(&format!(
        " ORDER BY {column} {direction}, id {direction} LIMIT ?{limit} OFFSET ?{offset}"
    ));
    (sql, params)
}

/// `$.metadata."<key>"` with the key escaped as a JSON string, which SQLite's path parser
/// reads back literally.
fn metadata_path(key: &str) -> String {
    let quoted = serde_json::Value::String(key.to_owned()).to_string();
    format!("$.metadata.{quoted}")
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::Id;

    #[test]
    fn an_id_binds_as_text_equal_to_the_same_str() {
        let conn = Connection::open_in_memory().expect("open");
        let uuid = "0190f5a2-7c1e-7b3a-9c4d-2f6e8a1b3c5d";
        let (kind, same): (String, bool) = conn
            .query_row(
                "SELECT typeof(?1), ?1 = ?2",
                rusqlite::params![Id::new(uuid), uuid],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("query");
        assert_eq!((kind.as_str(), same), ("text", true));
        let long = "x".repeat(100);
        let boxed: String = conn
            .query_row("SELECT ?1", [Id::new(&long)], |row| row.get(0))
            .expect("query");
        assert_eq!(boxed, long, "a boxed id binds whole");
    }
}
