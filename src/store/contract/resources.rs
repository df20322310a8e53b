//! The contract's resource tests: CRUD in every collection, listing (order, ties, pages,
//! metadata and parent filters) and the cascades of deleting an agent or a session.

use serde_json::json;

use super::Fixture;
use crate::store::test_support::{DIGEST, at, entry, ids, record, shared, started, tool};
use crate::store::{Collection, Direction, ListQuery, Record, SortBy, Store, StoreError};

pub(crate) async fn crud_round_trips_in_every_collection(fixture: &impl Fixture) {
    let store = fixture.open().await;
    for collection in [
        Collection::Agents,
        Collection::Users,
        Collection::Sessions,
        Collection::AgentTools,
    ] {
        let original = Record {
            parent: Some("owner".to_owned()),
            ..record(
                "r1",
                json!({ "name": "first", "metadata": { "k": "v" } }),
                1,
                2,
            )
        };
        store
            .insert(collection, original.clone())
            .await
            .expect("insert");
        assert_eq!(
            store.get(collection, "r1").await.expect("get").as_deref(),
            Some(&original)
        );

        let duplicate = store.insert(collection, original.clone()).await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict(_))),
            "{collection:?}: {duplicate:?}"
        );

        let changed = Record {
            body: json!({ "name": "second" }),
            created_at: at(99),
            updated_at: at(50),
            ..original.clone()
        };
        assert!(store.update(collection, changed).await.expect("update"));
        let got = store
            .get(collection, "r1")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(got.body, json!({ "name": "second" }));
        assert_eq!(got.updated_at, at(50));
        assert_eq!(
            got.created_at, original.created_at,
            "update keeps created_at"
        );
        assert_eq!(got.parent.as_deref(), Some("owner"));

        let absent = record("nope", json!({}), 0, 0);
        assert!(
            !store
                .update(collection, absent)
                .await
                .expect("update absent")
        );
        assert!(store.delete(collection, "r1").await.expect("delete"));
        assert_eq!(store.get(collection, "r1").await.expect("get"), None);
        assert!(!store.delete(collection, "r1").await.expect("delete again"));
    }
}

pub(crate) async fn collections_are_separate_namespaces(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store
        .insert(Collection::Agents, record("x", json!({ "a": 1 }), 0, 0))
        .await
        .expect("agent");
    store
        .insert(Collection::Users, record("x", json!({ "u": 1 }), 0, 0))
        .await
        .expect("user");
    let user = store
        .get(Collection::Users, "x")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(user.body, json!({ "u": 1 }));
    assert_eq!(
        store.get(Collection::Sessions, "x").await.expect("get"),
        None
    );
}

pub(crate) async fn upsert_creates_then_replaces_keeping_created_at(fixture: &impl Fixture) {
    let store = fixture.open().await;
    store
        .upsert(Collection::Agents, record("a", json!({ "v": 1 }), 10, 10))
        .await
        .expect("create");
    let replacement = Record {
        parent: Some("p".to_owned()),
        ..record("a", json!({ "v": 2 }), 30, 40)
    };
    store
        .upsert(Collection::Agents, replacement)
        .await
        .expect("replace");
    let got = store
        .get(Collection::Agents, "a")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.body, json!({ "v": 2 }));
    assert_eq!(got.created_at, at(10));
    assert_eq!(got.updated_at, at(40));
    assert_eq!(got.parent.as_deref(), Some("p"));
}

