//! One step of a turn in one commit: history entries, journal starts, journal finishes and
//! calls held for approval.
//!
//! The calls of a model answer are journaled in the same commit as the answer itself, and a
//! lone call's result in the same commit as its finish, so a tool turn writes three times
//! instead of five.

use std::sync::{Arc, LazyLock};

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use crate::session::message::Entry;
use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::approvals::{HoldRow, insert_holds};
use crate::store::sqlite::history_cells::pack_runs;
use crate::store::sqlite::history_rows::insert_entries;
use crate::store::sqlite::rows::{
    EntryRow, Failure, JOURNAL_COLUMNS, Outcome, status_key, to_nanos,
};
use crate::store::{CallResult, CallStatus, JournalRecord, StepWrite, StoreResult};

/// A journal start with its times as stored.
struct StartRow {
    record: JournalRecord,
    started_at: i64,
    finished_at: Option<i64>,
}

pub(super) async fn write_step(store: &SqliteStore, step: StepWrite) -> StoreResult<Vec<bool>> {
    let StepWrite {
        entries,
        start,
        finish,
        hold,
    } = step;
    if entries.is_empty() && start.is_empty() && finish.is_empty() && hold.is_empty() {
        return Ok(Vec::new());
    }
    // Serialize before queueing, so the writer thread only binds and inserts.
    let prepared = (|| {
        let rows = entries
            .iter()
            .map(EntryRow::from_entry)
            .collect::<Outcome<Vec<_>>>()?;
        let starts = start
            .into_iter()
            .map(|record| {
                Ok(StartRow {
                    started_at: to_nanos(record.started_at)?,
                    finished_at: record.finished_at.map(to_nanos).transpose()?,
                    record,
                })
            })
            .collect::<Outcome<Vec<_>>>()?;
        let holds = hold
            .into_iter()
            .map(HoldRow::from_record)
            .collect::<Outcome<Vec<_>>>()?;
        let runs = pack_runs(&rows)?;
        Ok((
            rows,
            runs,
            starts,
            holds,
            to_nanos(OffsetDateTime::now_utc())?,
        ))
    })();
    let (rows, runs, starts, holds, finished_at) =
        prepared.map_err(|f: Failure| f.into_store_error("step"))?;
    let weighed: Vec<(Arc<Entry>, usize)> = entries
        .into_iter()
        .zip(&rows)
        .map(|(entry, row)| {
            let weight = entry.heap_bytes(row.message().len());
            (entry, weight)
        })
        .collect();
    store
        .write(
            "step",
            move |conn| {
                insert_entries(conn, &runs)?;
                let started = starts
                    .iter()
                    .map(|row| insert_start(conn, row))
                    .collect::<Outcome<Vec<bool>>>()?;
                for result in &finish {
                    update_finish(conn, result, finished_at)?;
                }
                insert_holds(conn, &holds)?;
                Ok(started)
            },
            move |cache, _| {
                let mut mirror = cache.lock();
                for (entry, weight) in weighed {
                    let session = entry.session_id.clone();
                    // The mirror keeps its own copy, made here on the writer thread, where
                    // an eviction frees it too: its long-lived entries stay on the writer's
                    // pages, apart from requests' short-lived objects, and are freed by the
                    // thread that allocated them, mimalloc's cheap path. The copy keeps no
                    // JSON text of its own: the log's joined JSON holds it. The turn's entry
                    // goes with the turn (docs/benchmarks.md, "When the mirror is full").
                    let json = entry.message_text().as_bytes();
                    // Entries a turn parsed since the history was weighed are weighed now.
                    mirror.histories.change(&session, |history| {
                        history.push_with_json(Arc::new(entry.without_json()), json);
                        weight + history.take_unweighed()
                    });
                }
            },
        )
        .await
}

/// The journal insert, spelled once rather than formatted for every call.
static INSERT_START: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT DO NOTHING"
    )
});

/// Journals a start; false if the same call (id and digest) was journaled before.
fn insert_start(conn: &Connection, row: &StartRow) -> Outcome<bool> {
    let record = &row.record;
    let inserted = conn.prepare_cached(&INSERT_START)?.execute(params![
        record.session_id,
        record.call_id,
        record.digest,
        record.tool,
        record.arguments,
        status_key(record.status),
        record.result,
        row.started_at,
        row.finished_at
    ])?;
    Ok(inserted == 1)
}

fn update_finish(conn: &Connection, result: &CallResult, finished_at: i64) -> Outcome<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE journal SET status = ?4, result = ?5, finished_at = ?6
             WHERE session_id = ?1 AND call_id = ?2 AND digest = ?3",
        )?
        .execute(params![
            result.session_id,
            result.call_id,
            result.digest,
            status_key(CallStatus::Finished),
            result.result,
            finished_at
        ])?;
    if changed == 0 {
        return Err(Failure::Invalid(format!(
            "tool call {} of session {} was never started",
            result.call_id, result.session_id
        )));
    }
    Ok(())
}
