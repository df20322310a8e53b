//! History heads written in batches (`heads.rs`): readers find heads the table does not hold
//! yet, the table catches up when a flush is due or the store closes, a write rolled back
//! moves no head, and opening after a crash reads back the heads the table lacks.

use std::path::Path;
use std::time::Duration;

use rusqlite::OptionalExtension;

use crate::store::sqlite::heads::MAX_PENDING;
use crate::store::sqlite::tests::{entry, entry_ids, holding, raw, shared, temp_db};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{CallResult, StepWrite, Store, StoreError};

/// A store whose mirror holds nothing (every history is read from the file) and that writes
/// heads only when `flush_interval` has passed, too many wait, or it closes.
fn open_flushing_every(path: &Path, flush_interval: Duration) -> SqliteStore {
    let options = SqliteOptions {
        mirror_bytes: 0,
        ..SqliteOptions::default()
    };
    SqliteStore::open_flushing_heads(path, options, flush_interval).expect("open store")
}

/// Never flushed by time within a test.
const NEVER: Duration = Duration::from_secs(3600);

/// `session`'s head in `history_heads`, as the file holds it, by entry id.
fn head_in_table(path: &Path, session: &str) -> Option<String> {
    raw(path)
        .query_row(
            "SELECT h.entry_heads ->> '$[#-1][0]' FROM history_heads t JOIN history h ON h.seq = t.last
             WHERE t.session_id = ?1",
            [session],
            |row| row.get(0),
        )
        .optional()
        .expect("head")
}

async fn append(store: &SqliteStore, session: &str, ids: &[&str]) {
    let entries = ids.iter().map(|id| entry(session, id, id)).collect();
    store.append_entries(shared(entries)).await.expect("append");
}

