//! Tests of what the embedded store adds around SQLite: the data directory lock, group commit
//! keeping failed writes apart, and the in-memory mirror agreeing with the database after
//! every kind of write.

use std::sync::Arc;

use serde_json::json;

use crate::store::sqlite::tests::{
    entry, entry_ids, ids, open, raw, record, shared, temp_db, tool,
};
use crate::store::sqlite::{SqliteStore, read_history};
use crate::store::{Collection, ListQuery, Record, Store, StoreError};

#[tokio::test]
async fn a_second_store_on_the_same_file_is_refused_until_the_first_closes() {
    let (_dir, path) = temp_db();
    let first = open(&path);
    let refused = SqliteStore::open(&path).map(|_| ());
    assert!(
        matches!(refused, Err(ref e @ StoreError::Backend { .. }) if e.to_string().contains("in use by another agentd")),
        "{refused:?}"
    );
    first
        .insert(Collection::Users, record("u1", json!({}), 0, 0))
        .await
        .expect("insert");
    drop(first);
    let second = open(&path);
    assert!(
        second
            .get(Collection::Users, "u1")
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_in_a_group_leaves_the_others_committed() {
    let (_dir, path) = temp_db();
    let store = Arc::new(open(&path));
    // Every id is inserted twice at once: one of each pair must fail with a conflict and
    // neither failure may undo a write that shared its commit.
    let mut handles = Vec::new();
    for n in 0..128 {
        let store = Arc::clone(&store);
        let id = format!("u{}", n / 2);
        handles.push(tokio::spawn(async move {
            store
                .insert(Collection::Users, record(&id, json!({ "n": n }), n, n))
                .await
        }));
    }
    let (mut ok, mut conflicts) = (0, 0);
    for handle in handles {
        match handle.await.expect("task") {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, conflicts), (64, 64));
    drop(store);
    let reopened = open(&path);
    let all = reopened
        .list(
            Collection::Users,
            &ListQuery {
                limit: 1000,
                ..ListQuery::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(all.len(), 64);
}

/// The mirror's answer and the database's own answer for one agent, its tools and a session.
async fn assert_agrees(store: &SqliteStore, agent: &str, session: &str) {
    let listed = store
        .list(
            Collection::AgentTools,
            &ListQuery {
                parent: Some(agent.to_owned()),
                direction: crate::store::Direction::Asc,
                ..ListQuery::default()
            },
        )
        .await
        .expect("list");
    let children = store
        .children(Collection::AgentTools, agent)
        .await
        .expect("children");
    assert_eq!(ids(&children), ids(&listed), "tools of {agent}");
    let in_file = read_history(store, session, -1, 0).await.expect("history");
    let in_file: Vec<_> = in_file
        .into_iter()
        .map(|(stored, _)| stored.into_entry().expect("parses"))
        .collect();
    let full = store.full_history(session).await.expect("full history");
    assert_eq!(
        entry_ids(&full),
        entry_ids(&in_file),
        "history of {session}"
    );
    let paged = store.history(session, 2, 1).await.expect("page");
    assert_eq!(
        entry_ids(&paged),
        entry_ids(in_file.iter().skip(1).take(2)),
        "a page of {session}"
    );
    let by_list = store
        .list(Collection::Agents, &ListQuery::default())
        .await
        .expect("agents")
        .into_iter()
        .find(|r| r.id == agent);
    let by_get = store.get(Collection::Agents, agent).await.expect("get");
    assert_eq!(by_get.as_deref(), by_list.as_ref(), "agent {agent}");
}

#[tokio::test]
async fn the_mirror_agrees_with_the_database_after_every_kind_of_write() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let (agent, session) = ("a1", "s1");
    // Fill the mirror while everything is absent.
    assert_agrees(&store, agent, session).await;

    store
        .insert(Collection::Agents, record(agent, json!({ "v": 1 }), 0, 0))
        .await
        .expect("insert agent");
    assert_agrees(&store, agent, session).await;
    store
        .update(Collection::Agents, record(agent, json!({ "v": 2 }), 0, 5))
        .await
        .expect("update");
    assert_agrees(&store, agent, session).await;
    store
        .upsert(Collection::Agents, record(agent, json!({ "v": 3 }), 9, 9))
        .await
        .expect("upsert");
    assert_agrees(&store, agent, session).await;
    let got = store.get(Collection::Agents, agent).await.expect("get");
    assert_eq!(got.map(|r| r.body.clone()), Some(json!({ "v": 3 })));

    for t in ["t1", "t2", "t3"] {
        store
            .insert(Collection::AgentTools, tool(t, agent))
            .await
            .expect("tool");
        assert_agrees(&store, agent, session).await;
    }
    store
        .delete(Collection::AgentTools, "t2")
        .await
        .expect("delete tool");
    assert_agrees(&store, agent, session).await;
    let moved = Record {
        body: json!({ "name": "t3", "moved": true }),
        ..tool("t3", agent)
    };
    store
        .upsert(Collection::AgentTools, moved)
        .await
        .expect("upsert tool");
    assert_agrees(&store, agent, session).await;

    store
        .append_entries(shared(vec![
            entry(session, "e1", "one"),
            entry(session, "e2", "two"),
        ]))
        .await
        .expect("append");
    assert_agrees(&store, agent, session).await;
    store
        .append_entries(shared(vec![entry(session, "e3", "three")]))
        .await
        .expect("append");
    assert_agrees(&store, agent, session).await;
    store.clear_history(session).await.expect("clear");
    assert_agrees(&store, agent, session).await;
    store
        .append_entries(shared(vec![entry(session, "e4", "four")]))
        .await
        .expect("append");
    store
        .insert(Collection::Sessions, record(session, json!({}), 0, 0))
        .await
        .expect("session");
    store
        .delete(Collection::Sessions, session)
        .await
        .expect("delete session");
    assert_agrees(&store, agent, session).await;
    assert!(
        store
            .full_history(session)
            .await
            .expect("history")
            .is_empty()
    );

    store
        .delete(Collection::Agents, agent)
        .await
        .expect("delete agent");
    assert_agrees(&store, agent, session).await;
    assert!(
        store
            .children(Collection::AgentTools, agent)
            .await
            .expect("children")
            .is_empty()
    );
}

#[tokio::test]
async fn a_new_session_starts_with_its_history_in_the_mirror_only_when_it_has_none() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store
        .insert(Collection::Sessions, record("fresh", json!({}), 0, 0))
        .await
        .expect("insert");
    // A row written behind the store's back is seen only by a read of SQLite.
    write_behind(&path, "fresh", "behind");
    let fresh = store.full_history("fresh").await.expect("history");
    assert!(
        fresh.is_empty(),
        "a new session's first read is answered from the mirror"
    );
    let page = store.history("fresh", 10, 0).await.expect("page");
    assert!(page.is_empty(), "so is a page of its history: {page:?}");
    drop(store);
    let reopened = open(&path);
    let behind = reopened.full_history("fresh").await.expect("history");
    assert_eq!(entry_ids(&behind), ["behind"], "the row is in the file");
    let store = reopened;

    // An id that already has history rows is not taken for empty.
    store
        .append_entries(shared(vec![entry("reused", "e1", "one")]))
        .await
        .expect("append");
    store
        .insert(Collection::Sessions, record("reused", json!({}), 0, 0))
        .await
        .expect("insert");
    let reused = store.full_history("reused").await.expect("history");
    assert_eq!(entry_ids(&reused), ["e1"]);
}

/// Writes a history row of `session` and moves its head, behind the store's back. The row's
/// `seq` lies far past the ones the open store hands out next, so a later write through the
/// store does not collide with it.
fn write_behind(path: &std::path::Path, session: &str, id: &str) {
    let conn = raw(path);
    conn.execute(
        "INSERT INTO history (seq, session_id, prev, entries, entry_heads, messages)
         VALUES ((SELECT coalesce(max(seq), 0) + 1000000 FROM history), ?1,
                 (SELECT last FROM history_heads WHERE session_id = ?1), 1,
                 json_array(json_array(?2, 'api_request', 'user', 0, length(?3))),
                 '[' || ?3 || ']')",
        [session, id, r#"{"role":"user","content":"x"}"#],
    )
    .expect("row behind the store");
    conn.execute(
        "INSERT INTO history_heads (session_id, last) VALUES (?1, last_insert_rowid())
         ON CONFLICT (session_id) DO UPDATE SET last = excluded.last",
        [session],
    )
    .expect("head behind the store");
}

#[tokio::test]
async fn a_page_of_a_history_the_mirror_does_not_hold_is_read_from_the_file_and_not_kept() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store
        .append_entries(shared(vec![
            entry("idle", "e1", "one"),
            entry("idle", "e2", "two"),
        ]))
        .await
        .expect("append");
    drop(store);
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.history("idle", 10, 0).await.expect("page")),
        ["e1", "e2"]
    );
    // Had the page filled the mirror, the next page would not see this row.
    write_behind(&path, "idle", "e3");
    assert_eq!(
        entry_ids(&store.history("idle", 2, 1).await.expect("page")),
        ["e2", "e3"],
        "the second page read the file again"
    );
    // Once a turn has read the history, pages come from the mirror.
    let held = store.full_history("idle").await.expect("history");
    assert_eq!(entry_ids(&held), ["e1", "e2", "e3"]);
    write_behind(&path, "idle", "e4");
    assert_eq!(
        entry_ids(&store.history("idle", 10, 1).await.expect("page")),
        ["e2", "e3"],
        "a page of a held history is cut from the mirror"
    );
}

