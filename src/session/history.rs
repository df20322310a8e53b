//! A session's stored history as a turn reads it: a snapshot of an append-only log the store
//! keeps in memory. Taking a snapshot, and letting it go, costs the same for ten entries as
//! for ten thousand: nothing is copied and no entry is touched. A turn then reads its entries
//! where they lie, while the store appends newer ones behind it.
//!
//! The log also keeps its messages' JSON texts joined in one buffer, in order and comma
//! separated, as a model request lists them: a request copies a run of stored messages in
//! one piece instead of gathering each from its own allocation.
//!
//! A history read back from storage may leave entries unparsed: the joined JSON holds their
//! text, and each is parsed from it when a turn first reads it. A chat turn reads only the
//! tail of its history, so a history the store had to read again costs a copy of its texts,
//! not a parse of every message.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::Value;
use time::OffsetDateTime;

use super::message::{ChatMessage, Entry, EntrySource, MessageJson, Role};
use crate::ids::Id;

/// Slots in the first bucket; each next bucket doubles, so `BUCKETS` of them hold 16 × 2²⁸
/// entries, more than any session can have (`limits.max_history_entries`).
const FIRST_BUCKET: usize = 16;
const BUCKETS: usize = 28;

/// Entries in order, appended one at a time and never moved or changed: a slot is written
/// once, and a bucket once allocated stays where it is, so readers of earlier slots are never
/// disturbed by an append.
pub struct HistoryLog {
    buckets: [OnceLock<Bucket>; BUCKETS],
    /// The messages' JSON, joined; held while appending, so an append also checks that the
    /// length it extends is still the last.
    joined: Mutex<JoinedJson>,
    len: AtomicUsize,
    /// By index, the heads of the entries left unparsed when the log was built: such an
    /// entry's slot is written from its head and its joined text when it is first read.
    unparsed: Box<[Option<EntryHead>]>,
    /// Heap bytes of entries parsed since [`History::take_unweighed`] last asked.
    unweighed: AtomicUsize,
}

/// Every message of a log as JSON, comma separated, and where each one ends.
#[derive(Default)]
struct JoinedJson {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl JoinedJson {
    fn push(&mut self, json: &[u8]) {
        if !self.ends.is_empty() {
            self.text.push(b',');
        }
        self.text.extend_from_slice(json);
        self.ends.push(self.text.len());
    }

