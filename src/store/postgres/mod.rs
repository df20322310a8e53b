//! The shared [`Store`]: PostgreSQL, so several agentd instances can use one database.
//!
//! Every call takes a pooled connection ([`connect`]), runs prepared statements (cached per
//! connection) and gives the connection back. Nothing is cached in memory: another instance
//! may have written any row since, so every read goes to the server. A write that changes
//! several rows (a turn's step, a delete with what hangs off it, a decision on a held call)
//! runs in one transaction. The schema is migrated at connect ([`migrations`]).

mod approvals;
mod claims;
mod codec;
mod connect;
mod contents;
mod history;
mod journal;
mod migrations;
mod resources;
mod step;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_approvals;
#[cfg(test)]
mod tests_history;
#[cfg(test)]
mod tests_shared;
#[cfg(test)]
mod tests_tls;
mod tls;
mod tls_connect;
mod tls_verify;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use time::OffsetDateTime;

use crate::session::History;
use crate::session::message::Entry;
use crate::store::postgres::codec::{backend, fail};
use crate::store::{
    ApprovalDecision, ApprovalRecord, ApprovalState, Collection, JournalRecord, ListQuery, Record,
    StepWrite, Store, StoreResult,
};

/// How long [`Store::ping`] waits for a connection and an answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// PostgreSQL-backed store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, with libpq-style options such as
    /// `connect_timeout`), with `password` given apart from the URL (from a secret reference),
    /// keeping at most `pool_size` connections, and brings the schema up to date. TLS follows
    /// the URL's `sslmode` as in libpq, with the system's CA certificates as roots.
    pub async fn connect(
        url: &str,
        password: Option<String>,
        pool_size: usize,
    ) -> StoreResult<Self> {
        Self::connect_trusting(url, password, pool_size, None).await
    }

    /// [`connect`](Self::connect), also trusting the CA certificates of `ca_file` (PEM,
    /// `storage.ca_file`) for `sslmode` `verify-ca` and `verify-full` (and, as in libpq, checking
    /// the chain under `prefer` and `require` when it is given).
    pub async fn connect_trusting(
        url: &str,
        password: Option<String>,
        pool_size: usize,
        ca_file: Option<&std::path::Path>,
    ) -> StoreResult<Self> {
        let pool = connect::pool(url, password, pool_size, ca_file)?;
        migrations::migrate(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert(&self, collection: Collection, record: Record) -> StoreResult<()> {
        resources::insert(&self.pool, collection, record).await
    }

    async fn upsert(&self, collection: Collection, record: Record) -> StoreResult<()> {
        resources::upsert(&self.pool, collection, record).await
    }

    /// Read from the server every time; the `Arc` is the caller's alone.
    async fn get(&self, collection: Collection, id: &str) -> StoreResult<Option<Arc<Record>>> {
        Ok(resources::get(&self.pool, collection, id)
            .await?
            .map(Arc::new))
    }

    async fn list(&self, collection: Collection, query: &ListQuery) -> StoreResult<Vec<Record>> {
        resources::list(&self.pool, collection, query).await
    }

    async fn update(&self, collection: Collection, record: Record) -> StoreResult<bool> {
        resources::update(&self.pool, collection, record).await
    }

    async fn delete(&self, collection: Collection, id: &str) -> StoreResult<bool> {
        resources::delete(&self.pool, collection, id).await
    }

    async fn write_step(&self, step: StepWrite) -> StoreResult<Vec<bool>> {
        step::write_step(&self.pool, step).await
    }

    async fn history(&self, session_id: &str, limit: u32, offset: u32) -> StoreResult<Vec<Entry>> {
        history::read(
            &self.pool,
            session_id,
            Some(i64::from(limit)),
            i64::from(offset),
        )
        .await
    }

    async fn full_history(&self, session_id: &str) -> StoreResult<History> {
        history::full(&self.pool, session_id).await
    }

    async fn clear_history(&self, session_id: &str) -> StoreResult<()> {
        history::clear(&self.pool, session_id).await
    }

    async fn journal_get(
        &self,
        session_id: &str,
        call_id: &str,
        digest: &str,
    ) -> StoreResult<Option<JournalRecord>> {
        journal::get(&self.pool, session_id, call_id, digest).await
    }

    async fn approvals(&self, session_id: &str) -> StoreResult<Vec<ApprovalRecord>> {
        approvals::of_session(&self.pool, session_id).await
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
        approvals::decide(&self.pool, session_id, call_id, digest, state, reason, now).await
    }

    async fn approvals_pending(&self, now: OffsetDateTime) -> StoreResult<u64> {
        approvals::count_pending(&self.pool, now).await
    }

    fn shared(&self) -> bool {
        true
    }

    async fn claim_turn(
        &self,
        session_id: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<bool> {
        claims::claim(&self.pool, session_id, owner, ttl).await
    }

    async fn release_turn(&self, session_id: &str, owner: &str) -> StoreResult<()> {
        claims::release(&self.pool, session_id, owner).await
    }

    /// A pooled connection answers `SELECT 1` within [`PING_TIMEOUT`].
    async fn ping(&self) -> StoreResult<()> {
        const OPERATION: &str = "ping";
        let probe = async {
            let client = self.pool.get().await.map_err(fail(OPERATION))?;
            let statement = client
                .prepare_cached("SELECT 1")
                .await
                .map_err(fail(OPERATION))?;
            client
                .query_one(&statement, &[])
                .await
                .map_err(fail(OPERATION))?;
            Ok(())
        };
        tokio::time::timeout(PING_TIMEOUT, probe)
            .await
            .map_err(|_| backend(OPERATION, format!("no answer within {PING_TIMEOUT:?}")))?
    }
}