#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background_and_reused() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let wal = path.with_extension("db-wal");
    let write_some = |round: usize| {
        let store = &store;
        async move {
            for i in 0..300 {
                let text = "x".repeat(500);
                store
                    .append_entries(shared(vec![entry("s", &format!("{round}-{i}"), &text)]))
                    .await
                    .expect("append");
            }
        }
    };
    write_some(0).await;
    let first = std::fs::metadata(&wal).expect("wal").len();
    assert!(
        first > 100_000,
        "the WAL holds the first round ({first} bytes)"
    );
    // Commits never checkpoint by themselves; the background thread does within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    write_some(1).await;
    let second = std::fs::metadata(&wal).expect("wal").len();
    assert!(
        second < first * 3 / 2,
        "the second round reused the checkpointed WAL ({first} then {second} bytes)"
    );
    assert_eq!(store.full_history("s").await.expect("history").len(), 600);
}

#[tokio::test]
async fn the_mirror_keeps_its_own_copy_of_appended_entries() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store
        .insert(Collection::Sessions, record("s", json!({}), 0, 0))
        .await
        .expect("session");
    assert!(store.full_history("s").await.expect("history").is_empty());
    let appended = shared(vec![entry("s", "e1", "one"), entry("s", "e2", "two")]);
    store
        .append_entries(appended.clone())
        .await
        .expect("append");
    let held = store.full_history("s").await.expect("history");
    assert_eq!(entry_ids(&held), ["e1", "e2"]);
    for (kept, given) in held.iter().zip(&appended) {
        assert!(
            !Arc::ptr_eq(kept, given),
            "the mirror holds the caller's allocation of {}",
            given.id
        );
        assert!(
            !kept.json.is_made(),
            "the mirror's copy of {} keeps a text the joined JSON holds",
            given.id
        );
        assert_eq!(kept.message, given.message);
        assert_eq!(kept.message_text(), given.message_text());
        assert_eq!(
            Arc::strong_count(given),
            1,
            "only the caller holds its entry"
        );
    }
}