pub(crate) async fn list_sorts_both_ways_breaks_ties_by_id_and_pages(fixture: &impl Fixture) {
    let store = fixture.open().await;
    // created order: a, b, (c and d tie), e; updated order is the reverse of created.
    for (id, created, updated) in [
        ("b", 2, 8),
        ("e", 5, 1),
        ("a", 1, 9),
        ("d", 3, 6),
        ("c", 3, 7),
    ] {
        store
            .insert(Collection::Users, record(id, json!({}), created, updated))
            .await
            .expect("insert");
    }
    let list = |sort_by, direction, limit, offset| {
        let store = store.clone();
        async move {
            let query = ListQuery {
                sort_by,
                direction,
                limit,
                offset,
                ..ListQuery::default()
            };
            store.list(Collection::Users, &query).await.expect("list")
        }
    };
    assert_eq!(
        ids(&list(SortBy::CreatedAt, Direction::Asc, 100, 0).await),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        ids(&list(SortBy::CreatedAt, Direction::Desc, 100, 0).await),
        ["e", "d", "c", "b", "a"]
    );
    assert_eq!(
        ids(&list(SortBy::UpdatedAt, Direction::Asc, 100, 0).await),
        ["e", "d", "c", "b", "a"]
    );
    assert_eq!(
        ids(&list(SortBy::UpdatedAt, Direction::Desc, 100, 0).await),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        ids(&list(SortBy::CreatedAt, Direction::Asc, 2, 0).await),
        ["a", "b"]
    );
    assert_eq!(
        ids(&list(SortBy::CreatedAt, Direction::Asc, 2, 2).await),
        ["c", "d"]
    );
    assert_eq!(
        ids(&list(SortBy::CreatedAt, Direction::Asc, 2, 4).await),
        ["e"]
    );
    assert!(
        list(SortBy::CreatedAt, Direction::Asc, 2, 5)
            .await
            .is_empty()
    );
    assert!(
        list(SortBy::CreatedAt, Direction::Asc, 0, 0)
            .await
            .is_empty()
    );
    // Default query: newest first.
    let default = store
        .list(Collection::Users, &ListQuery::default())
        .await
        .expect("list");
    assert_eq!(ids(&default), ["e", "d", "c", "b", "a"]);
    assert!(
        store
            .list(Collection::Agents, &ListQuery::default())
            .await
            .expect("list")
            .is_empty()
    );
}

