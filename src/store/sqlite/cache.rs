//! The embedded store's in-memory mirror of what a chat turn reads: records by id, an agent's
//! tools, and whole session histories. A turn then reads nothing from SQLite.
//!
//! Coherence rests on two rules. Writes change the mirror only after their commit, on the
//! writer thread, in commit order. A read that misses marks its key `Loading` with a fresh
//! token before it reads the database, and fills the key only if the mark is still its own:
//! a write to that key in between replaces or removes the mark, so a value read before a
//! commit can never overwrite what the commit wrote. The store holds the data directory's
//! lock, so no other process writes the file behind the mirror's back.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ids::{Id, IdMap};
use crate::session::History;
use crate::store::sqlite::frequency::Frequency;
use crate::store::{Collection, Record};
use crate::telemetry::{MirrorMeters, metrics};

/// Shares of the budget: records by id and agents' tools are small and read by every turn;
/// histories take the rest.
const RECORDS_SHARE: usize = 6;
const CHILDREN_SHARE: usize = 24;

/// A miss: the caller reads the database, then offers the value back with this token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token(u64);

enum Slot<V> {
    Loading(Token),
    Ready {
        value: V,
        weight: usize,
        /// Read since the clock hand last passed (the second chance).
        referenced: bool,
        /// Which of the key's entries in the clock's queue is this value's.
        generation: u64,
    },
}

/// One keyed part of the mirror with a weight budget, evicting with CLOCK (second chance):
/// values queue in insertion order; over budget, the hand takes the oldest, and one read since
/// the hand last passed sends it round once more instead. Each value is passed at most twice
/// per eviction, so eviction costs O(1) amortized per insert, whatever the number of keys.
///
/// A value read on a miss into a full table is kept only if its key was looked up more often
/// lately than the key the hand would evict first ([`Frequency`], TinyLFU's admission), so a
/// pass over more keys than the budget holds does not push out every value before its next
/// read. A value a commit writes is always kept.
pub(super) struct Table<K, V> {
    slots: IdMap<K, Slot<V>>,
    /// The clock's queue: keys with the generation they were queued at. An entry whose key
    /// went or was queued again since is stale and skipped.
    queue: VecDeque<(K, u64)>,
    weight: usize,
    budget: usize,
    clock: u64,
    meters: MirrorMeters,
    /// Values the clock took out, or that a full table did not keep, freed once the mirror's
    /// lock is let go ([`MirrorGuard`]).
    evicted: Vec<V>,
    /// Recent look-ups per key, for what a full table keeps.
    frequency: Frequency,
}

impl<K: Eq + Hash + Clone, V> Table<K, V> {
    fn new(budget: usize, part: &'static str) -> Self {
        Self {
            slots: IdMap::default(),
            queue: VecDeque::new(),
            weight: 0,
            budget,
            clock: 0,
            meters: metrics().store().mirror(part),
            evicted: Vec::new(),
            frequency: Frequency::new(),
        }
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.slots.hasher().hash_one(key)
    }

    /// The value, or a token to fill it with after reading the database.
    pub(super) fn get<R>(&mut self, key: &K, read: impl FnOnce(&V) -> R) -> Result<R, Token> {
        self.frequency.record(self.hash(key));
        self.clock += 1;
        let token = Token(self.clock);
        match self.slots.get_mut(key) {
            Some(Slot::Ready {
                value, referenced, ..
            }) => {
                *referenced = true;
                self.meters.hits.inc();
                Ok(read(value))
            }
            Some(slot @ Slot::Loading(_)) => {
                // The newest reader wins; an older one's fill is simply not kept.
                *slot = Slot::Loading(token);
                self.meters.misses.inc();
                Err(token)
            }
            None => {
                self.slots.insert(key.clone(), Slot::Loading(token));
                self.meters.misses.inc();
                Err(token)
            }
        }
    }