    /// Where the text of the messages in `range` lies (the commas between them included).
    fn span(&self, range: Range<usize>) -> Range<usize> {
        let start = match range.start {
            0 => 0,
            after => self.ends[after - 1] + 1,
        };
        start..self.ends[range.end - 1]
    }
}

/// A run of slots allocated at once, each written once.
type Bucket = Box<[OnceLock<Arc<Entry>>]>;

/// Where entry `index` lives: its bucket and the slot in it.
fn locate(index: usize) -> (usize, usize) {
    let shifted = index + FIRST_BUCKET;
    let bucket = (usize::BITS - 1 - shifted.leading_zeros()) as usize;
    let bucket_start = 1 << bucket;
    (
        bucket - FIRST_BUCKET.trailing_zeros() as usize,
        shifted - bucket_start,
    )
}

impl HistoryLog {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| OnceLock::new()),
            joined: Mutex::new(JoinedJson::default()),
            len: AtomicUsize::new(0),
            unparsed: Box::default(),
            unweighed: AtomicUsize::new(0),
        }
    }

    /// The slot of entry `index`, its bucket allocated if it was not.
    fn slot(&self, index: usize) -> &OnceLock<Arc<Entry>> {
        let (bucket, slot) = locate(index);
        let slots = self.buckets[bucket].get_or_init(|| {
            (0..FIRST_BUCKET << bucket)
                .map(|_| OnceLock::new())
                .collect()
        });
        &slots[slot]
    }

    fn joined(&self) -> std::sync::MutexGuard<'_, JoinedJson> {
        self.joined.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `entry`, whose message's JSON is `json`, after the first `after` entries if those
    /// are all the log holds; gives it back otherwise (another holder appended first). Readers
    /// may read meanwhile.
    fn push_after(&self, after: usize, entry: Arc<Entry>, json: &[u8]) -> Result<(), Arc<Entry>> {
        let mut joined = self.joined();
        let index = self.len.load(Ordering::Acquire);
        if index != after {
            return Err(entry);
        }
        // The slot at `len` is free: appends hold the lock, so nobody else wrote it.
        self.slot(index).set(entry)?;
        joined.push(json);
        self.len.store(index + 1, Ordering::Release);
        Ok(())
    }

    /// Adds an entry left unparsed, before the log is shared: its text joins the JSON, and
    /// its slot stays empty until the entry is first read (from its head in `unparsed`).
    fn push_unparsed(&mut self, json: &[u8]) {
        let index = *self.len.get_mut();
        self.slot(index);
        self.joined
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .push(json);
        *self.len.get_mut() = index + 1;
    }

    /// Entry `index`, parsed from its text first if it was left unparsed.
    fn get(&self, index: usize) -> Option<&Arc<Entry>> {
        let (bucket, slot) = locate(index);
        let slot = self.buckets[bucket].get()?.get(slot)?;
        if let Some(entry) = slot.get() {
            return Some(entry);
        }
        let head = self.unparsed.get(index)?.as_ref()?;
        Some(slot.get_or_init(|| self.parse(index, head)))
    }

    /// Entry `index` if it is parsed already.
    fn parsed(&self, index: usize) -> Option<&Arc<Entry>> {
        let (bucket, slot) = locate(index);
        self.buckets[bucket].get()?.get(slot)?.get()
    }

    /// Makes entry `index` from its head and its text in the joined JSON. The store wrote
    /// that text from a message of this build, so it parses unless the file was damaged;
    /// then the entry is an empty message of the role its row names, the damage is logged,
    /// and the text still goes to the model as it is.
    fn parse(&self, index: usize, head: &EntryHead) -> Arc<Entry> {
        let parsed = {
            let joined = self.joined();
            serde_json::from_slice::<ChatMessage>(&joined.text[joined.span(index..index + 1)])
        };
        let message = parsed.unwrap_or_else(|error| {
            tracing::error!(
                session_id = %head.session_id,
                entry_id = %head.id,
                %error,
                "a stored history message does not parse; it is read as an empty message"
            );
            ChatMessage {
                role: head.role,
                content: Value::Null,
                name: None,
                tool_call_id: None,
                tool_calls: None,
            }
        });
        let entry = Arc::new(head.with_message(message));
        self.unweighed
            .fetch_add(entry.parsed_bytes(), Ordering::Relaxed);
        entry
    }

    /// Whether the text of entry `index` holds `needle`.
    fn text_holds(&self, index: usize, needle: &[u8]) -> bool {
        let joined = self.joined();
        memchr::memmem::find(&joined.text[joined.span(index..index + 1)], needle).is_some()
    }
}

/// Heap bytes of one slot of the log, for the mirror's weights: the slot and, on average, the
/// free slots a doubling bucket holds beyond it.
pub const SLOT_BYTES: usize = size_of::<OnceLock<Arc<Entry>>>() * 3 / 2;

/// Heap bytes the log's joined JSON spends on a message whose JSON is `json_len` bytes long:
/// the text, its comma and its end, and a quarter as much again of room to grow (a doubling
/// buffer is half empty at worst, but room never written is not resident once the buffer
/// outgrows the allocator's small pages: `tests/mirror_weight.rs`).
pub const fn joined_bytes(json_len: usize) -> usize {
    (json_len + 1 + size_of::<usize>()) * 5 / 4
}

