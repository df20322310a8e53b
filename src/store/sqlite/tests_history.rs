//! Tests of the embedded store's history, journal, restarts, schema and concurrency, on real
//! database files in temporary directories.

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;

use crate::session::message::{
    ChatMessage, Entry, EntrySource, FunctionCall, Role, ToolCallRequest,
};
use crate::store::sqlite::schema::MIGRATIONS;
use crate::store::sqlite::tests::{
    DIGEST, at, entry, entry_ids, open, record, shared, started, temp_db, tool,
};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{
    CallResult, CallStatus, Collection, JournalRecord, StepWrite, Store, StoreError,
};

#[tokio::test]
async fn history_keeps_append_order_and_pages_across_reopen() {
    let (_dir, path) = temp_db();
    let mut expected = Vec::new();
    {
        let store = open(&path);
        for turn in 0..100 {
            let batch: Vec<Entry> = (0..3)
                .map(|i| entry("s", &format!("e{turn:03}-{i}"), "m"))
                .collect();
            expected.extend(batch.iter().map(|e| e.id.clone()));
            store.append_entries(shared(batch)).await.expect("append");
            store
                .append_entries(shared(vec![entry("other", &format!("o{turn}"), "x")]))
                .await
                .expect("other");
        }
        assert_eq!(
            entry_ids(&store.full_history("s").await.expect("history")),
            expected
        );
    }
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.full_history("s").await.expect("history")),
        expected
    );
    assert_eq!(
        entry_ids(&store.history("s", 4, 10).await.expect("page")),
        expected[10..14]
    );
    assert_eq!(
        entry_ids(&store.history("s", 50, 290).await.expect("tail")),
        expected[290..]
    );
    store
        .append_entries(shared(vec![entry("s", "after-restart", "m")]))
        .await
        .expect("append");
    let all = store.full_history("s").await.expect("history");
    assert_eq!(all.len(), 301);
    assert_eq!(all.last().map(|e| e.id.as_str()), Some("after-restart"));
    assert_eq!(store.full_history("other").await.expect("other").len(), 100);
    assert!(
        store
            .full_history("unknown")
            .await
            .expect("unknown")
            .is_empty()
    );
}

#[tokio::test]
async fn entries_round_trip_every_message_shape() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let call = ToolCallRequest {
        id: "call_1".to_owned(),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: "send_email".to_owned(),
            arguments: "{\"to\": oops".to_owned(),
        },
    };
    let assistant = ChatMessage {
        role: Role::Assistant,
        content: serde_json::Value::Null,
        name: None,
        tool_call_id: None,
        tool_calls: Some(vec![call]),
    };
    let parts = ChatMessage {
        content: json!([{ "type": "text", "text": "ünïcode \u{1F600}" }]),
        ..ChatMessage::text(Role::User, "")
    };
    let entries = vec![
        Entry {
            message: parts,
            source: EntrySource::ApiRequest,
            ..entry("s", "e1", "")
        },
        Entry {
            message: assistant,
            source: EntrySource::ApiResponse,
            created_at: at(3),
            ..entry("s", "e2", "")
        },
        Entry {
            message: ChatMessage::tool_result("call_1", "send_email", "sent".to_owned()),
            source: EntrySource::ToolResponse,
            ..entry("s", "e3", "")
        },
        Entry {
            source: EntrySource::Internal,
            ..entry("s", "e4", "note")
        },
    ];
    store
        .append_entries(shared(entries.clone()))
        .await
        .expect("append");
    let stored = store.full_history("s").await.expect("history");
    assert_eq!(
        stored.iter().map(|e| Entry::clone(e)).collect::<Vec<_>>(),
        entries
    );
}

