//! The store's counters on agentd's `/metrics` that the sustained scenario follows: lookups
//! in the in-memory mirror (hits and misses per part), its evictions, bytes and budget, and
//! the reads that went to SQLite. A series agentd does not expose reads as `None`.

use crate::prom_text::{self, Sample};

const LOOKUPS: &str = "agentd_store_mirror_lookups_total";
const EVICTIONS: &str = "agentd_store_mirror_evictions_total";
const BYTES: &str = "agentd_store_mirror_bytes";
const BUDGET: &str = "agentd_store_mirror_budget_bytes";
const READS: &str = "agentd_store_reads_total";

/// One scrape of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StoreCounters {
    pub history_hits: Option<f64>,
    pub history_misses: Option<f64>,
    /// Over every part (history, records, children).
    pub all_hits: Option<f64>,
    pub all_misses: Option<f64>,
    pub evictions: Option<f64>,
    pub mirror_bytes: Option<f64>,
    pub budget_bytes: Option<f64>,
    pub reads: Option<f64>,
}

impl StoreCounters {
    /// The counters in a `/metrics` text.
    pub(crate) fn from_text(text: &str) -> Self {
        let samples = prom_text::parse(text);
        Self::from_samples(&samples)
    }

    fn from_samples(samples: &[Sample]) -> Self {
        let lookups = |part: Option<&str>, result: &str| {
            let mut wanted = vec![("result", result)];
            wanted.extend(part.map(|part| ("part", part)));
            prom_text::sum(samples, LOOKUPS, &wanted)
        };
        Self {
            history_hits: lookups(Some("history"), "hit"),
            history_misses: lookups(Some("history"), "miss"),
            all_hits: lookups(None, "hit"),
            all_misses: lookups(None, "miss"),
            evictions: prom_text::sum(samples, EVICTIONS, &[]),
            mirror_bytes: prom_text::sum(samples, BYTES, &[]),
            budget_bytes: prom_text::sum(samples, BUDGET, &[]),
            reads: prom_text::sum(samples, READS, &[]),
        }
    }
}

/// What changed between two scrapes, as the window's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StoreWindow {
    /// History lookups that hit, in percent.
    pub history_hit_pct: Option<f64>,
    /// Lookups of every part that hit, in percent.
    pub all_hit_pct: Option<f64>,
    pub evictions: Option<f64>,
    /// The mirror's bytes at the window's end.
    pub mirror_bytes: Option<f64>,
    /// Reads that went to SQLite per turn.
    pub reads_per_turn: Option<f64>,
}

impl StoreWindow {
    pub(crate) fn between(before: &StoreCounters, after: &StoreCounters, turns: u64) -> Self {
        let delta = |b: Option<f64>, a: Option<f64>| Some((a? - b?).max(0.0));
        let hit_pct = |hits: Option<f64>, misses: Option<f64>| {
            let (hits, misses) = (hits?, misses?);
            (hits + misses > 0.0).then(|| hits * 100.0 / (hits + misses))
        };
        Self {
            history_hit_pct: hit_pct(
                delta(before.history_hits, after.history_hits),
                delta(before.history_misses, after.history_misses),
            ),
            all_hit_pct: hit_pct(
                delta(before.all_hits, after.all_hits),
                delta(before.all_misses, after.all_misses),
            ),
            evictions: delta(before.evictions, after.evictions),
            mirror_bytes: after.mirror_bytes,
            reads_per_turn: delta(before.reads, after.reads)
                .filter(|_| turns > 0)
                .map(|reads| reads / turns as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StoreCounters, StoreWindow};

    fn scrape(hit: u32, miss: u32, records_hit: u32, evicted: u32, reads: u32) -> String {
        format!(
            "agentd_store_mirror_lookups_total{{part=\"history\",result=\"hit\"}} {hit}\n\
             agentd_store_mirror_lookups_total{{part=\"history\",result=\"miss\"}} {miss}\n\
             agentd_store_mirror_lookups_total{{part=\"records\",result=\"hit\"}} {records_hit}\n\
             agentd_store_mirror_lookups_total{{part=\"records\",result=\"miss\"}} 0\n\
             agentd_store_mirror_evictions_total{{part=\"history\"}} {evicted}\n\
             agentd_store_mirror_bytes{{part=\"history\"}} 1000\n\
             agentd_store_mirror_bytes{{part=\"records\"}} 24\n\
             agentd_store_mirror_budget_bytes 4096\n\
             agentd_store_reads_total {reads}\n"
        )
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes() {
        let before = StoreCounters::from_text(&scrape(10, 0, 10, 1, 5));
        let after = StoreCounters::from_text(&scrape(100, 10, 110, 4, 50));
        assert_eq!(after.budget_bytes, Some(4096.0));
        let window = StoreWindow::between(&before, &after, 90);
        assert_eq!(window.history_hit_pct, Some(90.0));
        // 90 + 100 hits, 10 misses.
        assert_eq!(window.all_hit_pct, Some(95.0));
        assert_eq!(window.evictions, Some(3.0));
        assert_eq!(window.mirror_bytes, Some(1024.0));
        assert_eq!(window.reads_per_turn, Some(0.5));
    }

    #[test]
    fn series_agentd_does_not_expose_stay_unknown() {
        let text = "agentd_active_turns 3\n";
        let counters = StoreCounters::from_text(text);
        assert_eq!(counters, StoreCounters::default());
        let window = StoreWindow::between(&counters, &counters, 10);
        assert_eq!(window, StoreWindow::default());
    }

    #[test]
    fn a_window_without_lookups_has_no_hit_rate() {
        let same = StoreCounters::from_text(&scrape(5, 5, 5, 0, 0));
        let window = StoreWindow::between(&same, &same, 0);
        assert_eq!(window.history_hit_pct, None);
        assert_eq!(window.evictions, Some(0.0));
        assert_eq!(window.reads_per_turn, None);
    }
}
