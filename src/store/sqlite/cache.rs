//! The embedded store's in-memory mirror of what a chat turn reads: records by id, an agent's
//! tools, and whole session histories. A turn then reads nothing from SQLite.
//!
//! Coherence rests on two rules. Writes change the mirror only after their commit, on the
//! writer thread, in commit order. A read that misses marks its key `Loading` with a fresh
//! token before it reads the database, and fills the key only if the mark is still its own:
//! a write to that key in between replaces or removes the mark, so a value read before a
//! commit can never overwrite what the commit wrote. The store holds the data directory's
//! lock, so no other process writes the file behind the mirror's back.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::session::message::Entry;
use crate::store::{Collection, Record};

/// Approximate bytes each part of the mirror may hold before its least recently used keys go.
const RECORD_BUDGET: usize = 16 << 20;
const CHILDREN_BUDGET: usize = 4 << 20;
const HISTORY_BUDGET: usize = 64 << 20;

/// Fixed per-value overhead counted on top of its text (key, allocations, bookkeeping).
const OVERHEAD: usize = 160;

/// A miss: the caller reads the database, then offers the value back with this token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token(u64);

enum Slot<V> {
    Loading(Token),
    Ready { value: V, weight: usize, used: u64 },
}

/// One keyed part of the mirror with a weight budget.
pub(super) struct Table<K, V> {
    slots: HashMap<K, Slot<V>>,
    weight: usize,
    budget: usize,
    clock: u64,
}

impl<K: Eq + Hash + Clone, V> Table<K, V> {
    fn new(budget: usize) -> Self {
        Self {
            slots: HashMap::new(),
            weight: 0,
            budget,
            clock: 0,
        }
    }

    /// The value, or a token to fill it with after reading the database.
    pub(super) fn get<R>(&mut self, key: &K, read: impl FnOnce(&V) -> R) -> Result<R, Token> {
        self.clock += 1;
        let token = Token(self.clock);
        match self.slots.get_mut(key) {
            Some(Slot::Ready { value, used, .. }) => {
                *used = token.0;
                Ok(read(value))
            }
            Some(slot @ Slot::Loading(_)) => {
                // The newest reader wins; an older one's fill is simply not kept.
                *slot = Slot::Loading(token);
                Err(token)
            }
            None => {
                self.slots.insert(key.clone(), Slot::Loading(token));
                Err(token)
            }
        }
    }

    /// Keeps a value read from the database, unless a write touched the key since the miss.
    pub(super) fn fill(&mut self, key: K, token: Token, value: V, weight: usize) {
        if matches!(self.slots.get(&key), Some(Slot::Loading(t)) if *t == token) {
            self.put(key, value, weight);
        }
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
        let slot = Slot::Ready {
            value,
            weight,
            used: self.clock,
        };
        if let Some(Slot::Ready { weight: old, .. }) = self.slots.insert(key, slot) {
            self.weight -= old;
        }
        self.weight += weight;
        self.evict();
    }

    /// Changes a cached value in place after a commit; a key being loaded is dropped instead,
    /// since the load may or may not have seen the commit.
    pub(super) fn change(&mut self, key: &K, extra_weight: usize, change: impl FnOnce(&mut V)) {
        match self.slots.get_mut(key) {
            Some(Slot::Ready { value, weight, .. }) => {
                change(value);
                *weight += extra_weight;
                self.weight += extra_weight;
                self.evict();
            }
            Some(Slot::Loading(_)) => {
                self.slots.remove(key);
            }
            None => {}
        }
    }

    pub(super) fn remove(&mut self, key: &K) {
        if let Some(Slot::Ready { weight, .. }) = self.slots.remove(key) {
            self.weight -= weight;
        }
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.weight = 0;
    }

    /// Over budget, drops the least recently used values until a quarter of the budget is
    /// free again (so eviction runs rarely, not on every insert).
    fn evict(&mut self) {
        if self.weight <= self.budget {
            return;
        }
        let mut ready: Vec<(u64, K)> = self
            .slots
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Ready { used, .. } => Some((*used, key.clone())),
                Slot::Loading(_) => None,
            })
            .collect();
        ready.sort_unstable_by_key(|(used, _)| *used);
        let target = self.budget / 4 * 3;
        for (_, key) in ready {
            if self.weight <= target {
                break;
            }
            self.remove(&key);
        }
    }
}

/// The mirror's parts, behind one lock (held only for map operations, never across I/O).
pub(super) struct Mirror {
    /// Records by collection and id.
    pub records: Table<(Collection, String), Arc<Record>>,
    /// Children by collection and parent id, oldest first.
    pub children: Table<(Collection, String), Vec<Record>>,
    /// Whole histories by session id, oldest first.
    pub histories: Table<String, Vec<Arc<Entry>>>,
}

pub(super) struct Cache {
    mirror: Mutex<Mirror>,
}

impl Cache {
    pub(super) fn new() -> Self {
        Self {
            mirror: Mutex::new(Mirror {
                records: Table::new(RECORD_BUDGET),
                children: Table::new(CHILDREN_BUDGET),
                histories: Table::new(HISTORY_BUDGET),
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

    pub(super) fn lock(&self) -> MutexGuard<'_, Mirror> {
        // Every change is a single map operation; a panic cannot leave a half-made change.
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Weight of a stored text (a record body, a message) once parsed.
pub(super) fn weigh(text_len: usize) -> usize {
    OVERHEAD + text_len * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_after_a_write_to_the_same_key_is_not_kept() {
        let mut table: Table<&str, u32> = Table::new(1 << 20);
        let token = table.get(&"k", |v| *v).unwrap_err();
        table.put("k", 2, 1);
        table.fill("k", token, 1, 1);
        assert_eq!(table.get(&"k", |v| *v), Ok(2));
    }

    #[test]
    fn a_change_during_a_load_drops_the_key() {
        let mut table: Table<&str, Vec<u32>> = Table::new(1 << 20);
        let token = table.get(&"k", Clone::clone).unwrap_err();
        table.change(&"k", 1, |v| v.push(9));
        table.fill("k", token, vec![1], 1);
        assert!(table.get(&"k", Clone::clone).is_err());
    }

    #[test]
    fn an_undisturbed_fill_is_kept_and_changes_apply_to_it() {
        let mut table: Table<&str, Vec<u32>> = Table::new(1 << 20);
        let token = table.get(&"k", Clone::clone).unwrap_err();
        table.fill("k", token, vec![1], 1);
        table.change(&"k", 1, |v| v.push(2));
        assert_eq!(table.get(&"k", Clone::clone), Ok(vec![1, 2]));
    }

    #[test]
    fn over_budget_the_least_recently_used_values_go() {
        let mut table: Table<u32, u32> = Table::new(100);
        for key in 0..10 {
            table.put(key, key, 10);
        }
        // Touch key 0 so it is the most recently used.
        assert_eq!(table.get(&0, |v| *v), Ok(0));
        table.put(10, 10, 10);
        assert!(table.weight <= 100);
        assert_eq!(table.get(&0, |v| *v), Ok(0));
        assert!(
            table.get(&1, |v| *v).is_err(),
            "the oldest untouched key went first"
        );
        assert_eq!(table.get(&10, |v| *v), Ok(10));
    }
}
