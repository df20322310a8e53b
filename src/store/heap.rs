//! What a history entry or a record costs in memory: an estimate of the heap an [`Entry`] (or
//! a [`Record`]) and the allocations it owns take, allocator overhead included, so the store's mirror can keep its
//! budget in real bytes. `tests/mirror_weight.rs` checks the estimate against a counting
//! allocator.

use std::mem::size_of;

use serde_json::Value;

use crate::session::history::EntryHead;
use crate::session::message::{ChatMessage, Entry, ToolCallRequest};
use crate::session::{History, Id, StoredEntry};
use crate::store::Record;

/// Bytes an allocation of `size` takes from a malloc-style allocator: a word of header,
/// rounded up to 16 bytes, 32 at least.
fn allocation(size: usize) -> usize {
    if size == 0 {
        0
    } else {
        (size + 8).next_multiple_of(16).max(32)
    }
}

/// Bytes a list of `len` items of `item` bytes takes when it was built by pushing (as a JSON
/// array is parsed): capacity doubles from 4.
fn list(len: usize, item: usize) -> usize {
    if len == 0 {
        0
    } else {
        allocation(len.max(4).next_power_of_two() * item)
    }
}

fn string(text: &str) -> usize {
    allocation(text.len())
}

/// An id's heap: none when held inline.
fn id(id: &Id) -> usize {
    id.boxed_len().map_or(0, allocation)
}

/// Keys a node of a JSON object's B-tree holds; a node is allocated whole, full or not.
const MAP_NODE_KEYS: usize = 11;

/// One B-tree node: its keys, values, parent link and counts.
const MAP_NODE: usize = MAP_NODE_KEYS * (size_of::<String>() + size_of::<Value>()) + 16;

/// Heap owned by a JSON value beyond its own inline size.
fn value(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(text) => string(text),
        Value::Array(items) => {
            list(items.len(), size_of::<Value>()) + items.iter().map(self::value).sum::<usize>()
        }
        Value::Object(map) => {
            map.len().div_ceil(MAP_NODE_KEYS) * allocation(MAP_NODE)
                + map
                    .iter()
                    .map(|(key, item)| string(key) + self::value(item))
                    .sum::<usize>()
        }
    }
}

fn tool_call(call: &ToolCallRequest) -> usize {
    string(&call.id)
        + string(&call.kind)
        + string(&call.function.name)
        + string(&call.function.arguments)
}

fn message(message: &ChatMessage) -> usize {
    value(&message.content)
        + message.name.as_deref().map_or(0, string)
        + message.tool_call_id.as_deref().map_or(0, string)
        + message.tool_calls.as_ref().map_or(0, |calls| {
            list(calls.len(), size_of::<ToolCallRequest>())
                + calls.iter().map(tool_call).sum::<usize>()
        })
}

impl Entry {
    /// Bytes this entry holds as the mirror keeps it, shared (`Arc`) in a session's history:
    /// the entry (its ids inline), the allocations it owns, its slot in the log, and its
    /// message's JSON text, `json_len` bytes long, in the log's joined text only
    /// ([`Entry::without_json`]).
    pub fn heap_bytes(&self, json_len: usize) -> usize {
        self.parsed_bytes()
            + crate::session::history::SLOT_BYTES
            + crate::session::history::joined_bytes(json_len)
    }

    /// Bytes of the parsed entry alone, shared (`Arc`): what parsing an unparsed entry of a
    /// history adds to it.
    pub fn parsed_bytes(&self) -> usize {
        // An `Arc`'s two counts, then the entry.
        allocation(2 * size_of::<usize>() + size_of::<Entry>())
            + id(&self.id)
            + id(&self.session_id)
            + message(&self.message)
    }
}

impl EntryHead {
    /// Bytes an entry left unparsed holds in a session's history ([`StoredEntry::Unparsed`]):
    /// the heap of its head's ids, its slot in the log and its message's text, `json_len`
    /// bytes long, in the joined JSON. The head itself is weighed with the history
    /// ([`History::heads_bytes`]), and the entry's parse when it happens
    /// ([`History::take_unweighed`]).
    pub fn heap_bytes(&self, json_len: usize) -> usize {
        id(&self.id)
            + id(&self.session_id)
            + crate::session::history::SLOT_BYTES
            + crate::session::history::joined_bytes(json_len)
    }
}

impl StoredEntry {
    /// Bytes this entry holds once in a session's history in the mirror
    /// ([`Entry::heap_bytes`], [`EntryHead::heap_bytes`]); its message's text is `json_len`
    /// bytes long.
    pub fn heap_bytes(&self, json_len: usize) -> usize {
        match self {
            StoredEntry::Parsed(entry) => entry.heap_bytes(json_len),
            StoredEntry::Unparsed { head, .. } => head.heap_bytes(json_len),
        }
    }
}

impl History {
    /// Bytes of the history's list of unparsed heads: one allocation.
    pub fn heads_bytes(&self) -> usize {
        allocation(self.heads_len() * size_of::<Option<EntryHead>>())
    }
}

/// Bytes a record holds once shared (`Arc`) in the mirror: the record, its id and parent, and
/// its parsed body.
pub(crate) fn record_bytes(record: &Record) -> usize {
    allocation(2 * size_of::<usize>() + size_of::<Record>())
        + string(&record.id)
        + record.parent.as_deref().map_or(0, string)
        + value(&record.body)
}