/// What a stored row says of an entry besides its message.
#[derive(Debug, Clone)]
pub struct EntryHead {
    pub id: Id,
    pub session_id: Id,
    pub source: EntrySource,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

/// An entry read back from storage.
#[derive(Debug)]
pub enum StoredEntry {
    /// Parsed; its message is serialized again for the model. Text from anywhere but this
    /// store (another build, another tool) may hold fields this build does not know, which
    /// are not to be passed on.
    Parsed(Arc<Entry>),
    /// An entry whose message's text the store wrote itself, and so is the text this build
    /// makes of the message ([`Entry::message_text`]): it goes to the model as it is, and the
    /// message is parsed only when a turn reads the entry.
    Unparsed { head: EntryHead, text: String },
}

impl EntryHead {
    /// The entry this head and `message` make.
    fn with_message(&self, message: ChatMessage) -> Entry {
        Entry {
            id: self.id.clone(),
            session_id: self.session_id.clone(),
            source: self.source,
            message,
            created_at: self.created_at,
            json: MessageJson::default(),
        }
    }
}

impl From<Entry> for StoredEntry {
    fn from(entry: Entry) -> Self {
        Self::Parsed(Arc::new(entry))
    }
}

impl StoredEntry {
    /// The entry, its message parsed.
    pub fn into_entry(self) -> serde_json::Result<Entry> {
        match self {
            Self::Parsed(entry) => Ok(Arc::unwrap_or_clone(entry)),
            Self::Unparsed { head, text } => Ok(head.with_message(serde_json::from_str(&text)?)),
        }
    }
}

/// A session's history as of one moment: the first `len` entries of a shared log.
#[derive(Clone)]
pub struct History {
    log: Arc<HistoryLog>,
    len: usize,
    json_bytes: usize,
}

impl Default for History {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl History {
    /// A history of these entries, oldest first.
    pub fn from_entries(entries: impl IntoIterator<Item = Arc<Entry>>) -> Self {
        let mut history = Self::empty();
        for entry in entries {
            history.push(entry);
        }
        history
    }

    /// A history of entries read back from storage (either store), oldest first. An unparsed
    /// entry's text goes into the log's joined JSON as it is, to be parsed from there when
    /// first read; a parsed entry's message is serialized once, straight into it. The entries
    /// keep no copy of the text.
    pub fn from_stored(entries: impl IntoIterator<Item = impl Into<StoredEntry>>) -> Self {
        let mut log = HistoryLog::new();
        let mut heads = Vec::new();
        let mut json_bytes = 0;
        let mut json = Vec::new();
        for stored in entries {
            let index = *log.len.get_mut();
            match stored.into() {
                StoredEntry::Unparsed { head, text } => {
                    heads.resize(index, None);
                    heads.push(Some(head));
                    log.push_unparsed(text.as_bytes());
                    json_bytes += text.len();
                }
                StoredEntry::Parsed(entry) => {
                    json.clear();
                    if serde_json::to_writer(&mut json, &entry.message).is_err() {
                        // As `Entry::message_text`: a message's JSON cannot fail to serialize.
                        json.clear();
                        json.extend_from_slice(b"null");
                    }
                    let _ = log.push_after(index, entry, &json);
                    json_bytes += json.len();
                }
            }
        }
        log.unparsed = heads.into_boxed_slice();
        Self {
            len: *log.len.get_mut(),
            log: Arc::new(log),
            json_bytes,
        }
    }

    fn empty() -> Self {
        Self {
            log: Arc::new(HistoryLog::new()),
            len: 0,
            json_bytes: 0,
        }
    }

    /// Appends `entry`; this history then includes it. Snapshots taken before do not.
    ///
    /// Appending to the newest snapshot of a log (the store's) costs one slot; appending to
    /// an older one (a slot another holder reads is taken) copies the snapshot first.
    pub fn push(&mut self, entry: Arc<Entry>) {
        // The entry moves into the log; this reference keeps its text readable meanwhile.
        let held = Arc::clone(&entry);
        self.push_with_json(entry, held.message_text().as_bytes());
    }

    /// [`History::push`] with the message's JSON text given, so that an entry that keeps no
    /// text of its own ([`Entry::without_json`]) is not serialized again.
    pub fn push_with_json(&mut self, entry: Arc<Entry>, json: &[u8]) {
        if let Some(entry) = self.log.push_after(self.len, entry, json).err() {
            // Another holder appended to this log first: continue on a copy of this snapshot,
            // its texts copied from the joined JSON and its unparsed entries left unparsed.
            let mut copy = HistoryLog::new();
            copy.unparsed = self.log.unparsed.iter().take(self.len).cloned().collect();
            {
                let joined = self.log.joined();
                for index in 0..self.len {
                    let text = &joined.text[joined.span(index..index + 1)];
                    match self.log.parsed(index) {
                        Some(earlier) => {
                            let _ = copy.push_after(index, Arc::clone(earlier), text);
                        }
                        None => copy.push_unparsed(text),
                    }
                }
            }
            let _ = copy.push_after(self.len, entry, json);
            self.log = Arc::new(copy);
        }
        self.len += 1;
        self.json_bytes += json.len();
    }