    /// The value if it is held, counted as a hit; `None`, counted as a miss, leaves the key
    /// as it was: a read answered from the database does not fill the table.
    pub(super) fn peek<Q, R>(&mut self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.frequency.record(self.hash(key));
        match self.slots.get_mut(key) {
            Some(Slot::Ready {
                value, referenced, ..
            }) => {
                *referenced = true;
                self.meters.hits.inc();
                Some(read(value))
            }
            _ => {
                self.meters.misses.inc();
                None
            }
        }
    }

    /// Keeps a value read from the database, unless a write touched the key since the miss,
    /// or the table is full and the key was looked up no more often lately than the value the
    /// hand would evict for it.
    pub(super) fn fill(&mut self, key: K, token: Token, value: V, weight: usize) {
        if !matches!(self.slots.get(&key), Some(Slot::Loading(t)) if *t == token) {
            return;
        }
        if self.admits(&key, weight) {
            self.put(key, value, weight);
        } else {
            self.slots.remove(&key);
            self.evicted.push(value);
            self.meters.refusals.inc();
        }
    }

    /// Whether a value of `weight` for `key` is to be kept: room for it, or a key looked up
    /// more often than the first the hand would evict. A large value may need more than that
    /// one evicted; the first stands for them.
    fn admits(&mut self, key: &K, weight: usize) -> bool {
        if self.weight.saturating_add(weight) <= self.budget {
            return true;
        }
        let candidate = self.frequency.estimate(self.hash(key));
        match self.next_victim() {
            Some(victim) => candidate > self.frequency.estimate(victim),
            None => true,
        }
    }

    /// The hash of the key the hand evicts next ([`Table::move_hand`]).
    fn next_victim(&mut self) -> Option<u64> {
        if !self.move_hand() {
            return None;
        }
        self.queue.front().map(|(key, _)| self.hash(key))
    }

    /// Moves the clock hand past stale entries and past values read since it last passed
    /// (their second chance taken), and stops at the first value it would evict, left at the
    /// front of the queue; `false` once no value is left.
    fn move_hand(&mut self) -> bool {
        while let Some((key, queued)) = self.queue.pop_front() {
            match self.slots.get_mut(&key) {
                Some(Slot::Ready {
                    referenced,
                    generation,
                    ..
                }) if *generation == queued => {
                    if std::mem::take(referenced) {
                        self.queue.push_back((key, queued));
                    } else {
                        self.queue.push_front((key, queued));
                        return true;
                    }
                }
                // Removed, replaced or being loaded since it was queued.
                _ => {}
            }
        }
        false
    }

    /// Files what a miss read: a value is kept (unless a write came between, see
    /// [`Table::fill`]) and handed back; nothing found or a failure gives the key up.
    pub(super) fn settle<E>(
        &mut self,
        key: K,
        token: Token,
        loaded: Result<Option<(V, usize)>, E>,
    ) -> Result<Option<V>, E>
    where
        V: Clone,
    {
        match loaded {
            Ok(Some((value, weight))) => {
                self.fill(key, token, value.clone(), weight);
                Ok(Some(value))
            }
            Ok(None) => {
                self.abandon(&key, token);
                Ok(None)
            }
            Err(e) => {
                self.abandon(&key, token);
                Err(e)
            }
        }
    }

    /// Gives up a miss that found nothing or failed, so the key does not stay marked.
    pub(super) fn abandon(&mut self, key: &K, token: Token) {
        if matches!(self.slots.get(key), Some(Slot::Loading(t)) if *t == token) {
            self.slots.remove(key);
        }
    }

    /// Sets a value just committed.
    pub(super) fn put(&mut self, key: K, value: V, weight: usize) {
        self.clock += 1;
        let generation = self.clock;
        let slot = Slot::Ready {
            value,
            weight,
            referenced: false,
            generation,
        };
        if let Some(Slot::Ready { weight: old, .. }) = self.slots.insert(key.clone(), slot) {
            self.add_weight(-(old as i64));
        }
        self.queue.push_back((key, generation));
        self.add_weight(weight as i64);
        self.evict();
        self.compact_queue();
        self.frequency.fit(self.slots.len());
    }

