//! The history log's slots, snapshots, joined JSON and unparsed entries.

use super::*;

fn entry(n: usize) -> Arc<Entry> {
    Arc::new(Entry {
        id: format!("e{n}").into(),
        session_id: "s".into(),
        source: EntrySource::ApiRequest,
        message: ChatMessage::text(Role::User, format!("message {n}")),
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        json: MessageJson::default(),
    })
}

fn ids(history: &History) -> Vec<String> {
    history.iter().map(|e| e.id.to_string()).collect()
}

#[test]
fn slots_fill_the_buckets_in_order() {
    assert_eq!(locate(0), (0, 0));
    assert_eq!(locate(15), (0, 15));
    assert_eq!(locate(16), (1, 0));
    assert_eq!(locate(47), (1, 31));
    assert_eq!(locate(48), (2, 0));
    let history = History::from_entries((0..1000).map(entry));
    assert_eq!(history.len(), 1000);
    let expected: Vec<String> = (0..1000).map(|n| format!("e{n}")).collect();
    assert_eq!(ids(&history), expected);
    assert_eq!(history.iter().next_back().unwrap().id, "e999");
    assert_eq!(history.get(999).unwrap().id, "e999");
    assert!(history.get(1000).is_none());
}

#[test]
fn iterating_from_an_index_yields_only_the_later_entries() {
    let history = History::from_entries((0..40).map(entry));
    let tail: Vec<String> = history.iter_from(37).map(|e| e.id.to_string()).collect();
    assert_eq!(tail, ["e37", "e38", "e39"]);
    assert_eq!(history.iter_from(40).count(), 0);
    assert_eq!(history.iter_from(99).count(), 0);
    assert_eq!(history.iter_from(0).count(), 40);
}

#[test]
fn a_snapshot_keeps_its_entries_while_the_log_grows() {
    let mut newest = History::from_entries((0..3).map(entry));
    let snapshot = newest.clone();
    newest.push(entry(3));
    assert_eq!(ids(&snapshot), ["e0", "e1", "e2"]);
    assert_eq!(ids(&newest), ["e0", "e1", "e2", "e3"]);
    assert!(
        snapshot.get(3).is_none(),
        "a later append is not in the snapshot"
    );
    assert!(
        Arc::ptr_eq(&snapshot.log, &newest.log),
        "nothing was copied"
    );
}

#[test]
fn appending_to_an_older_snapshot_copies_instead_of_overwriting() {
    let mut newest = History::from_entries((0..2).map(entry));
    let mut older = newest.clone();
    newest.push(entry(2));
    older.push(entry(9));
    assert_eq!(ids(&newest), ["e0", "e1", "e2"]);
    assert_eq!(ids(&older), ["e0", "e1", "e9"]);
    assert!(!Arc::ptr_eq(&older.log, &newest.log));
}

#[test]
fn the_json_bytes_are_summed_per_snapshot() {
    let mut history = History::from_entries((0..2).map(entry));
    let each = entry(0).message_json().unwrap().get().len();
    assert_eq!(history.json_bytes(), 2 * each);
    let before = history.clone();
    history.push(entry(5));
    assert_eq!(history.json_bytes(), 3 * each);
    assert_eq!(before.json_bytes(), 2 * each);
}

fn joined(history: &History, range: Range<usize>) -> String {
    let mut out = Vec::new();
    history.write_json(range, &mut out);
    String::from_utf8(out).unwrap()
}

fn serialized(history: &History, range: Range<usize>) -> String {
    let texts: Vec<String> = range
        .map(|index| serde_json::to_string(&history[index].message).unwrap())
        .collect();
    texts.join(",")
}

#[test]
fn joined_json_is_each_message_serialized_comma_separated() {
    let mut history = History::from_entries((0..5).map(entry));
    let quoted = Arc::new(Entry {
        message: ChatMessage::text(Role::Assistant, "a \"quoted\", ünïcode\nline"),
        ..Entry::clone(&entry(5))
    });
    history.push(quoted);
    for range in [0..6, 0..1, 2..4, 5..6, 3..3] {
        assert_eq!(
            joined(&history, range.clone()),
            serialized(&history, range.clone()),
            "{range:?}"
        );
    }
    assert_eq!(
        joined(&history, 0..2),
        r#"{"role":"user","content":"message 0"},{"role":"user","content":"message 1"}"#
    );
}

