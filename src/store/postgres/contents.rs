//! Whether a PostgreSQL database already holds agentd's data: `agentd migrate` copies only
//! into an empty one, so it never mixes two instances' data.

use crate::store::StoreResult;
use crate::store::postgres::PostgresStore;
use crate::store::postgres::codec::fail;

impl PostgresStore {
    /// Whether any resource, history entry, journaled call or held call is stored.
    pub async fn holds_data(&self) -> StoreResult<bool> {
        const OPERATION: &str = "holds data";
        let client = self.pool.get().await.map_err(fail(OPERATION))?;
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM resources)
                     OR EXISTS (SELECT 1 FROM history)
                     OR EXISTS (SELECT 1 FROM journal)
                     OR EXISTS (SELECT 1 FROM approvals)",
                &[],
            )
            .await
            .map_err(fail(OPERATION))?
            .try_get(0)
            .map_err(fail(OPERATION))
    }
}
