//! Tests of what sharing one PostgreSQL database means for the store: instances see each
//! other's writes at once (nothing cached), append to one history in order, migrate a new
//! database together once, refuse a newer schema; and connecting: password, TLS, bad URLs,
//! ping.

use std::sync::Arc;

use serde_json::json;

use crate::store::postgres::PostgresStore;
use crate::store::postgres::migrations::MIGRATIONS;
use crate::store::postgres::test_server::{POOL_SIZE, TestDatabase, connect_store};
use crate::store::test_support::{DIGEST, entry, entry_ids, record, shared, started, tool};
use crate::store::{CallStatus, Collection, Record, Store, StoreError};

#[tokio::test]
async fn two_stores_on_one_database_see_each_others_writes_at_once() {
    let db = TestDatabase::create().await;
    let (a, b) = (connect_store(&db).await, connect_store(&db).await);

    // Read first, so a caching store would have something stale to serve afterwards.
    assert_eq!(a.get(Collection::Agents, "x").await.expect("get"), None);
    assert!(
        a.children(Collection::AgentTools, "x")
            .await
            .expect("children")
            .is_empty()
    );
    assert!(a.full_history("s").await.expect("history").is_empty());

    b.insert(Collection::Agents, record("x", json!({ "v": 1 }), 1, 1))
        .await
        .expect("insert");
    b.insert(Collection::AgentTools, tool("t1", "x"))
        .await
        .expect("tool");
    b.append_entries(shared(vec![entry("s", "e1", "hi")]))
        .await
        .expect("append");
    let got = a
        .get(Collection::Agents, "x")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.body, json!({ "v": 1 }));
    assert_eq!(
        a.children(Collection::AgentTools, "x")
            .await
            .expect("children")
            .len(),
        1
    );
    assert_eq!(
        entry_ids(&a.full_history("s").await.expect("history")),
        ["e1"]
    );

    // Changes and deletes too.
    let changed = Record {
        body: json!({ "v": 2 }),
        ..record("x", json!({}), 1, 2)
    };
    assert!(a.update(Collection::Agents, changed).await.expect("update"));
    assert_eq!(
        b.get(Collection::Agents, "x")
            .await
            .expect("get")
            .map(|r| r.body.clone()),
        Some(json!({ "v": 2 }))
    );
    a.append_entries(shared(vec![entry("s", "e2", "there")]))
        .await
        .expect("append");
    assert_eq!(
        entry_ids(&b.full_history("s").await.expect("history")),
        ["e1", "e2"]
    );
    assert!(b.delete(Collection::Agents, "x").await.expect("delete"));
    assert_eq!(a.get(Collection::Agents, "x").await.expect("get"), None);
    assert!(
        a.children(Collection::AgentTools, "x")
            .await
            .expect("children")
            .is_empty()
    );

    // A call one instance started is not started again by the other.
    a.journal_start(&started("s", "c1")).await.expect("start");
    let again = b.journal_start(&started("s", "c1")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    b.journal_finish("s", "c1", DIGEST, "done")
        .await
        .expect("finish");
    let finished = a
        .journal_get("s", "c1", DIGEST)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(finished.status, CallStatus::Finished);

    b.clear_history("s").await.expect("clear");
    assert!(a.full_history("s").await.expect("history").is_empty());
    assert_eq!(a.journal_get("s", "c1", DIGEST).await.expect("get"), None);
}