#[test]
fn a_snapshot_reads_its_own_joined_json_after_the_log_grows_or_is_copied() {
    let mut newest = History::from_entries((0..3).map(entry));
    let mut older = newest.clone();
    newest.push(entry(3));
    older.push(entry(9));
    assert_eq!(joined(&newest, 0..4), serialized(&newest, 0..4));
    assert_eq!(joined(&older, 0..4), serialized(&older, 0..4));
    assert!(joined(&older, 3..4).contains("message 9"));
    let snapshot = History::from_entries((0..3).map(entry));
    assert_eq!(joined(&snapshot, 1..3), serialized(&newest, 1..3));
}

fn stored(n: usize) -> Entry {
    Arc::try_unwrap(entry(n)).expect("one holder")
}

#[test]
fn a_history_from_storage_keeps_each_text_in_the_joined_json_only() {
    let history = History::from_stored((0..4).map(stored));
    assert_eq!(joined(&history, 0..4), serialized(&history, 0..4));
    assert!(history.iter().all(|e| !e.json.is_made()), "{history:?}");
    for index in 0..4 {
        let text = serde_json::to_string(&history[index].message).unwrap();
        assert_eq!(history.json_len(index), text.len());
    }
    assert_eq!(history.json_bytes(), joined(&history, 0..4).len() - 3);
}

fn unparsed(n: usize, text: &str) -> StoredEntry {
    let entry = stored(n);
    StoredEntry::Unparsed {
        head: EntryHead {
            id: entry.id,
            session_id: entry.session_id,
            source: entry.source,
            role: entry.message.role,
            created_at: entry.created_at,
        },
        text: text.to_owned(),
    }
}

#[test]
fn an_unparsed_text_goes_in_as_it_is_and_is_parsed_when_first_read() {
    let given = r#"{"content":"message 1","role":"user"}"#;
    let history = History::from_stored([StoredEntry::from(stored(0)), unparsed(1, given)]);
    assert_eq!(
        joined(&history, 0..2),
        format!("{},{given}", serialized(&history, 0..1))
    );
    assert_eq!(history.json_len(1), given.len());
    assert_eq!(history.json_bytes(), joined(&history, 0..2).len() - 1);
    assert_eq!(history.parsed_count(), 1, "the text alone was copied");
    assert_eq!(history.take_unweighed(), 0);

    let snapshot = history.clone();
    assert_eq!(**history.last().unwrap(), stored(1));
    assert_eq!(history.parsed_count(), 2);
    assert!(
        Arc::ptr_eq(&history[1], &snapshot[1]),
        "parsed once, for every snapshot of the log"
    );
    assert_eq!(history.take_unweighed(), stored(1).parsed_bytes());
    assert_eq!(history.take_unweighed(), 0, "weighed once");
    assert!(history.iter().all(|e| !e.json.is_made()), "{history:?}");
}

#[test]
fn an_unparsed_text_that_does_not_parse_reads_as_an_empty_message_of_its_role() {
    let damaged = r#"{"role":"user","content":"mess"#;
    let history = History::from_stored([unparsed(0, damaged)]);
    let entry = &history[0];
    assert_eq!(entry.id, "e0");
    assert_eq!(entry.message.role, Role::User);
    assert_eq!(entry.message.content, Value::Null);
    assert_eq!(joined(&history, 0..1), damaged, "the text is passed on");
}