pub(crate) async fn list_filters_on_metadata_strings_numbers_bools_and_odd_keys(
    fixture: &impl Fixture,
) {
    let store = fixture.open().await;
    let docs = [
        (
            "m1",
            json!({ "metadata": { "color": "red", "n": 3, "ok": true, "a.b": "dot", "q\"k": "quote" } }),
        ),
        (
            "m2",
            json!({ "metadata": {
                "color": "blue", "n": "3", "ok": false, "ratio": 2.5,
                "back\\slash": "b", "tab\tkey": "t", "ключ": "k"
            } }),
        ),
        (
            "m3",
            json!({ "metadata": { "color": "red", "n": 4, "a": { "b": "dot" } } }),
        ),
        ("m4", json!({ "name": "no metadata" })),
        ("m5", json!({ "metadata": "not an object" })),
    ];
    for (step, (id, body)) in docs.into_iter().enumerate() {
        let step = i64::try_from(step).expect("small");
        store
            .insert(Collection::Sessions, record(id, body, step, step))
            .await
            .expect("insert");
    }
    let matching = |filters: &[(&str, &str)]| {
        let store = store.clone();
        let metadata_filter = filters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>();
        async move {
            let query = ListQuery {
                metadata_filter,
                direction: Direction::Asc,
                ..ListQuery::default()
            };
            let found = store
                .list(Collection::Sessions, &query)
                .await
                .expect("list");
            found.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(matching(&[("color", "red")]).await, ["m1", "m3"]);
    assert_eq!(matching(&[("color", "red"), ("n", "4")]).await, ["m3"]);
    assert_eq!(
        matching(&[("n", "3")]).await,
        ["m1", "m2"],
        "number 3 and string \"3\""
    );
    assert_eq!(matching(&[("ok", "true")]).await, ["m1"]);
    assert_eq!(matching(&[("ok", "false")]).await, ["m2"]);
    assert_eq!(matching(&[("ratio", "2.5")]).await, ["m2"]);
    assert_eq!(
        matching(&[("a.b", "dot")]).await,
        ["m1"],
        "dot is part of the key, not a path"
    );
    assert_eq!(matching(&[("q\"k", "quote")]).await, ["m1"]);
    assert_eq!(
        matching(&[("back\\slash", "b"), ("tab\tkey", "t"), ("ключ", "k")]).await,
        ["m2"]
    );
    assert!(matching(&[("color", "RED")]).await.is_empty());
    assert!(matching(&[("missing", "x")]).await.is_empty());
    assert!(
        matching(&[("color", "\"red\"")]).await.is_empty(),
        "strings compare unquoted"
    );

    // Pagination applies to the filtered rows.
    let page = ListQuery {
        metadata_filter: vec![("color".to_owned(), "red".to_owned())],
        direction: Direction::Asc,
        limit: 1,
        offset: 1,
        ..ListQuery::default()
    };
    assert_eq!(
        ids(&store.list(Collection::Sessions, &page).await.expect("list")),
        ["m3"]
    );
}

pub(crate) async fn list_filters_on_parent(fixture: &impl Fixture) {
    let store = fixture.open().await;
    for (id, agent) in [("t1", "a1"), ("t2", "a2"), ("t3", "a1")] {
        store
            .insert(Collection::AgentTools, tool(id, agent))
            .await
            .expect("insert");
    }
    let query = ListQuery {
        parent: Some("a1".to_owned()),
        direction: Direction::Asc,
        ..ListQuery::default()
    };
    assert_eq!(
        ids(&store
            .list(Collection::AgentTools, &query)
            .await
            .expect("list")),
        ["t1", "t3"]
    );
    let none = ListQuery {
        parent: Some("zz".to_owned()),
        ..ListQuery::default()
    };
    assert!(
        store
            .list(Collection::AgentTools, &none)
            .await
            .expect("list")
            .is_empty()
    );
}

pub(crate) async fn deleting_an_agent_deletes_only_its_tools(fixture: &impl Fixture) {
    let store = fixture.open().await;
    for agent in ["a1", "a2"] {
        store
            .insert(Collection::Agents, record(agent, json!({}), 0, 0))
            .await
            .expect("agent");
    }
    for (id, agent) in [("t1", "a1"), ("t2", "a2"), ("t3", "a1")] {
        store
            .insert(Collection::AgentTools, tool(id, agent))
            .await
            .expect("tool");
    }
    assert!(
        store
            .delete(Collection::Agents, "a1")
            .await
            .expect("delete")
    );
    let left = store
        .list(Collection::AgentTools, &ListQuery::default())
        .await
        .expect("list");
    assert_eq!(ids(&left), ["t2"]);
    assert!(
        store
            .get(Collection::Agents, "a2")
            .await
            .expect("get")
            .is_some()
    );
}

pub(crate) async fn deleting_a_session_deletes_its_history_and_journal(fixture: &impl Fixture) {
    let store = fixture.open().await;
    for session in ["s1", "s2"] {
        store
            .insert(Collection::Sessions, record(session, json!({}), 0, 0))
            .await
            .expect("session");
        store
            .append_entries(shared(vec![
                entry(session, "e1", "hi"),
                entry(session, "e2", "there"),
            ]))
            .await
            .expect("append");
        store
            .journal_start(&started(session, "call_1"))
            .await
            .expect("journal");
    }
    assert!(
        store
            .delete(Collection::Sessions, "s1")
            .await
            .expect("delete")
    );
    assert!(store.full_history("s1").await.expect("history").is_empty());
    assert_eq!(
        store
            .journal_get("s1", "call_1", DIGEST)
            .await
            .expect("journal"),
        None
    );
    assert_eq!(store.full_history("s2").await.expect("history").len(), 2);
    assert!(
        store
            .journal_get("s2", "call_1", DIGEST)
            .await
            .expect("journal")
            .is_some()
    );
    // Deleting an unknown session leaves other sessions' rows alone and reports false.
    assert!(
        !store
            .delete(Collection::Sessions, "s1")
            .await
            .expect("delete again")
    );
}
