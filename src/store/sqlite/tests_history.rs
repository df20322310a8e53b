//! What only the embedded store's history and journal do, beyond the store contract
//! (`store/contract`): message shapes through SQL, which texts a miss copies and leaves
//! unparsed, the schema
//! version file check, opening without a directory, journal rows from before digests,
//! durability and append throughput.

use std::sync::Arc;

use serde_json::json;

use crate::session::message::{
    ChatMessage, Entry, EntrySource, FunctionCall, Role, ToolCallRequest,
};
use crate::store::sqlite::schema::MIGRATIONS;
use crate::store::sqlite::tests::{at, entry, open, raw, raw_at_version, shared, temp_db};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Store, StoreError};

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

/// A database written before journal rows had digests: opening it fills them in from each
/// row's tool and arguments, so a call journaled then is still recognised.
#[tokio::test]
async fn journal_rows_from_before_digests_get_them_at_open() {
    let (_dir, path) = temp_db();
    {
        let conn = raw_at_version(&path, 1);
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

/// A history read back after a miss sends the model the same bytes as one the mirror held:
/// the texts of rows this store wrote are copied as they lie, and rows from before it opened
/// (another build may have written them) have their messages serialized again, so a field this
/// build does not know is not passed on. A field written behind the store's back into one of
/// its own rows shows which rows were copied.
#[tokio::test]
async fn a_miss_copies_the_texts_of_rows_this_store_wrote_only() {
    let (_dir, path) = temp_db();
    let uncached = || {
        SqliteStore::open_with(
            &path,
            SqliteOptions {
                mirror_bytes: 0,
                ..SqliteOptions::default()
            },
        )
        .expect("open")
    };
    let one = |id: &str| shared(vec![entry("s", id, id)]);
    let joined = |history: &crate::session::History| {
        let mut out = Vec::new();
        history.write_json(0..history.len(), &mut out);
        String::from_utf8(out).expect("utf-8")
    };
    let before = uncached();
    before.append_entries(one("older")).await.expect("append");
    drop(before);
    let store = uncached();
    store.append_entries(one("own")).await.expect("append");
    let expected = r#"{"role":"user","content":"older"},{"role":"user","content":"own"}"#;
    assert_eq!(
        joined(&store.full_history("s").await.expect("read")),
        expected
    );

    raw(&path)
        .execute(
            "UPDATE history SET messages = json_set(messages, '$[0].extra', 1),
                entry_heads = json_set(entry_heads, '$[0][4]',
                    length(json_set(messages, '$[0].extra', 1)) - 2)",
            [],
        )
        .expect("a field behind the store's back");
    let history = store.full_history("s").await.expect("read");
    assert_eq!(
        joined(&history),
        r#"{"role":"user","content":"older"},{"role":"user","content":"own","extra":1}"#
    );
    assert_eq!(
        history.json_len(1),
        r#"{"role":"user","content":"own","extra":1}"#.len()
    );
    assert!(
        history.iter().all(|entry| !entry.json.is_made()),
        "the entries keep no text of their own"
    );
    drop(store);
    let reopened = uncached();
    assert_eq!(
        joined(&reopened.full_history("s").await.expect("read")),
        expected,
        "after a restart, every row is from before"
    );
}

#[tokio::test]
async fn a_miss_leaves_this_stores_rows_unparsed_until_read_and_weighs_them_when_parsed() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let written: Vec<Entry> = (0..6)
        .map(|n| entry("s", &format!("e{n}"), &format!("message {n}")))
        .collect();
    store
        .append_entries(shared(written.clone()))
        .await
        .expect("append");
    // Out of the mirror: the next read is a miss.
    store.shared.cache.lock().histories.remove(&"s".into());

    let history = store.full_history("s").await.expect("read");
    assert_eq!(history.len(), 6);
    assert_eq!(history.parsed_count(), 0, "a miss copies texts only");
    let weighed = store
        .shared
        .cache
        .lock()
        .histories
        .weight_of(&"s".into())
        .expect("held");

    // A chat turn looks at the tail: the last message that is not a result.
    let last = history.iter().rposition(|e| e.message.role != Role::Tool);
    assert_eq!(last, Some(5));
    assert_eq!(history.parsed_count(), 1);
    assert_eq!(*history[5], written[5]);
    let parsed = written[5].parsed_bytes();

    let next = entry("s", "e6", "message 6");
    let added = next.heap_bytes(next.message_text().len());
    store
        .append_entries(shared(vec![next]))
        .await
        .expect("append");
    let weight = store.shared.cache.lock().histories.weight_of(&"s".into());
    assert_eq!(
        weight,
        Some(weighed + added + parsed),
        "the parse is weighed with the next commit"
    );
    let all: Vec<Entry> = store
        .full_history("s")
        .await
        .expect("read")
        .iter()
        .map(|entry| Entry::clone(entry))
        .collect();
    assert_eq!(all[..6], written[..]);
}