/// Two instances appending to one session at once: every entry lands, each instance's in the
/// order it appended them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_two_stores_keep_each_stores_order() {
    const PER_STORE: usize = 100;
    let db = TestDatabase::create().await;
    let stores = [
        Arc::new(connect_store(&db).await),
        Arc::new(connect_store(&db).await),
    ];
    let mut handles = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            for i in 0..PER_STORE {
                store
                    .append_entries(shared(vec![
                        entry("s", &format!("{n}:{i}:a"), "m"),
                        entry("s", &format!("{n}:{i}:b"), "m"),
                    ]))
                    .await
                    .expect("append");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let history = stores[0].full_history("s").await.expect("history").to_vec();
    assert_eq!(history.len(), 2 * 2 * PER_STORE);
    for n in 0..2 {
        let own: Vec<String> = history
            .iter()
            .map(|e| e.id.to_string())
            .filter(|id| id.starts_with(&format!("{n}:")))
            .collect();
        let expected: Vec<String> = (0..PER_STORE)
            .flat_map(|i| [format!("{n}:{i}:a"), format!("{n}:{i}:b")])
            .collect();
        assert_eq!(own, expected, "store {n}");
    }
    // A step's entries stay together: nothing of the other store comes between them.
    for pair in history.chunks(2) {
        let (first, second) = (&pair[0].id, &pair[1].id);
        assert!(
            first.ends_with(":a")
                && second.ends_with(":b")
                && first[..first.len() - 2] == second[..second.len() - 2],
            "{first} {second}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_migrating_one_new_database_at_once_both_succeed() {
    let db = TestDatabase::create().await;
    let url = db.url();
    let connect = || PostgresStore::connect(&url, db.password(), POOL_SIZE);
    let (a, b, c) = tokio::join!(connect(), connect(), connect());
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    let raw = db.raw().await;
    let versions: Vec<i32> = raw
        .query("SELECT version FROM schema_version", &[])
        .await
        .expect("versions")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [i32::try_from(MIGRATIONS.len()).expect("small")]);
    a.insert(Collection::Users, record("u", json!({}), 0, 0))
        .await
        .expect("insert");
    assert!(b.get(Collection::Users, "u").await.expect("get").is_some());
    c.ping().await.expect("ping");
}

#[tokio::test]
async fn a_database_with_a_newer_schema_is_refused() {
    let db = TestDatabase::create().await;
    drop(connect_store(&db).await);
    // Connecting again at the current version changes nothing and succeeds.
    drop(connect_store(&db).await);
    let newer = i32::try_from(MIGRATIONS.len() + 1).expect("small");
    db.raw()
        .await
        .execute("UPDATE schema_version SET version = $1", &[&newer])
        .await
        .expect("bump");
    let refused = PostgresStore::connect(&db.url(), db.password(), POOL_SIZE)
        .await
        .map(drop);
    assert!(
        matches!(refused, Err(ref e @ StoreError::Backend { .. }) if e.to_string().contains("newer")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn connecting_fails_cleanly() {
    let db = TestDatabase::create().await;
    let backend_error = |result: Result<PostgresStore, StoreError>, needle: &str| match result {
        Err(ref e @ StoreError::Backend { .. }) if e.to_string().contains(needle) => {}
        Err(other) => panic!("expected an error naming {needle:?}, got {other}"),
        Ok(_) => panic!("expected an error naming {needle:?}, connected"),
    };
    if db.password().is_some() {
        backend_error(
            PostgresStore::connect(&db.url(), Some("wrong".to_owned()), POOL_SIZE).await,
            "password",
        );
    }
    backend_error(
        PostgresStore::connect("not a url://", None, POOL_SIZE).await,
        "invalid connection URL",
    );
    let tls = db.url().replace("sslmode=disable", "sslmode=require");
    backend_error(
        PostgresStore::connect(&tls, db.password(), POOL_SIZE).await,
        "TLS",
    );
    backend_error(
        PostgresStore::connect(&db.url(), db.password(), 0).await,
        "pool size",
    );
    // Nothing listens on port 1 of the loopback address.
    backend_error(
        PostgresStore::connect(
            "postgres://agentd@127.0.0.1:1/agentd?sslmode=disable&connect_timeout=2",
            None,
            POOL_SIZE,
        )
        .await,
        "postgres migrate",
    );
}

#[tokio::test]
async fn ping_answers_while_the_server_does() {
    let db = TestDatabase::create().await;
    let store = connect_store(&db).await;
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn a_sessions_turn_is_claimed_by_one_instance_until_released_or_lapsed() {
    let db = TestDatabase::create().await;
    let (a, b) = (connect_store(&db).await, connect_store(&db).await);
    let minute = std::time::Duration::from_secs(60);
    assert!(a.shared() && b.shared());
    assert!(
        a.claim_turn("s", "instance-a", minute)
            .await
            .expect("claim")
    );
    assert!(
        !b.claim_turn("s", "instance-b", minute)
            .await
            .expect("claim"),
        "a held claim keeps another instance out"
    );
    assert!(
        a.claim_turn("s", "instance-a", minute)
            .await
            .expect("renew"),
        "the owner renews its claim"
    );
    assert!(
        b.claim_turn("t", "instance-b", minute)
            .await
            .expect("other session")
    );
    b.release_turn("s", "instance-b").await.expect("release");
    assert!(
        !b.claim_turn("s", "instance-b", minute)
            .await
            .expect("claim"),
        "releasing someone else's claim changes nothing"
    );
    a.release_turn("s", "instance-a").await.expect("release");
    assert!(
        b.claim_turn("s", "instance-b", minute)
            .await
            .expect("claim")
    );

    // An instance that stops renewing loses its claim once it lapses.
    assert!(
        a.claim_turn("u", "instance-a", std::time::Duration::ZERO)
            .await
            .expect("claim")
    );
    assert!(
        b.claim_turn("u", "instance-b", minute)
            .await
            .expect("claim"),
        "a lapsed claim is taken over"
    );
}