    /// Appends the JSON of the messages in `range` to `out`, comma separated: the same bytes
    /// as serializing each entry's message, copied in one piece.
    pub fn write_json(&self, range: Range<usize>, out: &mut Vec<u8>) {
        assert!(
            range.end <= self.len,
            "entries {range:?} of a history of {}",
            self.len
        );
        if range.is_empty() {
            return;
        }
        let joined = self.log.joined();
        out.extend_from_slice(&joined.text[joined.span(range)]);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the entries' message JSON, as stored and as sent to the model.
    pub fn json_bytes(&self) -> usize {
        self.json_bytes
    }

    /// Bytes of entry `index`'s message JSON.
    pub fn json_len(&self, index: usize) -> usize {
        assert!(
            index < self.len,
            "entry {index} of a history of {}",
            self.len
        );
        self.log.joined().span(index..index + 1).len()
    }

    pub fn get(&self, index: usize) -> Option<&Arc<Entry>> {
        if index < self.len {
            self.log.get(index)
        } else {
            None
        }
    }

    /// Whether a message of this history calls a tool with the call id `id`. An entry still
    /// unparsed is parsed only if its text holds `id` as a JSON string, so looking for an id
    /// that is not there parses nothing.
    pub fn has_call(&self, id: &str) -> bool {
        let mut quoted = None;
        (0..self.len).any(|index| {
            let entry = match self.log.parsed(index) {
                Some(entry) => entry,
                None => {
                    let quoted: &Vec<u8> =
                        quoted.get_or_insert_with(|| serde_json::to_vec(id).unwrap_or_default());
                    if !self.log.text_holds(index, quoted) {
                        return false;
                    }
                    &self[index]
                }
            };
            entry.message.calls().iter().any(|call| call.id == id)
        })
    }

    /// Heap bytes of the entries parsed from their text since this was last asked, across
    /// every snapshot of the log; the mirror adds them to the history's weight.
    pub fn take_unweighed(&self) -> usize {
        self.log.unweighed.swap(0, Ordering::Relaxed)
    }

    /// How many heads of unparsed entries the log keeps (for the mirror's weights).
    pub(crate) fn heads_len(&self) -> usize {
        self.log.unparsed.len()
    }

    /// How many of the entries are parsed.
    #[cfg(test)]
    pub(crate) fn parsed_count(&self) -> usize {
        (0..self.len)
            .filter(|&index| self.log.parsed(index).is_some())
            .count()
    }

    /// The entries in a list of their own.
    pub fn to_vec(&self) -> Vec<Arc<Entry>> {
        self.iter().cloned().collect()
    }

    pub fn last(&self) -> Option<&Arc<Entry>> {
        self.len.checked_sub(1).and_then(|index| self.get(index))
    }

    /// The entries, oldest first.
    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = &Arc<Entry>> + ExactSizeIterator + Clone + '_ {
        self.iter_from(0)
    }

    /// The entries from `start` on, oldest first; the earlier ones are not touched.
    pub fn iter_from(
        &self,
        start: usize,
    ) -> impl DoubleEndedIterator<Item = &Arc<Entry>> + ExactSizeIterator + Clone + '_ {
        (start.min(self.len)..self.len).map(|index| {
            self.log
                .get(index)
                .expect("every slot below a snapshot's length is written")
        })
    }
}

impl std::ops::Index<usize> for History {
    type Output = Arc<Entry>;

    fn index(&self, index: usize) -> &Arc<Entry> {
        match self.get(index) {
            Some(entry) => entry,
            None => panic!("entry {index} of a history of {}", self.len),
        }
    }
}

impl<'a> IntoIterator for &'a History {
    type Item = &'a Arc<Entry>;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = &'a Arc<Entry>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Heap bytes of an empty history's log.
pub const EMPTY_LOG_BYTES: usize = size_of::<HistoryLog>() + 2 * size_of::<usize>();

#[cfg(test)]
mod tests;
