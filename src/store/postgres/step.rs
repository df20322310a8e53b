//! One step of a turn in one PostgreSQL transaction: history entries, journal starts, journal
//! finishes and calls held for approval. Any failure rolls the whole step back.

use deadpool_postgres::Pool;
use time::OffsetDateTime;

use crate::store::postgres::approvals::{HoldRow, insert_holds};
use crate::store::postgres::codec::{fail, to_nanos};
use crate::store::postgres::history::{EntryRow, insert_entries};
use crate::store::postgres::journal::{StartRow, insert_start, update_finish};
use crate::store::{StepWrite, StoreResult};

const OPERATION: &str = "step";

pub(super) async fn write_step(pool: &Pool, step: StepWrite) -> StoreResult<Vec<bool>> {
    let StepWrite {
        entries,
        start,
        finish,
        hold,
    } = step;
    if entries.is_empty() && start.is_empty() && finish.is_empty() && hold.is_empty() {
        return Ok(Vec::new());
    }
    // Serialize before taking a connection, so the transaction only binds and sends.
    let rows = entries
        .iter()
        .map(|entry| EntryRow::from_entry(OPERATION, entry))
        .collect::<StoreResult<Vec<_>>>()?;
    let starts = start
        .into_iter()
        .map(|record| StartRow::from_record(OPERATION, record))
        .collect::<StoreResult<Vec<_>>>()?;
    let holds = hold
        .into_iter()
        .map(|record| HoldRow::from_record(OPERATION, record))
        .collect::<StoreResult<Vec<_>>>()?;
    let finished_at = to_nanos(OPERATION, OffsetDateTime::now_utc())?;

    let mut client = pool.get().await.map_err(fail(OPERATION))?;
    // Dropped without a commit on any error below: the server rolls the step back.
    let tx = client.transaction().await.map_err(fail(OPERATION))?;
    insert_entries(&tx, OPERATION, &rows).await?;
    let mut fresh = Vec::with_capacity(starts.len());
    for row in &starts {
        fresh.push(insert_start(&tx, OPERATION, row).await?);
    }
    for result in &finish {
        update_finish(&tx, OPERATION, result, finished_at).await?;
    }
    insert_holds(&tx, OPERATION, &holds).await?;
    tx.commit().await.map_err(fail(OPERATION))?;
    Ok(fresh)
}