#[test]
fn looking_for_a_call_id_parses_only_entries_whose_text_holds_it() {
    let call = |id: &str| {
        serde_json::to_string(&ChatMessage {
            role: Role::Assistant,
            content: Value::Null,
            name: None,
            tool_call_id: None,
            tool_calls: Some(vec![crate::session::ToolCallRequest {
                id: id.into(),
                kind: "function".into(),
                function: crate::session::FunctionCall {
                    name: "f".into(),
                    arguments: "{}".into(),
                },
            }]),
        })
        .unwrap()
    };
    let history = History::from_stored([
        unparsed(0, r#"{"role":"user","content":"call_7, not as a string"}"#),
        unparsed(1, &call("call_1")),
        unparsed(2, r#"{"role":"user","content":"call_9"}"#),
        unparsed(3, &call("call_\"q")),
    ]);
    assert!(!history.has_call("call_5"));
    assert!(!history.has_call("call_7"));
    assert_eq!(history.parsed_count(), 0, "no text holds them as a string");
    assert!(!history.has_call("call_9"), "a mention is not a call");
    assert_eq!(history.parsed_count(), 1);
    assert!(history.has_call("call_1"));
    assert!(history.has_call("call_\"q"), "the id is looked for escaped");
    assert_eq!(history.parsed_count(), 3);

    let parsed = History::from_entries(history.iter().cloned());
    assert!(parsed.has_call("call_1"));
    assert!(!parsed.has_call("call_9"));
}

#[test]
fn appending_to_an_older_snapshot_copies_texts_from_the_joined_json() {
    let mut newest = History::from_stored((0..3).map(stored));
    let mut older = newest.clone();
    newest.push_with_json(
        Arc::new(stored(3)),
        br#"{"role":"user","content":"message 3"}"#,
    );
    older.push_with_json(
        Arc::new(stored(9)),
        br#"{"role":"user","content":"message 9"}"#,
    );
    assert!(!Arc::ptr_eq(&older.log, &newest.log));
    assert!(
        older.iter().all(|e| !e.json.is_made()),
        "the copy serialized no entry again"
    );
    assert_eq!(ids(&older), ["e0", "e1", "e2", "e9"]);
    assert_eq!(joined(&older, 0..4), serialized(&older, 0..4));
    assert_eq!(joined(&newest, 0..4), serialized(&newest, 0..4));
}

#[test]
#[should_panic(expected = "entries 2..4 of a history of 3")]
fn reading_past_a_snapshot_is_a_bug() {
    let mut newest = History::from_entries((0..3).map(entry));
    let snapshot = newest.clone();
    newest.push(entry(3));
    joined(&snapshot, 2..4);
}

#[test]
fn readers_on_other_threads_see_whole_entries_while_one_appends() {
    let mut newest = History::default();
    let snapshots = std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::channel::<History>();
        let reader = scope.spawn(move || {
            let mut seen = 0;
            for snapshot in receive {
                assert_eq!(snapshot.iter().count(), snapshot.len());
                assert!(
                    snapshot
                        .iter()
                        .enumerate()
                        .all(|(n, e)| e.id == format!("e{n}"))
                );
                let last = snapshot.len() - 1;
                assert_eq!(
                    joined(&snapshot, last..snapshot.len()),
                    format!(r#"{{"role":"user","content":"message {last}"}}"#)
                );
                seen += 1;
            }
            seen
        });
        for n in 0..2000 {
            newest.push(entry(n));
            send.send(newest.clone()).unwrap();
        }
        drop(send);
        reader.join().unwrap()
    });
    assert_eq!(snapshots, 2000);
}

#[test]
fn threads_reading_one_unparsed_history_parse_each_entry_once() {
    let history = History::from_stored((0..64).map(|n| {
        let text = serde_json::to_string(&stored(n).message).unwrap();
        unparsed(n, &text)
    }));
    let snapshots: Vec<History> = (0..4).map(|_| history.clone()).collect();
    let seen: Vec<Vec<Arc<Entry>>> = std::thread::scope(|scope| {
        let readers: Vec<_> = snapshots
            .iter()
            .map(|snapshot| scope.spawn(move || snapshot.iter().rev().cloned().collect::<Vec<_>>()))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(
        seen.windows(2).all(|pair| pair[0] == pair[1]),
        "one entry each"
    );
    let parsed: usize = (0..64).map(|n| stored(n).parsed_bytes()).sum();
    assert_eq!(history.take_unweighed(), parsed, "each parse weighed once");
    assert_eq!(
        ids(&history),
        (0..64).map(|n| format!("e{n}")).collect::<Vec<_>>()
    );
}
