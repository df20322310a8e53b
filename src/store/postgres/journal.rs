//! The tool-call journal in PostgreSQL: a start recorded once per call (id and digest), its
//! finish, and the read of one call.

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::Row;

use crate::store::postgres::codec::{
    backend, fail, from_nanos, parse_status, status_key, to_nanos,
};
use crate::store::{CallResult, CallStatus, JournalRecord, StoreResult};

const JOURNAL_COLUMNS: &str =
    "session_id, call_id, digest, tool, arguments, status, result, started_at, finished_at";

/// A journal start with its times as stored.
pub(super) struct StartRow {
    record: JournalRecord,
    started_at: i64,
    finished_at: Option<i64>,
}

impl StartRow {
    pub(super) fn from_record(operation: &str, record: JournalRecord) -> StoreResult<Self> {
        Ok(Self {
            started_at: to_nanos(operation, record.started_at)?,
            finished_at: record
                .finished_at
                .map(|at| to_nanos(operation, at))
                .transpose()?,
            record,
        })
    }
}

/// Journals a start; false if the same call (id and digest) was journaled before, by this
/// instance or another.
pub(super) async fn insert_start(
    tx: &Transaction<'_>,
    operation: &'static str,
    row: &StartRow,
) -> StoreResult<bool> {
    let record = &row.record;
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING"
        ))
        .await
        .map_err(fail(operation))?;
    let inserted = tx
        .execute(
            &statement,
            &[
                &record.session_id,
                &record.call_id,
                &record.digest,
                &record.tool,
                &record.arguments,
                &status_key(record.status),
                &record.result,
                &row.started_at,
                &row.finished_at,
            ],
        )
        .await
        .map_err(fail(operation))?;
    Ok(inserted == 1)
}

/// Records a call's result; a call that was never started fails (and with it the step).
pub(super) async fn update_finish(
    tx: &Transaction<'_>,
    operation: &'static str,
    result: &CallResult,
    finished_at: i64,
) -> StoreResult<()> {
    let statement = tx
        .prepare_cached(
            "UPDATE journal SET status = $4, result = $5, finished_at = $6
             WHERE session_id = $1 AND call_id = $2 AND digest = $3",
        )
        .await
        .map_err(fail(operation))?;
    let changed = tx
        .execute(
            &statement,
            &[
                &result.session_id,
                &result.call_id,
                &result.digest,
                &status_key(CallStatus::Finished),
                &result.result,
                &finished_at,
            ],
        )
        .await
        .map_err(fail(operation))?;
    if changed == 0 {
        return Err(backend(
            operation,
            format!(
                "tool call {} of session {} was never started",
                result.call_id, result.session_id
            ),
        ));
    }
    Ok(())
}

/// The journaled call with this id and digest, if any.
pub(super) async fn get(
    pool: &Pool,
    session_id: &str,
    call_id: &str,
    digest: &str,
) -> StoreResult<Option<JournalRecord>> {
    const OPERATION: &str = "journal get";
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal
             WHERE session_id = $1 AND call_id = $2 AND digest = $3"
        ))
        .await
        .map_err(fail(OPERATION))?;
    let row = client
        .query_opt(&statement, &[&session_id, &call_id, &digest])
        .await
        .map_err(fail(OPERATION))?;
    row.map(|row| read_journal(OPERATION, &row)).transpose()
}

/// Reads [`JOURNAL_COLUMNS`] into a journal record.
fn read_journal(operation: &str, row: &Row) -> StoreResult<JournalRecord> {
    let get = |e| backend(operation, e);
    let status: &str = row.try_get(5).map_err(get)?;
    let finished_at: Option<i64> = row.try_get(8).map_err(get)?;
    Ok(JournalRecord {
        session_id: row.try_get(0).map_err(get)?,
        call_id: row.try_get(1).map_err(get)?,
        digest: row.try_get(2).map_err(get)?,
        tool: row.try_get(3).map_err(get)?,
        arguments: row.try_get(4).map_err(get)?,
        status: parse_status(operation, status)?,
        result: row.try_get(6).map_err(get)?,
        started_at: from_nanos(operation, row.try_get(7).map_err(get)?)?,
        finished_at: finished_at
            .map(|nanos| from_nanos(operation, nanos))
            .transpose()?,
    })
}
