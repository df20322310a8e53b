//! The embedded store's metrics: lookups in its in-memory mirror (hits and misses), values
//! evicted, values read on a miss and not kept, bytes held against the budget, and reads that
//! went to SQLite. Each part of the mirror takes its handles once ([`MirrorMeters`]), so
//! counting costs an atomic add.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::label_sets::{MirrorLabels, MirrorLookupLabels};

#[derive(Debug, Default)]
pub(crate) struct StoreMetrics {
    lookups: Family<MirrorLookupLabels, Counter>,
    evictions: Family<MirrorLabels, Counter>,
    refusals: Family<MirrorLabels, Counter>,
    bytes: Family<MirrorLabels, Gauge>,
    budget: Gauge,
    reads: Counter,
}

/// One part of the mirror's handles.
#[derive(Debug, Clone, Default)]
pub(crate) struct MirrorMeters {
    pub hits: Counter,
    pub misses: Counter,
    pub evictions: Counter,
    /// Values read on a miss that a full part did not keep.
    pub refusals: Counter,
    /// Estimated bytes held: each part adds and takes away its own.
    pub bytes: Gauge,
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "agentd_store_mirror_lookups",
            "Reads the embedded store answered from its in-memory mirror (hit) or had to load (miss)",
            metrics.lookups.clone(),
        );
        registry.register(
            "agentd_store_mirror_evictions",
            "Values dropped from the mirror to keep it within its budget",
            metrics.evictions.clone(),
        );
        registry.register(
            "agentd_store_mirror_refusals",
            "Values read on a miss that the full mirror did not keep: their key was looked up no more often lately than the value they would have pushed out",
            metrics.refusals.clone(),
        );
        registry.register(
            "agentd_store_mirror_bytes",
            "Estimated bytes the mirror holds",
            metrics.bytes.clone(),
        );
        registry.register(
            "agentd_store_mirror_budget_bytes",
            "Bytes the mirror may hold (storage.mirror_bytes)",
            metrics.budget.clone(),
        );
        registry.register(
            "agentd_store_reads",
            "Reads that went to SQLite",
            metrics.reads.clone(),
        );
        metrics
    }

    /// The handles of mirror part `part` (`records`, `children` or `history`).
    pub(crate) fn mirror(&self, part: &'static str) -> MirrorMeters {
        let lookup = |result| {
            self.lookups
                .get_or_create(&MirrorLookupLabels { part, result })
                .clone()
        };
        MirrorMeters {
            hits: lookup("hit"),
            misses: lookup("miss"),
            evictions: self.evictions.get_or_create(&MirrorLabels { part }).clone(),
            refusals: self.refusals.get_or_create(&MirrorLabels { part }).clone(),
            bytes: self.bytes.get_or_create(&MirrorLabels { part }).clone(),
        }
    }

    pub(crate) fn set_mirror_budget(&self, bytes: usize) {
        self.budget.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn read(&self) {
        self.reads.inc();
    }
}
