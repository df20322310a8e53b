//! Values the store tests of every implementation build their records, entries and calls
//! from.

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;

use crate::session::message::{ChatMessage, Entry, EntrySource, MessageJson, Role};
use crate::store::{CallStatus, JournalRecord, Record};

/// A fixed instant plus `step` milliseconds and a few stray nanoseconds (to prove precision).
pub(crate) fn at(step: i64) -> OffsetDateTime {
    let nanos = 1_700_000_000_000_000_000i128 + i128::from(step) * 1_000_000 + 7;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("valid instant")
}

pub(crate) fn record(id: &str, body: serde_json::Value, created: i64, updated: i64) -> Record {
    Record {
        id: id.to_owned(),
        parent: None,
        body,
        created_at: at(created),
        updated_at: at(updated),
    }
}

pub(crate) fn tool(id: &str, agent: &str) -> Record {
    Record {
        parent: Some(agent.to_owned()),
        ..record(id, json!({ "name": id }), 0, 0)
    }
}

/// Entries as `append_entries` takes them.
pub(crate) fn shared(entries: Vec<Entry>) -> Vec<Arc<Entry>> {
    entries.into_iter().map(Arc::new).collect()
}

pub(crate) fn entry(session: &str, id: &str, text: &str) -> Entry {
    Entry {
        id: id.into(),
        session_id: session.into(),
        source: EntrySource::ApiRequest,
        message: ChatMessage::text(Role::User, text),
        created_at: at(0),
        json: MessageJson::default(),
    }
}

pub(crate) fn ids(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

pub(crate) fn entry_ids<'a, E: std::borrow::Borrow<Entry> + 'a>(
    entries: impl IntoIterator<Item = &'a E>,
) -> Vec<&'a str> {
    entries
        .into_iter()
        .map(|e| e.borrow().id.as_str())
        .collect()
}

/// The digest the journal tests give their calls (the store takes it as an opaque key).
pub(crate) const DIGEST: &str = "digest-0";

pub(crate) fn started(session: &str, call: &str) -> JournalRecord {
    JournalRecord {
        session_id: session.to_owned(),
        call_id: call.to_owned(),
        digest: DIGEST.to_owned(),
        tool: "send_email".to_owned(),
        arguments: r#"{"to":"a@example.org"}"#.to_owned(),
        status: CallStatus::Started,
        result: None,
        started_at: at(5),
        finished_at: None,
    }
}