#[tokio::test]
async fn clear_history_empties_only_that_session() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store
        .append_entries(shared(vec![entry("s1", "a", "x"), entry("s2", "b", "y")]))
        .await
        .expect("append");
    store.clear_history("s1").await.expect("clear");
    assert!(store.full_history("s1").await.expect("history").is_empty());
    assert_eq!(
        entry_ids(&store.full_history("s2").await.expect("history")),
        ["b"]
    );
    store
        .append_entries(shared(vec![entry("s1", "c", "z")]))
        .await
        .expect("append after clear");
    assert_eq!(
        entry_ids(&store.full_history("s1").await.expect("history")),
        ["c"]
    );
}

#[tokio::test]
async fn journal_records_start_once_and_finish() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.expect("get"),
        None
    );
    store
        .journal_start(&started("s", "call_1"))
        .await
        .expect("start");
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.expect("get"),
        Some(started("s", "call_1"))
    );

    let again = store.journal_start(&started("s", "call_1")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // The same call id in another session is a different call.
    store
        .journal_start(&started("s2", "call_1"))
        .await
        .expect("other session");

    let before = OffsetDateTime::now_utc();
    store
        .journal_finish("s", "call_1", DIGEST, "sent, id 42")
        .await
        .expect("finish");
    let done = store
        .journal_get("s", "call_1", DIGEST)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(done.status, CallStatus::Finished);
    assert_eq!(done.result.as_deref(), Some("sent, id 42"));
    assert!(
        done.finished_at.is_some_and(|t| t >= before),
        "{:?}",
        done.finished_at
    );
    assert_eq!((done.tool.as_str(), done.started_at), ("send_email", at(5)));
    assert_eq!(
        store
            .journal_get("s2", "call_1", DIGEST)
            .await
            .expect("get")
            .map(|r| r.status),
        Some(CallStatus::Started)
    );

    let never = store.journal_finish("s", "call_never", DIGEST, "x").await;
    assert!(
        matches!(never, Err(ref e @ StoreError::Backend { .. }) if e.to_string().contains("never started")),
        "{never:?}"
    );
}

#[tokio::test]
async fn everything_survives_reopen() {
    let (_dir, path) = temp_db();
    let agent = record(
        "a",
        json!({ "name": "mailer", "metadata": { "team": "ops" } }),
        1,
        2,
    );
    {
        let store = open(&path);
        store
            .insert(Collection::Agents, agent.clone())
            .await
            .expect("insert");
        store
            .insert(Collection::AgentTools, tool("t", "a"))
            .await
            .expect("tool");
        store
            .journal_start(&started("s", "c1"))
            .await
            .expect("start");
        store
            .journal_finish("s", "c1", DIGEST, "ok")
            .await
            .expect("finish");
        store
            .journal_start(&started("s", "c2"))
            .await
            .expect("start");
    }
    let store = open(&path);
    store.ping().await.expect("ping");
    assert_eq!(
        store
            .get(Collection::Agents, "a")
            .await
            .expect("get")
            .as_deref(),
        Some(&agent)
    );
    assert_eq!(
        store
            .get(Collection::AgentTools, "t")
            .await
            .expect("get")
            .as_deref(),
        Some(&tool("t", "a"))
    );
    let finished = store
        .journal_get("s", "c1", DIGEST)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (finished.status, finished.result.as_deref()),
        (CallStatus::Finished, Some("ok"))
    );
    let pending = store
        .journal_get("s", "c2", DIGEST)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (pending.status, pending.result),
        (CallStatus::Started, None)
    );
}

