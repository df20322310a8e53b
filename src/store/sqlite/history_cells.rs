//! How the entries one commit appends to a session's history lie in its one `history` row:
//! `entry_heads` is a JSON array of `[id, source, role, created_at, bytes]`, one per entry,
//! and `messages` the JSON array of their messages, in the same order, `bytes` being the
//! length of each message's text in it. Both are plain JSON, so `json_each` and `->>` read
//! them.
//!
//! A whole history is read by cutting each message's text out of `messages` at the lengths
//! `entry_heads` gives (read by `entry_heads.rs`), without parsing it: the commas and brackets
//! between them are checked, so a length that does not fit the text is an error rather than a
//! message cut in the wrong place.

use crate::session::history::EntryHead;
use crate::session::message::{ChatMessage, Entry, MessageJson};
use crate::session::{Id, StoredEntry};
use crate::store::sqlite::entry_heads::{HeadCells, HeadsReader};
use crate::store::sqlite::rows::{
    EntryRow, Failure, Outcome, from_nanos, parse_role, parse_source,
};

/// The row a commit appends for one session: the entries of one run, packed.
pub(super) struct PackedRun {
    pub session_id: Id,
    pub entries: usize,
    pub entry_heads: String,
    pub messages: String,
}

/// `rows` packed one row per run of one session's entries, in order: done before the write
/// is queued, so the writer thread only binds and inserts.
pub(super) fn pack_runs(rows: &[EntryRow]) -> Outcome<Vec<PackedRun>> {
    rows.chunk_by(|a, b| a.session_id() == b.session_id())
        .map(pack)
        .collect()
}

/// The row holding `run` (entries of one session, in order).
fn pack(run: &[EntryRow]) -> Outcome<PackedRun> {
    let text_bytes: usize = run.iter().map(|row| row.message().len() + 1).sum();
    let mut messages = String::with_capacity(text_bytes + 1);
    let mut heads = String::with_capacity(run.len() * 96);
    for row in run {
        let first = messages.is_empty();
        messages.push(if first { '[' } else { ',' });
        messages.push_str(row.message());
        heads.push_str(if first { "[[" } else { ",[" });
        push_head(&mut heads, row)?;
    }
    messages.push(']');
    heads.push(']');
    Ok(PackedRun {
        session_id: run[0].session_id().clone(),
        entries: run.len(),
        entry_heads: heads,
        messages,
    })
}

/// `"id","source","role",created_at,bytes]`: the element of `entry_heads` for `row`, after
/// its `[`. Written by hand, not through serde: it is on every turn's path, and only the id can
/// need escaping.
fn push_head(heads: &mut String, row: &EntryRow) -> Outcome<()> {
    let id = row.entry.id.as_str();
    if id.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        heads.push('"');
        heads.push_str(id);
        heads.push('"');
    } else {
        heads.push_str(&serde_json::to_string(id)?);
    }
    let mut number = itoa::Buffer::new();
    for part in [
        ",\"",
        row.source(),
        "\",\"",
        row.entry.message.role.as_str(),
        "\",",
        number.format(row.created_at),
    ] {
        heads.push_str(part);
    }
    heads.push(',');
    heads.push_str(number.format(row.message().len()));
    heads.push(']');
    Ok(())
}

/// Appends to `entries` those of a row of `session_id`, from its `entry_heads` and
/// `messages`, oldest first, each with the length of its message's text. If `own` (this
/// store wrote the row, so each text is the one this build makes of its message), messages
/// are left unparsed with their text.
pub(super) fn unpack(
    entries: &mut Vec<(StoredEntry, usize)>,
    entry_heads: &str,
    messages: &str,
    session_id: &Id,
    own: bool,
) -> Outcome<()> {
    let mut heads = HeadsReader::new(entry_heads)?;
    let before = entries.len();
    let mut rest = messages.strip_prefix('[').ok_or_else(damaged)?;
    while let Some(head) = heads.next_head()? {
        let HeadCells {
            id,
            source,
            role,
            created_at,
            bytes,
        } = head;
        let text = rest.get(..bytes).ok_or_else(damaged)?;
        rest = rest.get(bytes..).ok_or_else(damaged)?;
        rest = rest
            .strip_prefix(',')
            .or_else(|| (rest == "]").then_some(""))
            .ok_or_else(damaged)?;
        let id = Id::new(&id);
        let source = parse_source(&source)?;
        let created_at = from_nanos(created_at)?;
        let stored = if own {
            StoredEntry::Unparsed {
                head: EntryHead {
                    id,
                    session_id: session_id.clone(),
                    source,
                    role: parse_role(&role)?,
                    created_at,
                },
                text: text.to_owned(),
            }
        } else {
            // Text this store did not write is not kept: it may hold fields this build does
            // not know, which are not to be passed on to the model.
            StoredEntry::Parsed(std::sync::Arc::new(Entry {
                id,
                session_id: session_id.clone(),
                source,
                message: serde_json::from_str::<ChatMessage>(text)?,
                created_at,
                json: MessageJson::default(),
            }))
        };
        entries.push((stored, text.len()));
    }
    let end = if entries.len() == before { "]" } else { "" };
    if rest != end {
        return Err(damaged());
    }
    Ok(())
}

fn damaged() -> Failure {
    Failure::Invalid(
        "a history row's messages do not match the lengths its entry heads give".to_owned(),
    )
}
