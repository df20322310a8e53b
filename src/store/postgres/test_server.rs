//! The store's tests on the shared PostgreSQL test server (`agentd-testpg`): a store
//! connected to a test's own database.

pub(super) use agentd_testpg::{POOL_SIZE, TestDatabase};

use crate::store::postgres::PostgresStore;

/// A store on `db` (migrating it if it is new).
pub(super) async fn connect_store(db: &TestDatabase) -> PostgresStore {
    PostgresStore::connect(&db.url(), db.password(), POOL_SIZE)
        .await
        .expect("connect the store")
}
