//! Resources in PostgreSQL: insert, upsert, get, update, delete with what hangs off a record,
//! and list pages with sorting, parent and metadata filters and a byte budget.

use std::pin::pin;

use deadpool_postgres::{Client, Pool, Transaction};
use futures_util::TryStreamExt;
use serde_json::{Map, Value};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::postgres::codec::{backend, fail, from_nanos, to_nanos};
use crate::store::postgres::history::remove_conversation;
use crate::store::{Collection, ListQuery, Record, StoreError, StoreResult};

const RECORD_COLUMNS: &str = "id, parent, body, created_at, updated_at";

/// A record ready to bind: body serialized, timestamps converted.
struct RecordRow {
    id: String,
    parent: Option<String>,
    body: String,
    /// [`filter_fields`] of the body, as JSON text.
    filter_fields: String,
    created_at: i64,
    updated_at: i64,
}

impl RecordRow {
    fn from_record(operation: &str, record: &Record) -> StoreResult<Self> {
        Ok(Self {
            id: record.id.clone(),
            parent: record.parent.clone(),
            body: serde_json::to_string(&record.body)
                .map_err(|e| backend(&format!("{operation}: invalid JSON"), e))?,
            filter_fields: filter_fields(&record.body).to_string(),
            created_at: to_nanos(operation, record.created_at)?,
            updated_at: to_nanos(operation, record.updated_at)?,
        })
    }
}

/// What a metadata filter compares, kept beside the body: each field of `body.metadata` that
/// is a string (itself), a number or a boolean (its JSON text), keys and texts passed through
/// [`filter_text`]. The body itself stays the exact JSON text agentd wrote, which `jsonb`
/// could not always hold.
fn filter_fields(body: &Value) -> Value {
    let Some(metadata) = body.get("metadata").and_then(Value::as_object) else {
        return Value::Object(Map::new());
    };
    let fields = metadata
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(text) => filter_text(text),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            Some((filter_text(key), Value::String(text)))
        })
        .collect();
    Value::Object(fields)
}

/// `text` with backslashes doubled and NUL characters as `\0`: `jsonb` holds no NUL, and the
/// same spelling on both sides keeps comparisons exact.
fn filter_text(text: &str) -> String {
    if !text.contains(['\\', '\0']) {
        return text.to_owned();
    }
    text.replace('\\', "\\\\").replace('\0', "\\0")
}

/// Reads [`RECORD_COLUMNS`] into a record, with the length of its body text.
fn read_record(operation: &str, row: &Row) -> StoreResult<(Record, usize)> {
    let body: &str = row.try_get(2).map_err(|e| backend(operation, e))?;
    let record = Record {
        id: row.try_get(0).map_err(|e| backend(operation, e))?,
        parent: row.try_get(1).map_err(|e| backend(operation, e))?,
        body: serde_json::from_str(body)
            .map_err(|e| backend(&format!("{operation}: invalid JSON"), e))?,
        created_at: from_nanos(
            operation,
            row.try_get(3).map_err(|e| backend(operation, e))?,
        )?,
        updated_at: from_nanos(
            operation,
            row.try_get(4).map_err(|e| backend(operation, e))?,
        )?,
    };
    Ok((record, body.len()))
}

/// Binds `INSERT INTO resources (collection, id, parent, body, filter_fields, created_at,
/// updated_at)` to `$1..$7` and runs it; the number of rows written.
async fn insert_row(
    client: &Client,
    operation: &'static str,
    sql: &str,
    collection: Collection,
    row: &RecordRow,
) -> StoreResult<u64> {
    let statement = client.prepare_cached(sql).await.map_err(fail(operation))?;
    client
        .execute(
            &statement,
            &[
                &collection.key(),
                &row.id,
                &row.parent,
                &row.body,
                &row.filter_fields,
                &row.created_at,
                &row.updated_at,
            ],
        )
        .await
        .map_err(fail(operation))
}

pub(super) async fn insert(pool: &Pool, collection: Collection, record: Record) -> StoreResult<()> {
    const OPERATION: &str = "insert";
    let row = RecordRow::from_record(OPERATION, &record)?;
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let inserted = insert_row(
        &client,
        OPERATION,
        "INSERT INTO resources (collection, id, parent, body, filter_fields, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7) ON CONFLICT DO NOTHING",
        collection,
        &row,
    )
    .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "{} {}",
            collection.noun(),
            row.id
        )));
    }
    Ok(())
}

pub(super) async fn upsert(pool: &Pool, collection: Collection, record: Record) -> StoreResult<()> {
    const OPERATION: &str = "upsert";
    let row = RecordRow::from_record(OPERATION, &record)?;
    let client = pool.get().await.map_err(fail(OPERATION))?;
    insert_row(
        &client,
        OPERATION,
        "INSERT INTO resources (collection, id, parent, body, filter_fields, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)
         ON CONFLICT (collection, id) DO UPDATE SET
             parent = excluded.parent,
             body = excluded.body,
             filter_fields = excluded.filter_fields,
             updated_at = excluded.updated_at",
        collection,
        &row,
    )
    .await
    .map(drop)
}

