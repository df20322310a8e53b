//! The mirror's weights against real memory: 40,000 history entries of each kind are built as
//! the store keeps them (parsed from their stored JSON text, the text kept only in the log's
//! joined JSON; or left unparsed, then parsed when read), and the process's resident memory
//! grows by what the weights say, within a quarter. A binary of its own, so no other test
//! allocates meanwhile.

use std::sync::Arc;

use agentd::session::history::EntryHead;
use agentd::session::{ChatMessage, Entry, EntrySource, History, MessageJson, StoredEntry};
use serde_json::json;
use time::OffsetDateTime;

const ENTRIES: usize = 40_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A stored message text of each kind a history holds.
fn stored_messages() -> Vec<(&'static str, String)> {
    let user = json!({"role": "user", "content": "Please send the quarterly report to the finance team before Friday, and copy Alice."});
    let calls = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_4f1c2a9b7e", "type": "function", "function": {"name": "send_email", "arguments": "{\"to\":\"finance@example.com\",\"cc\":[\"alice@example.com\"],\"subject\":\"Quarterly report\",\"body\":\"Attached is the report.\"}"}}]});
    let result = json!({"role": "tool", "tool_call_id": "call_4f1c2a9b7e", "name": "send_email", "content": "{\"status\":\"sent\",\"message_id\":\"<20261206.4f1c2a9b7e@agentd>\"}"});
    let parts = json!({"role": "user", "content": [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]});
    let long = json!({"role": "assistant", "content": "x".repeat(2_000)});
    [
        ("user", user),
        ("tool calls", calls),
        ("tool result", result),
        ("content parts", parts),
        ("long text", long),
    ]
    .into_iter()
    .map(|(kind, message)| (kind, message.to_string()))
    .collect()
}

fn entry(n: usize, text: &str) -> Entry {
    Entry {
        id: format!("01JEXAMPLE{n:016}").into(),
        session_id: format!("0193a1b2-c3d4-7e5f-8a9b-{:012}", n / 100).into(),
        source: EntrySource::ApiRequest,
        message: serde_json::from_str::<ChatMessage>(text).unwrap(),
        created_at: OffsetDateTime::now_utc(),
        json: MessageJson::default(),
    }
}

/// Checks one measurement, and adds it to `report`.
fn check(report: &mut Vec<String>, what: &str, estimated: usize, before: usize) {
    let measured = resident_bytes().saturating_sub(before);
    let ratio = estimated as f64 / measured as f64;
    report.push(format!(
        "{what}: estimated {} B/entry, measured {} B/entry, ratio {ratio:.2}",
        estimated / ENTRIES,
        measured / ENTRIES
    ));
    assert!((0.8..=1.25).contains(&ratio), "{}", report.join("\n"));
}

#[test]
fn heap_bytes_match_resident_memory_within_a_quarter() {
    let mut report = Vec::new();
    // Kept to the end: memory freed and reused would hide the next kind's growth.
    let mut kept = Vec::new();
    for (kind, text) in stored_messages() {
        let before = resident_bytes();
        // Histories as the mirror keeps them, each starting empty and growing by appends.
        let mut sessions: Vec<History> = Vec::new();
        let mut estimated = 0;
        for n in 0..ENTRIES {
            if n % 100 == 0 {
                sessions.push(History::default());
                estimated += agentd::session::history::EMPTY_LOG_BYTES;
            }
            let entry = entry(n, &text);
            estimated += entry.heap_bytes(text.len());
            sessions
                .last_mut()
                .unwrap()
                .push_with_json(Arc::new(entry), text.as_bytes());
        }
        check(&mut report, kind, estimated, before);
        kept.push(sessions);
    }

    // Histories a miss read back: texts copied, messages unparsed until read.
    for (kind, text) in stored_messages() {
        let before = resident_bytes();
        let mut estimated = 0;
        let sessions: Vec<History> = (0..ENTRIES / 100)
            .map(|session| {
                let stored: Vec<StoredEntry> = (0..100)
                    .map(|n| {
                        let Entry {
                            id,
                            session_id,
                            source,
                            message,
                            created_at,
                            ..
                        } = entry(session * 100 + n, &text);
                        let head = EntryHead {
                            id,
                            session_id,
                            source,
                            role: message.role,
                            created_at,
                        };
                        estimated += head.heap_bytes(text.len());
                        StoredEntry::Unparsed {
                            head,
                            text: text.clone(),
                        }
                    })
                    .collect();
                let history = History::from_stored(stored);
                estimated += agentd::session::history::EMPTY_LOG_BYTES + history.heads_bytes();
                history
            })
            .collect();
        check(&mut report, &format!("{kind}, unparsed"), estimated, before);

        let before = resident_bytes();
        let mut estimated = 0;
        for history in &sessions {
            assert_eq!(history.iter().count(), 100);
            estimated += history.take_unweighed();
        }
        check(
            &mut report,
            &format!("{kind}, then parsed"),
            estimated,
            before,
        );
        kept.push(sessions);
    }
    println!("{}", report.join("\n"));
}