    /// Changes a cached value in place after a commit; `change` gives the weight it added. A
    /// key being loaded is dropped instead, since the load may or may not have seen the
    /// commit.
    pub(super) fn change(&mut self, key: &K, change: impl FnOnce(&mut V) -> usize) {
        match self.slots.get_mut(key) {
            Some(Slot::Ready { value, weight, .. }) => {
                let extra_weight = change(value);
                *weight += extra_weight;
                self.add_weight(extra_weight as i64);
                self.evict();
            }
            Some(Slot::Loading(_)) => {
                self.slots.remove(key);
            }
            None => {}
        }
    }

    /// The weight of the value at `key`, if one is held.
    #[cfg(test)]
    pub(super) fn weight_of(&self, key: &K) -> Option<usize> {
        match self.slots.get(key) {
            Some(Slot::Ready { weight, .. }) => Some(*weight),
            _ => None,
        }
    }

    pub(super) fn remove(&mut self, key: &K) {
        if let Some(Slot::Ready { weight, .. }) = self.slots.remove(key) {
            self.add_weight(-(weight as i64));
        }
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.queue.clear();
        self.add_weight(-(self.weight as i64));
    }

    fn add_weight(&mut self, delta: i64) {
        self.weight = self.weight.saturating_add_signed(delta as isize);
        self.meters.bytes.inc_by(delta);
    }

    /// Over budget, moves the clock hand until the weight fits again.
    fn evict(&mut self) {
        while self.weight > self.budget && self.move_hand() {
            let Some((key, _)) = self.queue.pop_front() else {
                return;
            };
            if let Some(Slot::Ready { value, weight, .. }) = self.slots.remove(&key) {
                self.add_weight(-(weight as i64));
                self.evicted.push(value);
                self.meters.evictions.inc();
            }
        }
    }

    /// Drops stale queue entries once they outnumber the values, so removals and
    /// replacements cannot grow the queue without bound. Amortized O(1) per insert.
    fn compact_queue(&mut self) {
        if self.queue.len() <= 2 * self.slots.len() + 64 {
            return;
        }
        let slots = &self.slots;
        self.queue.retain(|(key, queued)| {
            matches!(slots.get(key), Some(Slot::Ready { generation, .. }) if generation == queued)
        });
    }
}

impl<K, V> Drop for Table<K, V> {
    fn drop(&mut self) {
        // The gauge sums every open store's mirror; this one's bytes leave with it.
        self.meters.bytes.dec_by(self.weight as i64);
    }
}

/// The mirror's parts, behind one lock (held only for map operations, never across I/O).
pub(super) struct Mirror {
    /// Records by collection and id.
    pub records: Table<(Collection, Id), Arc<Record>>,
    /// Children by collection and parent id, oldest first.
    pub children: Table<(Collection, Id), Vec<Record>>,
    /// Whole histories by session id, oldest first.
    pub histories: Table<Id, History>,
}

pub(super) struct Cache {
    mirror: Mutex<Mirror>,
}

impl Cache {
    /// A mirror holding about `budget` bytes (0: nothing is kept).
    pub(super) fn new(budget: usize) -> Self {
        metrics().store().set_mirror_budget(budget);
        let records = budget / RECORDS_SHARE;
        let children = budget / CHILDREN_SHARE;
        Self {
            mirror: Mutex::new(Mirror {
                records: Table::new(records, "records"),
                children: Table::new(children, "children"),
                histories: Table::new(budget - records - children, "history"),
            }),
        }
    }

    /// Forgets everything (reads then load from the database again).
    pub(super) fn clear(&self) {
        let mut mirror = self.lock();
        mirror.records.clear();
        mirror.children.clear();
        mirror.histories.clear();
    }

