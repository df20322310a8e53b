//! One history row per commit and session (`history_cells.rs`): rows of one entry each from
//! an older file packed at open, pages cut across rows, and texts cut at the lengths the
//! entry heads give, never elsewhere.

use std::sync::Arc;

use crate::session::message::{ChatMessage, Entry, Role};
use crate::session::{Id, StoredEntry};
use crate::store::Store;
use crate::store::sqlite::history_cells::{PackedRun, pack_runs, unpack};
use crate::store::sqlite::rows::EntryRow;
use crate::store::sqlite::tests::{entry, entry_ids, open, raw, raw_at_version, shared, temp_db};

/// Each row's `entries` and the id of its first entry, in `seq` order.
fn rows(path: &std::path::Path) -> Vec<(i64, String)> {
    raw(path)
        .prepare("SELECT entries, entry_heads ->> '$[0][0]' FROM history ORDER BY seq")
        .expect("rows")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn content(history: &crate::session::History) -> Vec<String> {
    history
        .iter()
        .map(|entry| {
            entry
                .message
                .content
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A file of one row per entry: opening it makes each row a row of one entry, with its link
/// and head kept, texts whole whatever their bytes; new entries continue the chain.
#[tokio::test]
async fn a_database_of_a_row_per_entry_is_packed_at_open() {
    let (_dir, path) = temp_db();
    {
        raw_at_version(&path, 5).execute_batch(
            r#"INSERT INTO history (seq, session_id, prev, id, source, role, created_at, message)
               VALUES (1, 'a', NULL, 'a1', 'api_request', 'user', 0,
                       '{"role":"user","content":"ünï, ] 😀"}'),
                      (2, 'b', NULL, 'b1', 'api_request', 'user', 0,
                       '{"role":"user","content":"b"}'),
                      (3, 'a', 1, 'a2', 'api_response', 'assistant', 5,
                       '{"role":"assistant","content":"two"}');
               INSERT INTO history_heads VALUES ('a', 3), ('b', 2);
               UPDATE history_flushed SET upto = 3;"#,
        )
        .expect("rows of one entry each");
    }
    let store = open(&path);
    let full = store.full_history("a").await.expect("a");
    assert_eq!(entry_ids(&full), ["a1", "a2"]);
    assert_eq!(content(&full), ["ünï, ] 😀", "two"]);
    assert_eq!(full[1].created_at.unix_timestamp_nanos(), 5);
    drop(store);
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.history("a", 1, 1).await.expect("page")),
        ["a2"]
    );
    store
        .append_entries(shared(vec![entry("a", "a3", "3"), entry("a", "a4", "4")]))
        .await
        .expect("append");
    drop(store);

    let store = open(&path);
    let full = store.full_history("a").await.expect("a");
    assert_eq!(entry_ids(&full), ["a1", "a2", "a3", "a4"]);
    assert_eq!(content(&full)[0], "ünï, ] 😀");
    assert_eq!(
        entry_ids(&store.full_history("b").await.expect("b")),
        ["b1"]
    );
    let expected = [(1, "a1"), (1, "b1"), (1, "a2"), (2, "a3")];
    assert_eq!(
        rows(&path),
        expected.map(|(entries, id)| (entries, id.to_owned()))
    );
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, 6);
}

/// A commit's entries of one session make one row; a page read from the file takes the part
/// of each row it covers.
#[tokio::test]
async fn a_page_is_cut_across_the_rows_of_several_commits() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    for ids in [&["x1", "x2"][..], &["x3", "x4", "x5"], &["x6"]] {
        let run = ids.iter().map(|id| entry("s", id, id)).collect();
        store.append_entries(shared(run)).await.expect("append");
    }
    drop(store);
    let expected = [(2, "x1"), (3, "x3"), (1, "x6")];
    assert_eq!(
        rows(&path),
        expected.map(|(entries, id)| (entries, id.to_owned()))
    );
    for (limit, offset, page) in [
        (2, 1, &["x2", "x3"][..]),
        (3, 2, &["x3", "x4", "x5"]),
        (10, 4, &["x5", "x6"]),
        (1, 5, &["x6"]),
        (4, 6, &[]),
        (0, 0, &[]),
    ] {
        // A fresh store each time: a whole read would fill the mirror pages are cut from.
        let store = open(&path);
        let read = store.history("s", limit, offset).await.expect("page");
        assert_eq!(entry_ids(&read), page, "limit {limit}, offset {offset}");
    }
}