async fn history_ids(store: &SqliteStore, session: &str) -> Vec<String> {
    let full = store.full_history(session).await.expect("history");
    entry_ids(&full).into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn reads_find_heads_the_table_does_not_hold_yet_and_closing_writes_them() {
    let (_dir, path) = temp_db();
    let store = open_flushing_every(&path, NEVER);
    append(&store, "s", &["e1"]).await;
    append(&store, "s", &["e2", "e3"]).await;
    assert_eq!(head_in_table(&path, "s"), None, "no commit wrote the head");
    assert_eq!(history_ids(&store, "s").await, ["e1", "e2", "e3"]);
    let page = store.history("s", 2, 1).await.expect("page");
    assert_eq!(entry_ids(&page), ["e2", "e3"]);

    drop(store);
    assert_eq!(head_in_table(&path, "s").as_deref(), Some("e3"));
    let upto: i64 = raw(&path)
        .query_row("SELECT upto FROM history_flushed", [], |row| row.get(0))
        .expect("upto");
    let last: i64 = raw(&path)
        .query_row("SELECT max(seq) FROM history", [], |row| row.get(0))
        .expect("last");
    assert_eq!(upto, last, "the mark covers every row written");
}

#[tokio::test]
async fn heads_are_written_once_their_interval_has_passed() {
    let (_dir, path) = temp_db();
    let store = open_flushing_every(&path, Duration::from_millis(50));
    append(&store, "s", &["e1", "e2"]).await;
    assert_eq!(
        wait_for_head(&path, "s", Some("e2")).await.as_deref(),
        Some("e2"),
        "written by the writer while idle, without another write or a close"
    );
    append(&store, "s", &["e3"]).await;
    assert_eq!(history_ids(&store, "s").await, ["e1", "e2", "e3"]);
}

/// Waits up to 10 s for `session`'s head in the table to be `expected`.
async fn wait_for_head(path: &Path, session: &str, expected: Option<&str>) -> Option<String> {
    let mut waited = Duration::ZERO;
    loop {
        let head = head_in_table(path, session);
        if head.as_deref() == expected || waited >= Duration::from_secs(10) {
            return head;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
}

#[tokio::test]
async fn a_flush_that_fails_keeps_the_heads_for_readers_and_is_tried_again() {
    let (_dir, path) = temp_db();
    let store = open_flushing_every(&path, Duration::from_millis(50));
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE UPDATE ON history_flushed
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .expect("trigger");
    append(&store, "s", &["e1", "e2"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(head_in_table(&path, "s"), None, "every flush so far failed");
    assert_eq!(history_ids(&store, "s").await, ["e1", "e2"]);
    append(&store, "s", &["e3"]).await;
    raw(&path)
        .execute_batch("DROP TRIGGER refuse")
        .expect("drop trigger");
    assert_eq!(
        wait_for_head(&path, "s", Some("e3")).await.as_deref(),
        Some("e3")
    );
}

#[tokio::test]
async fn heads_are_written_as_soon_as_too_many_wait() {
    let (_dir, path) = temp_db();
    let store = open_flushing_every(&path, NEVER);
    let sessions: Vec<String> = (0..=MAX_PENDING).map(|n| format!("s{n}")).collect();
    let entries = sessions.iter().map(|s| entry(s, s, "x")).collect();
    store.append_entries(shared(entries)).await.expect("append");
    // The flush follows the commit on the writer thread; a write queued after it waits for it.
    append(&store, "other", &["o1"]).await;
    for session in [&sessions[0], &sessions[MAX_PENDING]] {
        assert_eq!(head_in_table(&path, session).as_deref(), Some(&**session));
    }
    assert_eq!(head_in_table(&path, "other"), None, "a new wait begins");
}

#[tokio::test]
async fn a_write_rolled_back_moves_no_head() {
    let (_dir, path) = temp_db();
    let store = open_flushing_every(&path, NEVER);
    append(&store, "s", &["e1"]).await;
    // Finishing a call that was never started fails the step after its entry was inserted.
    let failed = store
        .write_step(StepWrite {
            entries: shared(vec![entry("s", "lost", "lost")]),
            finish: vec![CallResult {
                session_id: "s".into(),
                call_id: "never-started".into(),
                digest: "d".into(),
                result: "r".into(),
            }],
            ..StepWrite::default()
        })
        .await;
    assert!(
        matches!(&failed, Err(e @ StoreError::Backend { .. }) if e.to_string().contains("never started")),
        "{failed:?}"
    );
    assert_eq!(history_ids(&store, "s").await, ["e1"]);
    append(&store, "s", &["e2"]).await;
    assert_eq!(history_ids(&store, "s").await, ["e1", "e2"]);
    drop(store);
    let reopened = open_flushing_every(&path, NEVER);
    assert_eq!(history_ids(&reopened, "s").await, ["e1", "e2"]);
}

#[tokio::test]
async fn clearing_a_history_with_a_waiting_head_forgets_it() {
    let (_dir, path) = temp_db();
    let store = open_flushing_every(&path, NEVER);
    append(&store, "s", &["e1", "e2"]).await;
    store.clear_history("s").await.expect("clear");
    assert!(history_ids(&store, "s").await.is_empty());
    append(&store, "s", &["f1"]).await;
    assert_eq!(history_ids(&store, "s").await, ["f1"]);
    drop(store);
    assert_eq!(head_in_table(&path, "s").as_deref(), Some("f1"));
    let prev: Option<i64> = raw(&path)
        .query_row(
            &format!("SELECT prev FROM history WHERE {}", holding("f1")),
            [],
            |row| row.get(0),
        )
        .expect("f1");
    assert_eq!(prev, None, "the new history starts a chain of its own");
}

/// The file as a crash leaves it: rows committed after the last flush, whose heads the table
/// lacks (`s` moved on, `t` began) or names too early, and a mark from before them.
#[tokio::test]
async fn opening_after_a_crash_reads_back_the_heads_the_table_lacks() {
    let (_dir, path) = temp_db();
    let store = open_flushing_every(&path, NEVER);
    append(&store, "s", &["e1", "e2"]).await;
    append(&store, "u", &["g1"]).await;
    drop(store);
    let flushed_heads = {
        let conn = raw(&path);
        conn.query_row(
            "SELECT group_concat(session_id || '=' || last) FROM history_heads",
            [],
            |row| row.get::<_, String>(0),
        )
        .expect("heads")
    };
    let store = open_flushing_every(&path, NEVER);
    append(&store, "s", &["e3"]).await;
    append(&store, "t", &["f1", "f2"]).await;
    drop(store);
    {
        // Take the table and the mark back to where the first close left them.
        let conn = raw(&path);
        conn.execute_batch(&format!(
            "DELETE FROM history_heads;
             UPDATE history_flushed SET upto = (SELECT seq FROM history WHERE {});",
            holding("g1")
        ))
        .expect("rewind");
        for pair in flushed_heads.split(',') {
            let (session, last) = pair.split_once('=').expect("pair");
            conn.execute(
                "INSERT INTO history_heads (session_id, last) VALUES (?1, ?2)",
                rusqlite::params![session, last.parse::<i64>().expect("seq")],
            )
            .expect("head");
        }
    }
    assert_eq!(head_in_table(&path, "s").as_deref(), Some("e2"));
    assert_eq!(head_in_table(&path, "t"), None);

    let store = open_flushing_every(&path, NEVER);
    assert_eq!(
        head_in_table(&path, "s").as_deref(),
        Some("e3"),
        "written at open"
    );
    assert_eq!(head_in_table(&path, "t").as_deref(), Some("f2"));
    assert_eq!(history_ids(&store, "s").await, ["e1", "e2", "e3"]);
    assert_eq!(history_ids(&store, "t").await, ["f1", "f2"]);
    assert_eq!(history_ids(&store, "u").await, ["g1"]);
    append(&store, "t", &["f3"]).await;
    assert_eq!(history_ids(&store, "t").await, ["f1", "f2", "f3"]);
}
