//! A session's stored history as a turn reads it: a snapshot of an append-only log the store
//! keeps in memory. Taking a snapshot, and letting it go, costs the same for ten entries as
//! for ten thousand: nothing is copied and no entry is touched. A turn then reads its entries
//! where they lie, while the store appends newer ones behind it.
//!
//! The log also keeps its messages' JSON texts joined in one buffer, in order and comma
//! separated, as a model request lists them: a request copies a run of stored messages in
//! one piece instead of gathering each from its own allocation.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::message::Entry;

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
        }
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
        let (bucket, slot) = locate(index);
        let slots = self.buckets[bucket].get_or_init(|| {
            (0..FIRST_BUCKET << bucket)
                .map(|_| OnceLock::new())
                .collect()
        });
        // The slot at `len` is free: appends hold the lock, so nobody else wrote it.
        slots[slot].set(entry)?;
        joined.push(json);
        self.len.store(index + 1, Ordering::Release);
        Ok(())
    }

    fn get(&self, index: usize) -> Option<&Arc<Entry>> {
        let (bucket, slot) = locate(index);
        self.buckets[bucket].get()?.get(slot)?.get()
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

/// An entry read back from storage, with its message's JSON text if the store knows that text
/// to be the one this build makes of the message ([`Entry::message_text`]): the store wrote it
/// so itself. Text from anywhere else (another build, another tool) is not passed on to the
/// model as it is; its message is serialized again.
pub struct StoredEntry {
    pub entry: Arc<Entry>,
    pub text: Option<String>,
}

impl From<Entry> for StoredEntry {
    fn from(entry: Entry) -> Self {
        Self {
            entry: Arc::new(entry),
            text: None,
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

    /// A history of entries read back from storage (either store), oldest first. A message
    /// whose text the store hands over goes into the log's joined JSON as it is; any other is
    /// serialized once, straight into it. The entries keep no copy of the text.
    pub fn from_stored(entries: impl IntoIterator<Item = impl Into<StoredEntry>>) -> Self {
        let mut history = Self::empty();
        let mut json = Vec::new();
        for stored in entries {
            let StoredEntry { entry, text } = stored.into();
            if let Some(text) = text {
                history.push_with_json(entry, text.as_bytes());
                continue;
            }
            json.clear();
            if serde_json::to_writer(&mut json, &entry.message).is_err() {
                // As `Entry::message_text`: a message's JSON cannot fail to serialize.
                json.clear();
                json.extend_from_slice(b"null");
            }
            history.push_with_json(entry, &json);
        }
        history
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
            // its texts copied from the joined JSON.
            let copy = HistoryLog::new();
            {
                let joined = self.log.joined();
                for (index, earlier) in self.iter().enumerate() {
                    let text = &joined.text[joined.span(index..index + 1)];
                    let _ = copy.push_after(index, Arc::clone(earlier), text);
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
mod tests {
    use super::*;
    use crate::session::message::{ChatMessage, EntrySource, MessageJson, Role};

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

    #[test]
    fn a_text_handed_over_with_a_stored_entry_goes_in_as_it_is() {
        let given = r#"{"content":"message 1","role":"user"}"#;
        let history = History::from_stored([
            StoredEntry::from(stored(0)),
            StoredEntry {
                entry: Arc::new(stored(1)),
                text: Some(given.to_owned()),
            },
        ]);
        assert_eq!(
            joined(&history, 0..2),
            format!("{},{given}", serialized(&history, 0..1))
        );
        assert_eq!(history.json_len(1), given.len());
        assert_eq!(history.json_bytes(), joined(&history, 0..2).len() - 1);
        assert!(history.iter().all(|e| !e.json.is_made()), "{history:?}");
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
}