/// Lengths in the entry heads that do not fit the messages fail the read instead of cutting a text
/// in the wrong place.
#[tokio::test]
async fn a_length_that_does_not_fit_the_messages_fails_the_read() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let run = vec![entry("s", "e1", "one"), entry("s", "e2", "two")];
    store.append_entries(shared(run)).await.expect("append");
    drop(store);
    let conn = raw(&path);
    let (heads, messages): (String, String) = conn
        .query_row("SELECT entry_heads, messages FROM history", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("row");
    for damage in [
        "entry_heads = json_set(entry_heads, '$[0][4]', json_extract(entry_heads, '$[0][4]') - 1)",
        "entry_heads = json_set(entry_heads, '$[1][4]', json_extract(entry_heads, '$[1][4]') + 1)",
        "entry_heads = json_remove(entry_heads, '$[1]')",
        "messages = messages || ' '",
    ] {
        conn.execute(&format!("UPDATE history SET {damage}"), [])
            .expect("damage");
        let failed = open(&path).full_history("s").await;
        assert!(failed.is_err(), "{damage}: {failed:?}");
        conn.execute(
            "UPDATE history SET entry_heads = ?1, messages = ?2",
            [&heads, &messages],
        )
        .expect("repair");
    }
    let store = open(&path);
    assert_eq!(
        entry_ids(&store.full_history("s").await.expect("undamaged")),
        ["e1", "e2"]
    );
}

/// `entries` packed as a write packs them.
fn packed(entries: &[Arc<Entry>]) -> Vec<PackedRun> {
    let rows: Vec<EntryRow> = entries
        .iter()
        .map(EntryRow::from_entry)
        .collect::<Result<_, _>>()
        .expect("rows");
    pack_runs(&rows).expect("pack")
}

/// What is packed unpacks to the same entries and texts, of whatever bytes.
#[test]
fn a_run_unpacks_to_its_entries_and_texts() {
    let texts = ["plain", "ünï, ] \" 😀", ""];
    let entries: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            // An id with characters JSON escapes, beside plain ones.
            let id = if index == 1 {
                "e\"1\\\n".to_owned()
            } else {
                format!("e{index}")
            };
            let mut entry = entry("s", &id, text);
            entry.message = ChatMessage::text(Role::Assistant, *text);
            Arc::new(entry)
        })
        .collect();
    let runs = packed(&entries);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].entries, 3);
    let serde_json::Value::Array(messages) =
        serde_json::from_str(&runs[0].messages).expect("messages are JSON")
    else {
        panic!("messages are an array");
    };
    assert_eq!(messages.len(), 3);
    let unpacked_as = |own| {
        let mut read = Vec::new();
        let run = &runs[0];
        unpack(
            &mut read,
            &run.entry_heads,
            &run.messages,
            &Id::new("s"),
            own,
        )
        .expect("unpack");
        assert_eq!(read.len(), 3);
        read
    };
    let unpacked = unpacked_as(true);
    for ((stored, bytes), entry) in unpacked.iter().zip(&entries) {
        let StoredEntry::Unparsed { head, text } = stored else {
            panic!("own rows stay unparsed");
        };
        assert_eq!(head.id, entry.id);
        assert_eq!(head.role, Role::Assistant);
        assert_eq!(text, entry.message_text());
        assert_eq!(*bytes, text.len());
    }
    let parsed = unpacked_as(false);
    for ((stored, _), text) in parsed.into_iter().zip(texts) {
        let entry = stored.into_entry().expect("entry");
        assert_eq!(entry.message.content.as_str(), Some(text));
    }
}

/// A run per session: entries of sessions taking turns in one write make a row each.
#[test]
fn entries_of_two_sessions_pack_into_a_row_per_run() {
    let entries: Vec<_> = [("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3")]
        .iter()
        .map(|(session, id)| Arc::new(entry(session, id, id)))
        .collect();
    let runs = packed(&entries);
    let shape: Vec<(&str, usize)> = runs
        .iter()
        .map(|run| (run.session_id.as_str(), run.entries))
        .collect();
    assert_eq!(shape, [("a", 2), ("b", 1), ("a", 1)]);
}
