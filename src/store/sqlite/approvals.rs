//! Calls held for a person's approval, in the embedded store: their rows, the holds a step
//! commits, a decision taken as one write, and the reads (a session's held calls, the count of
//! pending ones).

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::rows::{Failure, Outcome, from_nanos, to_nanos};
use crate::store::{ApprovalDecision, ApprovalRecord, ApprovalState, StoreError, StoreResult};

const APPROVAL_COLUMNS: &str = "session_id, call_id, digest, tool, arguments, requested_at, \
     expires_at, state, reason, decided_at";

/// A call to hold, with its times as stored.
pub(super) struct HoldRow {
    record: ApprovalRecord,
    requested_at: i64,
    expires_at: i64,
}

impl HoldRow {
    pub(super) fn from_record(record: ApprovalRecord) -> Outcome<Self> {
        Ok(Self {
            requested_at: to_nanos(record.requested_at)?,
            expires_at: to_nanos(record.expires_at)?,
            record,
        })
    }
}

/// The hold insert, spelled once rather than formatted for every call.
static INSERT_HOLD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO approvals ({APPROVAL_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', NULL, NULL)
         ON CONFLICT DO NOTHING"
    )
});

/// Records each call `Pending`; a call already held under its session and id keeps its row.
pub(super) fn insert_holds(conn: &Connection, rows: &[HoldRow]) -> Outcome<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(&INSERT_HOLD)?;
    for row in rows {
        let record = &row.record;
        insert.execute(params![
            record.session_id,
            record.call_id,
            record.digest,
            record.tool,
            record.arguments,
            row.requested_at,
            row.expires_at
        ])?;
    }
    Ok(())
}

/// Which held call a decision names.
pub(super) struct CallKey {
    pub session_id: String,
    pub call_id: String,
    pub digest: String,
}

/// [`crate::store::Store::approval_decide`]: the read, the checks and the update run as one
/// job of the writer thread, so no other write comes between them.
pub(super) async fn decide(
    store: &SqliteStore,
    key: CallKey,
    state: ApprovalState,
    reason: Option<String>,
    now: OffsetDateTime,
) -> StoreResult<ApprovalDecision> {
    const OPERATION: &str = "approval decide";
    if !matches!(
        state,
        ApprovalState::Approved | ApprovalState::Denied | ApprovalState::Superseded
    ) {
        return Err(StoreError::backend(
            format!("sqlite {OPERATION}"),
            format!("{} is not a decision", state.as_str()),
        ));
    }
    let decided_at = to_nanos(now).map_err(|f| f.into_store_error(OPERATION))?;
    store
        .write(
            OPERATION,
            move |conn| decide_now(conn, &key, state, reason, decided_at),
            |_, _| {},
        )
        .await
}

fn decide_now(
    conn: &Connection,
    key: &CallKey,
    state: ApprovalState,
    reason: Option<String>,
    now: i64,
) -> Outcome<ApprovalDecision> {
    let Some(mut record) = select_one(conn, &key.session_id, &key.call_id)? else {
        return Ok(ApprovalDecision::NotFound);
    };
    if record.digest != key.digest {
        return Ok(ApprovalDecision::DigestMismatch(record));
    }
    if record.state != ApprovalState::Pending {
        return Ok(ApprovalDecision::AlreadyDecided(record));
    }
    let expired = to_nanos(record.expires_at)? <= now;
    let (state, reason) = if expired {
        (
            ApprovalState::Expired,
            Some(crate::store::EXPIRED_REASON.to_owned()),
        )
    } else {
        (state, reason)
    };
    let changed = conn
        .prepare_cached(
            "UPDATE approvals SET state = ?3, reason = ?4, decided_at = ?5
             WHERE session_id = ?1 AND call_id = ?2 AND state = 'pending'",
        )?
        .execute(params![
            key.session_id,
            key.call_id,
            state.as_str(),
            reason,
            now
        ])?;
    if changed != 1 {
        return Err(Failure::Invalid(format!(
            "held call {} of session {} changed while it was decided",
            key.call_id, key.session_id
        )));
    }
    record.state = state;
    record.reason = reason;
    record.decided_at = Some(from_nanos(now)?);
    Ok(if expired {
        ApprovalDecision::Expired(record)
    } else {
        ApprovalDecision::Decided(record)
    })
}

fn select_one(
    conn: &Connection,
    session_id: &str,
    call_id: &str,
) -> Outcome<Option<ApprovalRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE session_id = ?1 AND call_id = ?2"
    ))?
    .query_row(params![session_id, call_id], read_approval)
    .optional()?
    .transpose()
}

/// Every call of a session held for approval, decided ones too, oldest first.
pub(super) async fn of_session(
    store: &SqliteStore,
    session_id: &str,
) -> StoreResult<Vec<ApprovalRecord>> {
    let session_id = session_id.to_owned();
    store
        .read("approvals", move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE session_id = ?1
                 ORDER BY requested_at, call_id"
            ))?;
            let rows = statement.query_map(params![session_id], read_approval)?;
            let mut records = Vec::new();
            for row in rows {
                records.push(row??);
            }
            Ok(records)
        })
        .await
}

/// How many held calls are `Pending` with `expires_at` after `now`, across sessions.
pub(super) async fn count_pending(store: &SqliteStore, now: OffsetDateTime) -> StoreResult<u64> {
    let now = to_nanos(now).map_err(|f| f.into_store_error("approvals pending"))?;
    store
        .read("approvals pending", move |conn| {
            let count: i64 = conn
                .prepare_cached(COUNT_PENDING)?
                .query_row(params![now], |row| row.get(0))?;
            u64::try_from(count).map_err(|_| Failure::Invalid(format!("negative count {count}")))
        })
        .await
}

/// The state is a literal, not a parameter, so SQLite can use the partial index
/// `approvals_pending_by_expiry`.
pub(super) const COUNT_PENDING: &str =
    "SELECT count(*) FROM approvals WHERE state = 'pending' AND expires_at > ?1";

/// Reads [`APPROVAL_COLUMNS`] into a record.
fn read_approval(row: &rusqlite::Row<'_>) -> rusqlite::Result<Outcome<ApprovalRecord>> {
    let session_id: String = row.get(0)?;
    let call_id: String = row.get(1)?;
    let digest: String = row.get(2)?;
    let tool: String = row.get(3)?;
    let arguments: String = row.get(4)?;
    let requested_at: i64 = row.get(5)?;
    let expires_at: i64 = row.get(6)?;
    let state: String = row.get(7)?;
    let reason: Option<String> = row.get(8)?;
    let decided_at: Option<i64> = row.get(9)?;
    Ok((|| {
        Ok(ApprovalRecord {
            session_id,
            call_id,
            digest,
            tool,
            arguments,
            requested_at: from_nanos(requested_at)?,
            expires_at: from_nanos(expires_at)?,
            state: ApprovalState::parse(&state)
                .ok_or_else(|| Failure::Invalid(format!("unknown approval state {state:?}")))?,
            reason,
            decided_at: decided_at.map(from_nanos).transpose()?,
        })
    })())
}
