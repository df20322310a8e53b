//! History as a chain per session (`history_rows.rs`): rows from before the chain linked at
//! open, reads and deletes that look rows up by rowid only, and a damaged link that ends a
//! walk instead of looping.

use crate::store::Store;
use crate::store::sqlite::history_rows::{DELETE_ROW, LINK, PREV, ROW};
use crate::store::sqlite::tests::{
    entry, entry_ids, holding, open, query_plan, raw, raw_at_version, shared, temp_db,
};

fn legacy_row(conn: &rusqlite::Connection, session: &str, id: &str) {
    conn.execute(
        "INSERT INTO history (session_id, id, source, role, message, created_at)
         VALUES (?1, ?2, 'api_request', 'user', json_object('role', 'user', 'content', ?2), 0)",
        [session, id],
    )
    .expect("legacy row");
}

/// A file written with the index by session: opening it links every session's rows in their
/// order, names each session's newest, drops the index, and new entries continue the chain.
#[tokio::test]
async fn a_database_from_before_the_chain_is_linked_at_open() {
    let (_dir, path) = temp_db();
    {
        let conn = raw_at_version(&path, 3);
        for (session, id) in [
            ("a", "a1"),
            ("b", "b1"),
            ("a", "a2"),
            ("b", "b2"),
            ("a", "a3"),
        ] {
            legacy_row(&conn, session, id);
        }
    }
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.full_history("a").await.expect("a")),
        ["a1", "a2", "a3"]
    );
    assert_eq!(
        entry_ids(&store.full_history("b").await.expect("b")),
        ["b1", "b2"]
    );
    let page = store.history("a", 1, 1).await.expect("page");
    assert_eq!(entry_ids(&page), ["a2"]);
    store
        .append_entries(shared(vec![entry("b", "b3", "three")]))
        .await
        .expect("append");
    store.clear_history("a").await.expect("clear");
    drop(store);

    let conn = raw(&path);
    let index: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'history_by_session')",
            [],
            |row| row.get(0),
        )
        .expect("schema");
    assert!(!index, "the index by session is gone");
    let rows: Vec<(String, Option<String>)> = conn
        .prepare(
            "SELECT h.entry_heads ->> '$[0][0]', p.entry_heads ->> '$[0][0]'
             FROM history h LEFT JOIN history p ON p.seq = h.prev ORDER BY h.seq",
        )
        .expect("links")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    let expected = [("b1", None), ("b2", Some("b1")), ("b3", Some("b2"))];
    assert_eq!(
        rows,
        expected.map(|(id, prev)| (id.to_owned(), prev.map(str::to_owned)))
    );
    let heads: Vec<String> = conn
        .prepare("SELECT session_id FROM history_heads")
        .expect("heads")
        .query_map([], |row| row.get(0))
        .expect("heads")
        .collect::<rusqlite::Result<_>>()
        .expect("heads");
    assert_eq!(heads, ["b"], "a cleared history has no head");
}

/// Reading or deleting a history costs lookups of its own rows, whatever else the table
/// holds: no step scans `history`.
#[tokio::test]
async fn reads_and_deletes_look_rows_up_by_rowid_only() {
    let (_dir, path) = temp_db();
    drop(open(&path));
    let conn = raw(&path);
    for sql in [PREV, LINK, ROW, DELETE_ROW] {
        let steps = query_plan(&conn, sql, rusqlite::params![1]);
        let on_history: Vec<&String> = steps
            .iter()
            .filter(|step| matches!(step.split_whitespace().nth(1), Some("h" | "history")))
            .collect();
        assert!(!on_history.is_empty(), "{steps:?}");
        assert!(
            on_history
                .iter()
                .all(|step| step.starts_with("SEARCH") && step.contains("PRIMARY KEY")),
            "{steps:?}"
        );
    }
}

/// A link that points at itself, forward, or back into another session ends the walk there: the
/// read returns what came before the damage and the delete finishes.
#[tokio::test]
async fn a_damaged_link_ends_the_walk() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store
        .append_entries(shared(vec![entry("other", "o1", "o")]))
        .await
        .expect("append");
    for id in ["e1", "e2", "e3"] {
        let row = vec![entry("s", id, id)];
        store.append_entries(shared(row)).await.expect("append");
    }
    drop(store);
    let damage = |sql: &str| {
        raw(&path).execute(sql, []).expect("damage");
        // A fresh store, so the history is read from the file, not the mirror.
        open(&path)
    };

    // Each damage adds to the one before: a loop, then a forward link, then a crossing.
    let [e2, e3, o1] = ["e2", "e3", "o1"].map(holding);
    let mut damaged = None;
    for (sql, readable) in [
        (
            format!("UPDATE history SET prev = seq WHERE {e2}"),
            &["e2", "e3"][..],
        ),
        (
            format!("UPDATE history SET prev = (SELECT seq FROM history WHERE {e3}) WHERE {e2}"),
            &["e2", "e3"][..],
        ),
        (
            format!("UPDATE history SET prev = (SELECT seq FROM history WHERE {o1}) WHERE {e3}"),
            &["e3"][..],
        ),
    ] {
        let sql = sql.as_str();
        drop(damaged.take());
        let store = damage(sql);
        // A page first: the whole read fills the mirror, which later pages are cut from.
        let page = store.history("s", 10, 0).await.expect("page");
        assert_eq!(entry_ids(&page), readable, "{sql}");
        assert_eq!(
            entry_ids(&store.full_history("s").await.expect("read")),
            readable,
            "{sql}"
        );
        damaged = Some(store);
    }
    let crossed = damaged.expect("the last damage's store");
    crossed.clear_history("s").await.expect("clear");
    assert!(crossed.full_history("s").await.expect("read").is_empty());
    assert_eq!(
        entry_ids(&crossed.full_history("other").await.expect("other")),
        ["o1"]
    );
}

/// A session's rows with no other row between them (its commits in a row) lie one `seq`
/// apart, and the walk steps from one to the next instead of seeking each: a link to the row just before that names another session's
/// row ends the walk there too, and interleaved sessions read back whole.
#[tokio::test]
async fn adjacent_rows_of_another_session_end_the_walk() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    for (first, second) in [("s1", "t1"), ("t2", "s2"), ("s3", "s4")] {
        let session = |id: &str| if id.starts_with('s') { "s" } else { "t" };
        let rows = [first, second].map(|id| entry(session(id), id, id));
        store
            .append_entries(shared(rows.to_vec()))
            .await
            .expect("append");
    }
    drop(store);
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.full_history("s").await.expect("s")),
        ["s1", "s2", "s3", "s4"]
    );
    assert_eq!(
        entry_ids(&store.history("s", 2, 1).await.expect("page")),
        ["s2", "s3"]
    );
    assert_eq!(
        entry_ids(&store.full_history("t").await.expect("t")),
        ["t1", "t2"]
    );
    drop(store);

    raw(&path)
        .execute(
            &format!("UPDATE history SET prev = seq - 1 WHERE {}", holding("s2")),
            [],
        )
        .expect("damage");
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.history("s", 10, 0).await.expect("page")),
        ["s2", "s3", "s4"]
    );
    assert_eq!(
        entry_ids(&store.full_history("s").await.expect("s")),
        ["s2", "s3", "s4"]
    );
    store.clear_history("s").await.expect("clear");
    assert_eq!(
        entry_ids(&store.full_history("t").await.expect("t")),
        ["t1", "t2"]
    );
}
