//! The store contract (`store/contract`) run on the PostgreSQL store, each test on a database
//! of its own on a real server, and what only this store's resources do: pages bounded in
//! bytes, bodies kept as any JSON text.

use serde_json::json;

use crate::store::contract::Fixture;
use crate::store::postgres::PostgresStore;
use crate::store::postgres::test_server::{TestDatabase, connect_store};
use crate::store::test_support::{ids, record};
use crate::store::{Collection, Direction, ListQuery, Store, StoreError};

#[tokio::test]
async fn a_page_over_its_byte_budget_fails_and_one_within_it_is_read() {
    let db = TestDatabase::create().await;
    let store = connect_store(&db).await;
    let body = json!({ "name": "x".repeat(90) });
    let body_bytes = serde_json::to_string(&body).expect("json").len();
    for (n, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let step = i64::try_from(n).expect("small");
        store
            .insert(Collection::Users, record(id, body.clone(), step, step))
            .await
            .expect("insert");
    }
    let page = |limit, offset, max_bytes| ListQuery {
        limit,
        offset,
        max_bytes,
        direction: Direction::Asc,
        ..ListQuery::default()
    };
    let two_bodies = 2 * body_bytes;
    assert_eq!(
        ids(&store
            .list(Collection::Users, &page(2, 0, two_bodies))
            .await
            .expect("exactly the budget")),
        ["a", "b"]
    );
    let over = store.list(Collection::Users, &page(3, 0, two_bodies)).await;
    assert!(
        matches!(over, Err(StoreError::PageTooLarge(limit)) if limit == two_bodies),
        "{over:?}"
    );
    let over = store
        .list(Collection::Users, &page(u32::MAX, 0, two_bodies + 1))
        .await;
    assert!(matches!(over, Err(StoreError::PageTooLarge(_))), "{over:?}");
    assert_eq!(
        ids(&store
            .list(Collection::Users, &page(100, 2, two_bodies))
            .await
            .expect("the rest fits")),
        ["c", "d"]
    );
    // The connection that stopped reading mid-page serves the next call.
    store.ping().await.expect("ping");
    assert_eq!(
        store
            .list(Collection::Users, &page(100, 0, usize::MAX))
            .await
            .expect("all")
            .len(),
        4
    );
}

/// Bodies are kept as the JSON text agentd wrote, so what PostgreSQL's `jsonb` cannot hold
/// (a NUL character in a string) round-trips, and does not break filtering other records.
#[tokio::test]
async fn bodies_round_trip_any_json_text() {
    let db = TestDatabase::create().await;
    let store = connect_store(&db).await;
    let odd = record(
        "odd",
        json!({ "name": "nul\u{0}inside", "big": u64::MAX, "small": -1.5e-300, "metadata": { "k": "v", "z": "a\u{0}b\\0" } }),
        1,
        1,
    );
    store
        .insert(Collection::Agents, odd.clone())
        .await
        .expect("insert");
    store
        .insert(
            Collection::Agents,
            record("plain", json!({ "metadata": { "k": "w" } }), 2, 2),
        )
        .await
        .expect("insert");
    assert_eq!(
        store
            .get(Collection::Agents, "odd")
            .await
            .expect("get")
            .as_deref(),
        Some(&odd)
    );
    let query = ListQuery {
        metadata_filter: vec![("k".to_owned(), "w".to_owned())],
        ..ListQuery::default()
    };
    assert_eq!(
        ids(&store.list(Collection::Agents, &query).await.expect("list")),
        ["plain"]
    );
    // Filters follow the body through updates and upserts.
    let changed = record("plain", json!({ "metadata": { "k": "x" } }), 2, 3);
    assert!(
        store
            .update(Collection::Agents, changed)
            .await
            .expect("update")
    );
    assert!(
        store
            .list(Collection::Agents, &query)
            .await
            .expect("list")
            .is_empty()
    );
    store
        .upsert(
            Collection::Agents,
            record("plain", json!({ "metadata": { "k": "w" } }), 2, 4),
        )
        .await
        .expect("upsert");
    assert_eq!(
        ids(&store.list(Collection::Agents, &query).await.expect("list")),
        ["plain"]
    );
    let filter = |value: &str| ListQuery {
        metadata_filter: vec![("z".to_owned(), value.to_owned())],
        ..ListQuery::default()
    };
    assert_eq!(
        ids(&store
            .list(Collection::Agents, &filter("a\u{0}b\\0"))
            .await
            .expect("list")),
        ["odd"]
    );
    for near_miss in ["a\\0b\\0", "a\u{0}b\u{0}", "ab\\0"] {
        assert!(
            store
                .list(Collection::Agents, &filter(near_miss))
                .await
                .expect("list")
                .is_empty(),
            "{near_miss:?}"
        );
    }
}

/// A database of its own on the shared test server.
struct PostgresFixture(TestDatabase);

impl Fixture for PostgresFixture {
    type Opened = PostgresStore;

    async fn new() -> Self {
        Self(TestDatabase::create().await)
    }

    async fn open(&self) -> PostgresStore {
        connect_store(&self.0).await
    }
}

mod contract {
    crate::store::contract::contract_tests!(super::PostgresFixture);
}