#[tokio::test]
async fn schema_version_is_recorded_and_newer_files_are_refused() {
    let (_dir, path) = temp_db();
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, i64::try_from(MIGRATIONS.len()).expect("small"));
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    // Reopening at the current version runs nothing and succeeds.
    drop(open(&path));
    conn.pragma_update(None, "user_version", version + 1)
        .expect("bump");
    drop(conn);
    let refused = SqliteStore::open(&path).map(|_| ());
    assert!(
        matches!(refused, Err(ref e @ StoreError::Backend { .. }) if e.to_string().contains("newer")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn open_fails_cleanly_without_the_parent_directory() {
    let (dir, _) = temp_db();
    let result = SqliteStore::open(&dir.path().join("missing").join("agentd.db")).map(|_| ());
    assert!(
        matches!(result, Err(ref e @ StoreError::Backend { .. }) if e.to_string().contains("missing")),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_all_land_in_per_task_order() {
    const TASKS: usize = 50;
    const PER_TASK: usize = 20;
    let (_dir, path) = temp_db();
    let store = Arc::new(open(&path));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let common = entry("shared", &format!("{task}:{i}"), "m");
                let own = entry(&format!("own-{task}"), &format!("{i}"), "m");
                store
                    .append_entries(shared(vec![common, own]))
                    .await
                    .expect("append");
                if i % 5 == 0 {
                    // Reads interleave with writes.
                    let seen = store
                        .full_history(&format!("own-{task}"))
                        .await
                        .expect("read");
                    assert_eq!(seen.len(), i + 1);
                }
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let shared = store.full_history("shared").await.expect("history");
    assert_eq!(shared.len(), TASKS * PER_TASK);
    let mut next = vec![0usize; TASKS];
    for e in &shared {
        let (task, i) = e.id.split_once(':').expect("task:i");
        let (task, i): (usize, usize) = (task.parse().expect("task"), i.parse().expect("i"));
        assert_eq!(i, next[task], "task {task} out of order");
        next[task] += 1;
    }
    for task in 0..TASKS {
        let own = store
            .full_history(&format!("own-{task}"))
            .await
            .expect("history");
        let expected: Vec<String> = (0..PER_TASK).map(|i| i.to_string()).collect();
        assert_eq!(
            own.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            expected
        );
    }
}

/// Prints append throughput; run with `cargo test --release --lib append_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints timings, asserts nothing about speed"]
async fn append_throughput() {
    const APPENDS: usize = 10_000;
    let (_dir, path) = temp_db();
    let store = Arc::new(open(&path));
    let batch = |session: &str, n: usize| -> Vec<Entry> {
        (0..3)
            .map(|i| {
                entry(
                    session,
                    &format!("{n}-{i}"),
                    "a short message of typical size",
                )
            })
            .collect()
    };

    let start = std::time::Instant::now();
    for n in 0..APPENDS {
        store
            .append_entries(shared(batch("sequential", n)))
            .await
            .expect("append");
    }
    let sequential = start.elapsed();

    let start = std::time::Instant::now();
    let mut handles = Vec::new();
    for task in 0..100 {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            for n in 0..APPENDS / 100 {
                store
                    .append_entries(shared(batch(&format!("c{task}"), n)))
                    .await
                    .expect("append");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let concurrent = start.elapsed();
    assert_eq!(
        store
            .full_history("sequential")
            .await
            .expect("history")
            .len(),
        APPENDS * 3
    );
    println!(
        "{APPENDS} append_entries x 3 entries: sequential {sequential:?} ({:.0}/s), \
         100 tasks {concurrent:?} ({:.0}/s)",
        APPENDS as f64 / sequential.as_secs_f64(),
        APPENDS as f64 / concurrent.as_secs_f64(),
    );
}

#[tokio::test]
async fn a_step_commits_entries_and_journal_together_and_reports_calls_journaled_before() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store
        .journal_start(&started("s", "old"))
        .await
        .expect("start");

    let step = StepWrite {
        entries: shared(vec![entry("s", "answer", "calls two tools")]),
        start: vec![started("s", "new"), started("s", "old")],
        ..StepWrite::default()
    };
    assert_eq!(
        store.write_step(step).await.expect("step"),
        vec![true, false]
    );
    assert_eq!(
        entry_ids(&store.full_history("s").await.unwrap()),
        ["answer"]
    );

    // A finish for a call never started fails the whole step: its entry is not stored either.
    let step = StepWrite {
        entries: shared(vec![entry("s", "result", "r")]),
        finish: vec![
            CallResult {
                session_id: "s".into(),
                call_id: "new".into(),
                digest: DIGEST.into(),
                result: "done".into(),
            },
            CallResult {
                session_id: "s".into(),
                call_id: "never".into(),
                digest: DIGEST.into(),
                result: "x".into(),
            },
        ],
        ..StepWrite::default()
    };
    assert!(store.write_step(step).await.is_err());
    drop(store);
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.full_history("s").await.unwrap()),
        ["answer"]
    );
    let new = store
        .journal_get("s", "new", DIGEST)
        .await
        .unwrap()
        .expect("new");
    assert_eq!(
        new.status,
        CallStatus::Started,
        "the failed step changed nothing"
    );
}

#[tokio::test]
async fn one_call_id_with_two_digests_is_two_calls() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    store
        .journal_start(&started("s", "call_0"))
        .await
        .expect("first");
    let other = JournalRecord {
        digest: "digest-1".into(),
        ..started("s", "call_0")
    };
    store.journal_start(&other).await.expect("other content");
    store
        .journal_finish("s", "call_0", "digest-1", "second")
        .await
        .expect("finish the second");
    let first = store.journal_get("s", "call_0", DIGEST).await.unwrap();
    assert_eq!(first.map(|r| r.status), Some(CallStatus::Started));
    let second = store.journal_get("s", "call_0", "digest-1").await.unwrap();
    assert_eq!(second.and_then(|r| r.result).as_deref(), Some("second"));
}

#[tokio::test]
async fn clearing_history_forgets_the_journal_of_its_calls() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    for session in ["s", "s2"] {
        store
            .journal_start(&started(session, "call_1"))
            .await
            .expect("start");
    }
    store.clear_history("s").await.expect("clear");
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.unwrap(),
        None
    );
    assert!(
        store
            .journal_get("s2", "call_1", DIGEST)
            .await
            .unwrap()
            .is_some(),
        "other sessions keep theirs"
    );
    drop(store);
    let store = open(&path);
    assert_eq!(
        store.journal_get("s", "call_1", DIGEST).await.unwrap(),
        None
    );
    store
        .journal_start(&started("s", "call_1"))
        .await
        .expect("the id is new again");
}

