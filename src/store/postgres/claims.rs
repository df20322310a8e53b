//! Turn claims across agentd instances: one row per session naming the instance running its
//! turn and until when. A claim is taken when there is none, when it has lapsed (its instance
//! died or stalled) or when the owner renews it, in one statement, so two instances cannot
//! both win; the loser sees no row returned.

use std::time::Duration;

use deadpool_postgres::Pool;
use time::OffsetDateTime;

use crate::store::StoreResult;
use crate::store::postgres::codec::{fail, to_nanos};

/// Claims (or renews) `session_id` for `owner` until `ttl` from now.
pub(super) async fn claim(
    pool: &Pool,
    session_id: &str,
    owner: &str,
    ttl: Duration,
) -> StoreResult<bool> {
    const OPERATION: &str = "claim a session's turn";
    let now = OffsetDateTime::now_utc();
    let until = to_nanos(OPERATION, now + ttl)?;
    let now = to_nanos(OPERATION, now)?;
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached(
            "INSERT INTO turn_claims (session_id, owner, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (session_id) DO UPDATE SET owner = $2, expires_at = $3
             WHERE turn_claims.owner = $2 OR turn_claims.expires_at <= $4
             RETURNING owner",
        )
        .await
        .map_err(fail(OPERATION))?;
    let row = client
        .query_opt(&statement, &[&session_id, &owner, &until, &now])
        .await
        .map_err(fail(OPERATION))?;
    Ok(row.is_some())
}

/// Drops `owner`'s claim on `session_id`, if it still holds it.
pub(super) async fn release(pool: &Pool, session_id: &str, owner: &str) -> StoreResult<()> {
    const OPERATION: &str = "release a session's turn";
    let client = pool.get().await.map_err(fail(OPERATION))?;
    let statement = client
        .prepare_cached("DELETE FROM turn_claims WHERE session_id = $1 AND owner = $2")
        .await
        .map_err(fail(OPERATION))?;
    client
        .execute(&statement, &[&session_id, &owner])
        .await
        .map_err(fail(OPERATION))?;
    Ok(())
}
