//! Calls held for a person's approval, in PostgreSQL: the holds a step commits, a decision
//! taken atomically (the row locked, checked and changed in one transaction), and the reads
//! (a session's held calls, the count of pending ones).

use deadpool_postgres::{Pool, Transaction};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::store::postgres::codec::{backend, fail, from_nanos, to_nanos};
use crate::store::{ApprovalDecision, ApprovalRecord, ApprovalState, StoreResult};

const APPROVAL_COLUMNS: &str = "session_id, call_id, digest, tool, arguments, requested_at, \
     expires_at, state, reason, decided_at";

/// A call to hold, with its times as stored.
pub(super) struct HoldRow {
    record: ApprovalRecord,
    requested_at: i64,
    expires_at: i64,
}

impl HoldRow {
    pub(super) fn from_record(operation: &str, record: ApprovalRecord) -> StoreResult<Self> {
        Ok(Self {
            requested_at: to_nanos(operation, record.requested_at)?,
            expires_at: to_nanos(operation, record.expires_at)?,
            record,
        })
    }
}

/// Records each call `Pending` (whatever state the record claims); a call already held under
/// its session and id keeps its row.
pub(super) async fn insert_holds(
    tx: &Transaction<'_>,
    operation: &'static str,
    rows: &[HoldRow],
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO approvals ({APPROVAL_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', NULL, NULL)
             ON CONFLICT DO NOTHING"
        ))
        .await
        .map_err(fail(operation))?;
    for row in rows {
        let record = &row.record;
        tx.execute(
            &statement,
            &[
                &record.session_id,
                &record.call_id,
                &record.digest,
                &record.tool,
                &record.arguments,
                &row.requested_at,
                &row.expires_at,
            ],
        )
        .await
        .map_err(fail(operation))?;
    }
    Ok(())
}

/// [`crate::store::Store::approval_decide`]: the row is read `FOR UPDATE`, so a concurrent
/// decision (from this instance or another) waits for this one's commit and then finds the
/// call decided.
pub(super) async fn decide(
    pool: &Pool,
    session_id: &str,
    call_id: &str,
    digest: &str,
    state: ApprovalState,
    reason: Option<String>,
    now: OffsetDateTime,
) -> StoreResult<ApprovalDecision> {
    const OPERATION: &str = "approval decide";
    if !matches!(
        state,
        ApprovalState::Approved | ApprovalState::Denied | ApprovalState::Superseded
    ) {
        return Err(backend(
            OPERATION,
            format!("{} is not a decision", state.as_str()),
        ));
    }
    let decided_at = to_nanos(OPERATION, now)?;
    let mut client = pool.get().await.map_err(fail(OPERATION))?;
    let tx = client.transaction().await.map_err(fail(OPERATION))?;
    let statement = tx
        .prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals
             WHERE session_id = $1 AND call_id = $2 FOR UPDATE"
        ))
        .await
        .map_err(fail(OPERATION))?;
    let Some(row) = tx
        .query_opt(&statement, &[&session_id, &call_id])
        .await
        .map_err(fail(OPERATION))?
    else {
        return Ok(ApprovalDecision::NotFound);
    };
    let mut record = read_approval(OPERATION, &row)?;
    if record.digest != digest {
        return Ok(ApprovalDecision::DigestMismatch(record));
    }
    if record.state != ApprovalState::Pending {
        return Ok(ApprovalDecision::AlreadyDecided(record));
    }
    let expired = to_nanos(OPERATION, record.expires_at)? <= decided_at;
    let (state, reason) = if expired {
        (
            ApprovalState::Expired,
            Some(crate::store::EXPIRED_REASON.to_owned()),
        )
    } else {
        (state, reason)
    };
    let statement = tx
        .prepare_cached(
            "UPDATE approvals SET state = $3, reason = $4, decided_at = $5
             WHERE session_id = $1 AND call_id = $2 AND state = 'pending'",
        )
        .await
        .map_err(fail(OPERATION))?;
    let changed = tx
        .execute(
            &statement,
            &[&session_id, &call_id, &state.as_str(), &reason, &decided_at],
        )
        .await
        .map_err(fail(OPERATION))?;
    if changed != 1 {
        return Err(backend(
            OPERATION,
            format!("held call {call_id} of session {session_id} changed while it was decided"),
        ));
    }
    tx.commit().await.map_err(fail(OPERATION))?;
    record.state = state;
    record.reason = reason;
    record.decided_at = Some(now);
    Ok(if expired {
        ApprovalDecision::Expired(record)
    } else {
        ApprovalDecision::Decided(record)
    })
}

/// Every call of a session held for approval, decided ones too, oldest first.
pub(super) async fn of_session(pool: &Pool, session_id: &str) -> StoreResult<Vec<ApprovalRecord>> {
    const OPERATION: &str = "approvals";
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE session_id = $1
             ORDER BY requested_at, call_id"
        ))
        .await
        .map_err(fail(OPERATION))?;
    let rows = client
        .query(&statement, &[&session_id])
        .await
        .map_err(fail(OPERATION))?;
    rows.iter()
        .map(|row| read_approval(OPERATION, row))
        .collect()
}

/// The state is a literal, not a parameter, so the planner can use the partial index
/// `approvals_pending_by_expiry`.
pub(super) const COUNT_PENDING: &str =
    "SELECT count(*) FROM approvals WHERE state = 'pending' AND expires_at > $1";

/// How many held calls are `Pending` with `expires_at` after `now`, across sessions.
pub(super) async fn count_pending(pool: &Pool, now: OffsetDateTime) -> StoreResult<u64> {
    const OPERATION: &str = "approvals pending";
    let now = to_nanos(OPERATION, now)?;
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(COUNT_PENDING)
        .await
        .map_err(fail(OPERATION))?;
    let count: i64 = client
        .query_one(&statement, &[&now])
        .await
        .map_err(fail(OPERATION))?
        .try_get(0)
        .map_err(fail(OPERATION))?;
    u64::try_from(count).map_err(|_| backend(OPERATION, format!("negative count {count}")))
}

/// Reads [`APPROVAL_COLUMNS`] into a record.
fn read_approval(operation: &str, row: &Row) -> StoreResult<ApprovalRecord> {
    let get = |e| backend(operation, e);
    let state: &str = row.try_get(7).map_err(get)?;
    let decided_at: Option<i64> = row.try_get(9).map_err(get)?;
    Ok(ApprovalRecord {
        session_id: row.try_get(0).map_err(get)?,
        call_id: row.try_get(1).map_err(get)?,
        digest: row.try_get(2).map_err(get)?,
        tool: row.try_get(3).map_err(get)?,
        arguments: row.try_get(4).map_err(get)?,
        requested_at: from_nanos(operation, row.try_get(5).map_err(get)?)?,
        expires_at: from_nanos(operation, row.try_get(6).map_err(get)?)?,
        state: ApprovalState::parse(state)
            .ok_or_else(|| backend(operation, format!("unknown approval state {state:?}")))?,
        reason: row.try_get(8).map_err(get)?,
        decided_at: decided_at
            .map(|nanos| from_nanos(operation, nanos))
            .transpose()?,
    })
}