/// A database written before journal rows had digests: opening it fills them in from each
/// row's tool and arguments, so a call journaled then is still recognised.
#[tokio::test]
async fn journal_rows_from_before_digests_get_them_at_open() {
    let (_dir, path) = temp_db();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO journal VALUES ('s', 'c1', 'send_email', '{\"to\": \"a@x.org\"}',
             'finished', 'sent', 1, 2)",
            [],
        )
        .unwrap();
    }
    let store = open(&path);
    let digest = crate::session::call_digest_of_text("send_email", r#"{"to":"a@x.org"}"#);
    let record = store
        .journal_get("s", "c1", &digest)
        .await
        .unwrap()
        .expect("found by its content's digest");
    assert_eq!(record.result.as_deref(), Some("sent"));
    assert_eq!(record.digest, digest);
}

/// Commits wait for the disk as `storage.synchronous` says: `full` unless set otherwise.
#[tokio::test]
async fn the_writer_commits_at_the_configured_durability() {
    use crate::config::Synchronous;
    let level = |store: SqliteStore| async move {
        store
            .write(
                "probe",
                |conn| Ok(conn.pragma_query_value(None, "synchronous", |row| row.get::<_, i64>(0))?),
                |_, _| {},
            )
            .await
            .expect("probe")
    };
    let (_dir, path) = temp_db();
    // SQLite numbers the levels OFF 0, NORMAL 1, FULL 2, EXTRA 3.
    assert_eq!(level(open(&path)).await, 2, "full by default");
    for (setting, number) in [
        (Synchronous::Off, 0),
        (Synchronous::Normal, 1),
        (Synchronous::Full, 2),
        (Synchronous::Extra, 3),
    ] {
        let store = SqliteStore::open_with(
            &path,
            SqliteOptions {
                synchronous: setting,
                ..SqliteOptions::default()
            },
        )
        .expect("open");
        assert_eq!(level(store).await, number, "{setting:?}");
    }
    assert_eq!(
        crate::config::Config::default().storage.synchronous,
        Synchronous::Full
    );
}