    pub(super) fn lock(&self) -> MirrorGuard<'_> {
        // Every change is a single map operation; a panic cannot leave a half-made change.
        MirrorGuard(Some(
            self.mirror.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// The mirror, locked. Letting it go frees what the clock evicted meanwhile after the lock is
/// released: a history is hundreds of allocations, and readers on the async workers need not
/// wait while they are freed.
pub(super) struct MirrorGuard<'a>(Option<MutexGuard<'a, Mirror>>);

impl std::ops::Deref for MirrorGuard<'_> {
    type Target = Mirror;

    fn deref(&self) -> &Mirror {
        self.0.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for MirrorGuard<'_> {
    fn deref_mut(&mut self) -> &mut Mirror {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for MirrorGuard<'_> {
    fn drop(&mut self) {
        let Some(mut mirror) = self.0.take() else {
            return;
        };
        let evicted = (
            std::mem::take(&mut mirror.records.evicted),
            std::mem::take(&mut mirror.children.evicted),
            std::mem::take(&mut mirror.histories.evicted),
        );
        drop(mirror);
        drop(evicted);
    }
}

pub(super) use crate::store::heap::record_bytes;

/// Weight of an empty history: its snapshot, its log and its key (a session id, held inline
/// in the map's slot and in the clock's queue).
pub(super) const EMPTY_HISTORY: usize =
    size_of::<History>() + crate::session::history::EMPTY_LOG_BYTES + 2 * size_of::<Id>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_after_a_write_to_the_same_key_is_not_kept() {
        let mut table: Table<&str, u32> = Table::new(1 << 20, "history");
        let token = table.get(&"k", |v| *v).unwrap_err();
        table.put("k", 2, 1);
        table.fill("k", token, 1, 1);
        assert_eq!(table.get(&"k", |v| *v), Ok(2));
    }

    #[test]
    fn a_change_during_a_load_drops_the_key() {
        let mut table: Table<&str, Vec<u32>> = Table::new(1 << 20, "history");
        let token = table.get(&"k", Clone::clone).unwrap_err();
        table.change(&"k", |v| {
            v.push(9);
            1
        });
        table.fill("k", token, vec![1], 1);
        assert!(table.get(&"k", Clone::clone).is_err());
    }

    #[test]
    fn an_undisturbed_fill_is_kept_and_changes_apply_to_it() {
        let mut table: Table<&str, Vec<u32>> = Table::new(1 << 20, "history");
        let token = table.get(&"k", Clone::clone).unwrap_err();
        table.fill("k", token, vec![1], 1);
        table.change(&"k", |v| {
            v.push(2);
            1
        });
        assert_eq!(table.get(&"k", Clone::clone), Ok(vec![1, 2]));
    }

    #[test]
    fn over_budget_the_oldest_unread_values_go_and_a_read_one_gets_a_second_chance() {
        let mut table: Table<u32, u32> = Table::new(100, "history");
        for key in 0..10 {
            table.put(key, key, 10);
        }
        // Key 0, the oldest, was read: the hand passes it over once.
        assert_eq!(table.get(&0, |v| *v), Ok(0));
        table.put(10, 10, 10);
        assert!(table.weight <= 100);
        // (The eviction counter is process-wide, shared with other tests: count the values.)
        assert_eq!(table.slots.len(), 10, "one value went");
        assert_eq!(table.get(&0, |v| *v), Ok(0));
        assert!(
            table.get(&1, |v| *v).is_err(),
            "the oldest unread key went first"
        );
        assert_eq!(table.get(&10, |v| *v), Ok(10));
    }

    #[test]
    fn a_round_robin_larger_than_the_budget_costs_a_bounded_queue() {
        let mut table: Table<u32, u32> = Table::new(1_000, "history");
        for round in 0..50 {
            for key in 0..500 {
                if table.get(&key, |v| *v).is_err() {
                    table.put(key, round, 10);
                }
            }
        }
        assert!(table.weight <= 1_000);
        assert!(table.slots.len() <= 600, "{}", table.slots.len());
        assert!(
            table.queue.len() <= 2 * table.slots.len() + 64,
            "{}",
            table.queue.len()
        );
    }

    /// A pass over `keys` keys, each looked up and filled on a miss; how many lookups hit.
    fn pass(table: &mut Table<u32, u32>, keys: u32) -> usize {
        let mut hits = 0;
        for key in 0..keys {
            match table.get(&key, |v| *v) {
                Ok(_) => hits += 1,
                Err(token) => table.fill(key, token, key, 10),
            }
        }
        hits
    }

    #[test]
    fn a_round_robin_larger_than_the_budget_keeps_hitting_the_values_it_holds() {
        // 100 values fit; 500 keys are read in turn, as sessions round-robin.
        let mut table: Table<u32, u32> = Table::new(1_000, "history");
        for _ in 0..5 {
            pass(&mut table, 500);
        }
        let hits: usize = (0..10).map(|_| pass(&mut table, 500)).sum();
        // Without admission every value is evicted before its next read: no hit at all.
        assert!(hits >= 10 * 90, "{hits} hits of 5,000 lookups");
        assert!(table.weight <= 1_000);
    }

    #[test]
    fn a_key_read_more_often_than_the_next_to_go_takes_its_place() {
        let mut table: Table<u32, u32> = Table::new(100, "history");
        for key in 0..10 {
            table.put(key, key, 10);
            assert_eq!(table.get(&key, |v| *v), Ok(key));
        }
        // As often as the values held: not kept.
        let token = table.get(&99, |v| *v).unwrap_err();
        table.fill(99, token, 99, 10);
        assert!(
            table.peek(&99, |_| ()).is_none(),
            "a tie keeps what is held"
        );
        assert_eq!(table.slots.len(), 10);
        assert!(
            table.evicted.contains(&99),
            "freed after the lock, as evictions"
        );
        // Read once more than the next to go: kept, and that one goes.
        let token = table.get(&99, |v| *v).unwrap_err();
        table.fill(99, token, 99, 10);
        assert_eq!(table.get(&99, |v| *v), Ok(99));
        assert!(table.weight <= 100);
        assert_eq!(table.slots.len(), 10);
    }

    #[test]
    fn replaced_and_removed_keys_leave_no_weight_and_a_bounded_queue() {
        let mut table: Table<u32, u32> = Table::new(1 << 20, "history");
        for n in 0..10_000 {
            table.put(n % 3, n, 7);
            if n % 5 == 0 {
                table.remove(&(n % 3));
            }
        }
        let held: usize = table
            .slots
            .values()
            .map(|slot| match slot {
                Slot::Ready { weight, .. } => *weight,
                Slot::Loading(_) => 0,
            })
            .sum();
        assert_eq!(table.weight, held);
        assert!(table.queue.len() <= 2 * table.slots.len() + 64);
    }

    #[test]
    fn evicted_values_are_freed_once_the_lock_is_let_go() {
        let record = |id: &str| {
            Arc::new(Record {
                id: id.into(),
                parent: None,
                body: serde_json::Value::Null,
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                updated_at: time::OffsetDateTime::UNIX_EPOCH,
            })
        };
        // The records' share of this budget holds one of these values, not two.
        let cache = Cache::new(RECORDS_SHARE * 100);
        let first = record("a");
        let key = |id: &str| (Collection::Users, Id::new(id));
        let mut mirror = cache.lock();
        mirror.records.put(key("a"), Arc::clone(&first), 60);
        mirror.records.put(key("b"), record("b"), 60);
        assert!(mirror.records.peek(&key("a"), |_| ()).is_none(), "a went");
        assert_eq!(Arc::strong_count(&first), 2, "not freed under the lock");
        drop(mirror);
        assert_eq!(Arc::strong_count(&first), 1, "freed after it");
        assert!(cache.lock().records.evicted.is_empty());
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let mut table: Table<&str, u32> = Table::new(0, "history");
        let token = table.get(&"k", |v| *v).unwrap_err();
        table.fill("k", token, 1, 10);
        assert!(table.get(&"k", |v| *v).is_err());
        assert_eq!(table.weight, 0);
    }
}