pub(super) async fn get(
    pool: &Pool,
    collection: Collection,
    id: &str,
) -> StoreResult<Option<Record>> {
    const OPERATION: &str = "get";
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM resources WHERE collection = $1 AND id = $2"
        ))
        .await
        .map_err(fail(OPERATION))?;
    let row = client
        .query_opt(&statement, &[&collection.key(), &id])
        .await
        .map_err(fail(OPERATION))?;
    row.map(|row| read_record(OPERATION, &row).map(|(record, _)| record))
        .transpose()
}

pub(super) async fn update(
    pool: &Pool,
    collection: Collection,
    record: Record,
) -> StoreResult<bool> {
    const OPERATION: &str = "update";
    let row = RecordRow::from_record(OPERATION, &record)?;
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(
            "UPDATE resources SET body = $3, filter_fields = $4::text::jsonb, updated_at = $5
             WHERE collection = $1 AND id = $2",
        )
        .await
        .map_err(fail(OPERATION))?;
    let changed = client
        .execute(
            &statement,
            &[
                &collection.key(),
                &row.id,
                &row.body,
                &row.filter_fields,
                &row.updated_at,
            ],
        )
        .await
        .map_err(fail(OPERATION))?;
    Ok(changed > 0)
}

/// Deletes a record and, in the same transaction, an agent's tools or a session's history,
/// journal and held calls.
pub(super) async fn delete(pool: &Pool, collection: Collection, id: &str) -> StoreResult<bool> {
    const OPERATION: &str = "delete";
    let mut client = pool.get().await.map_err(fail(OPERATION))?;
    let tx = client.transaction().await.map_err(fail(OPERATION))?;
    let deleted = execute(
        &tx,
        OPERATION,
        "DELETE FROM resources WHERE collection = $1 AND id = $2",
        &[&collection.key(), &id],
    )
    .await?;
    if deleted == 0 {
        return Ok(false);
    }
    match collection {
        Collection::Agents => {
            execute(
                &tx,
                OPERATION,
                "DELETE FROM resources WHERE collection = $1 AND parent = $2",
                &[&Collection::AgentTools.key(), &id],
            )
            .await?;
        }
        Collection::Sessions => remove_conversation(&tx, OPERATION, id).await?,
        Collection::Users | Collection::AgentTools => {}
    }
    tx.commit().await.map_err(fail(OPERATION))?;
    Ok(true)
}

/// Runs one prepared statement in a transaction; the number of rows it changed.
pub(super) async fn execute(
    tx: &Transaction<'_>,
    operation: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<u64> {
    let statement = tx.prepare_cached(sql).await.map_err(fail(operation))?;
    tx.execute(&statement, params)
        .await
        .map_err(fail(operation))
}

/// The SQL of a list page. Only the shape varies (parent filter or not, metadata filters or
/// not, sort column and direction), each from a fixed fragment; every value is a parameter.
///
/// Metadata filters come as two arrays, keys and values, so one statement serves any number
/// of them. A filter `(key, value)` matches when `body.metadata[key]` is the string `value`,
/// or a number or boolean whose JSON text is `value` (compared in `filter_fields`). The key is
/// a plain field name: dots and quotes in it are taken literally.
fn list_sql(query: &ListQuery) -> String {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE collection = $1");
    let mut next = 2;
    if query.parent.is_some() {
        sql.push_str(&format!(" AND parent = ${next}"));
        next += 1;
    }
    if !query.metadata_filter.is_empty() {
        let (keys, values) = (next, next + 1);
        next += 2;
        sql.push_str(&format!(
            " AND NOT EXISTS (
                SELECT 1 FROM unnest(${keys}::text[], ${values}::text[]) AS filter (key, value)
                WHERE filter_fields ->> filter.key IS DISTINCT FROM filter.value)"
        ));
    }
    let (column, direction) = (query.sort_by.column(), query.direction.keyword());
    sql.push_str(&format!(
        " ORDER BY {column} {direction}, id {direction} LIMIT ${} OFFSET ${}",
        next,
        next + 1
    ));
    sql
}

/// A page of a collection. Rows are read as the server sends them; once their bodies pass
/// `max_bytes` the read stops with [`StoreError::PageTooLarge`], and the rows still on their
/// way are discarded by the connection rather than held.
pub(super) async fn list(
    pool: &Pool,
    collection: Collection,
    query: &ListQuery,
) -> StoreResult<Vec<Record>> {
    const OPERATION: &str = "list";
    let collection_key = collection.key();
    let (keys, values): (Vec<String>, Vec<String>) = query
        .metadata_filter
        .iter()
        .map(|(key, value)| (filter_text(key), filter_text(value)))
        .unzip();
    let (limit, offset) = (i64::from(query.limit), i64::from(query.offset));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&collection_key];
    if let Some(parent) = &query.parent {
        params.push(parent);
    }
    if !keys.is_empty() {
        params.push(&keys);
        params.push(&values);
    }
    params.push(&limit);
    params.push(&offset);

    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(&list_sql(query))
        .await
        .map_err(fail(OPERATION))?;
    let rows = client
        .query_raw(&statement, params)
        .await
        .map_err(fail(OPERATION))?;
    let mut rows = pin!(rows);
    let (mut records, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.try_next().await.map_err(fail(OPERATION))? {
        let (record, body_len) = read_record(OPERATION, &row)?;
        bytes = bytes.saturating_add(body_len);
        if bytes > query.max_bytes {
            return Err(StoreError::PageTooLarge(query.max_bytes));
        }
        records.push(record);
    }
    Ok(records)
}
