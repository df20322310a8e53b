//! How often each key of a mirror table was looked up lately, estimated in one byte per
//! counter whatever the keys: a count-min sketch with periodic halving (TinyLFU's).
//!
//! The mirror asks it before it keeps a value read on a miss into a full table: the value is
//! kept only if its key was looked up more often lately than the key the clock would evict
//! for it ([`super::cache::Table::fill`]). Without it, a round-robin over more sessions than
//! the budget holds evicts each history just before its next turn and never hits (CLOCK's,
//! and LRU's, worst case); with it, the keys held stay held and hit on every pass, and the
//! rest miss as before, so the hit rate is the share of the sessions the budget holds.

/// A counter's ceiling: four bits' worth, as TinyLFU's; halving keeps counts below it anyway.
const MAX_COUNT: u8 = 15;

/// Counters each key touches; its estimate is the smallest of them.
const PROBES: u64 = 4;

/// Look-ups counted per counter between two halvings: older look-ups weigh less and less.
const SAMPLE_PER_COUNTER: usize = 10;

/// Counters at the least, and per key of the table at the least.
const MIN_COUNTERS: usize = 1024;
const COUNTERS_PER_KEY: usize = 2;

pub(super) struct Frequency {
    counters: Vec<u8>,
    /// Look-ups counted since the last halving.
    sampled: usize,
}

/// The counters of `hash` in a sketch of `mask + 1` counters: four steps of an odd stride
/// from the hash, so they differ whenever the sketch has four counters or more.
fn probes(hash: u64, mask: usize) -> impl Iterator<Item = usize> {
    let stride = (hash >> 32) | 1;
    (0..PROBES).map(move |probe| (hash.wrapping_add(probe.wrapping_mul(stride)) as usize) & mask)
}

impl Frequency {
    pub(super) fn new() -> Self {
        Self::with_counters(MIN_COUNTERS)
    }

    fn with_counters(counters: usize) -> Self {
        Self {
            counters: vec![0; counters.next_power_of_two()],
            sampled: 0,
        }
    }

    fn mask(&self) -> usize {
        self.counters.len() - 1
    }

    /// Counts a look-up of the key hashed to `hash`.
    pub(super) fn record(&mut self, hash: u64) {
        let mask = self.mask();
        for counter in probes(hash, mask) {
            let count = &mut self.counters[counter];
            *count = (*count + 1).min(MAX_COUNT);
        }
        self.sampled += 1;
        if self.sampled >= SAMPLE_PER_COUNTER * self.counters.len() {
            self.halve();
        }
    }

    /// About how often the key hashed to `hash` was looked up lately (never less).
    pub(super) fn estimate(&self, hash: u64) -> u8 {
        probes(hash, self.mask())
            .map(|counter| self.counters[counter])
            .min()
            .unwrap_or(0)
    }

    /// Halves every count: O(counters), once per `SAMPLE_PER_COUNTER` look-ups per counter.
    fn halve(&mut self) {
        for count in &mut self.counters {
            *count /= 2;
        }
        self.sampled /= 2;
    }

    /// Grows the sketch, its counts started over, once the table holds `keys` keys and the
    /// sketch has fewer than [`COUNTERS_PER_KEY`] counters for each: with too few, unrelated
    /// keys share counters and every estimate creeps up.
    pub(super) fn fit(&mut self, keys: usize) {
        let wanted = keys.saturating_mul(COUNTERS_PER_KEY);
        if wanted > self.counters.len() {
            *self = Self::with_counters(wanted);
        }
    }

    /// Heap bytes of the counters.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.counters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_looked_up_more_often_estimates_higher_and_counts_fade() {
        let mut frequency = Frequency::new();
        let (often, once) = (0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321);
        for _ in 0..5 {
            frequency.record(often);
        }
        frequency.record(once);
        assert_eq!(frequency.estimate(often), 5);
        assert_eq!(frequency.estimate(once), 1);
        assert_eq!(frequency.estimate(0x5555_5555_5555_5555), 0);
        frequency.halve();
        assert_eq!(
            (frequency.estimate(often), frequency.estimate(once)),
            (2, 0)
        );
    }

    #[test]
    fn every_so_many_look_ups_halve_the_counts() {
        let mut frequency = Frequency::new();
        let sample = SAMPLE_PER_COUNTER * frequency.bytes();
        for _ in 1..sample {
            frequency.record(7);
        }
        assert_eq!(frequency.estimate(7), MAX_COUNT);
        frequency.record(7);
        assert_eq!(frequency.estimate(7), MAX_COUNT / 2);
    }

    #[test]
    fn counts_stop_at_the_ceiling_and_the_sketch_grows_with_the_keys() {
        let mut frequency = Frequency::new();
        for _ in 0..100 {
            frequency.record(42);
        }
        assert_eq!(frequency.estimate(42), MAX_COUNT);
        frequency.fit(MIN_COUNTERS);
        assert_eq!(frequency.bytes(), 2 * MIN_COUNTERS);
        assert_eq!(frequency.estimate(42), 0, "counts start over");
        frequency.fit(10);
        assert_eq!(frequency.bytes(), 2 * MIN_COUNTERS, "never shrinks");
    }
}
