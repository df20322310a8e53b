//! Each agentd instance's share of a window when the load is spread over several instances on
//! one database: its round trips per second, its own CPU per round trip it served, and its
//! latency, printed as `first / second` cells beside the totals.

use crate::load::Outcome;
use crate::report::{Counters, Row, ms, percentiles, us};

/// One instance's figures in one window.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceFigures {
    pub round_trips_per_sec: f64,
    /// Its process's CPU ÷ the round trips it served.
    pub cpu_per_rt_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

/// The columns added when the load was spread over more than one instance.
pub(crate) const HEADER: [&str; 4] = [
    "RT/s per instance",
    "CPU µs/RT per instance",
    "p50 ms per instance",
    "p99 ms per instance",
];

/// Each instance's figures, from the samples its workers recorded and its process's CPU.
pub(crate) fn figures(
    outcome: &Outcome,
    calls: u64,
    before: &Counters,
    after: &Counters,
    ticks_per_sec: u64,
) -> Vec<InstanceFigures> {
    let secs = outcome.window.as_secs_f64();
    let per = calls.max(1) as f64;
    after
        .cpu_ticks_each
        .iter()
        .enumerate()
        .map(|(instance, &ticks_after)| {
            let latencies: Vec<u64> = outcome
                .samples
                .iter()
                .filter(|s| s.instance == instance)
                .map(|s| s.total_ns)
                .collect();
            let round_trips = latencies.len() as f64 * per;
            let ticks_before = before.cpu_ticks_each.get(instance).copied().unwrap_or(0);
            let cpu_ns =
                ticks_after.saturating_sub(ticks_before) as f64 * 1e9 / ticks_per_sec as f64;
            let latency = percentiles(latencies);
            InstanceFigures {
                round_trips_per_sec: round_trips / secs,
                cpu_per_rt_ns: cpu_ns / round_trips.max(1.0),
                p50_ns: latency.p50,
                p99_ns: latency.p99,
            }
        })
        .collect()
}

/// The most instances any row's agentd side was spread over.
pub(crate) fn count(rows: &[Row]) -> usize {
    rows.iter()
        .map(|r| r.agentd.per_instance.len())
        .max()
        .unwrap_or(0)
}

/// The [`HEADER`] cells of one row.
pub(crate) fn cells(figures: &[InstanceFigures], instances: usize) -> [String; 4] {
    if figures.len() < instances {
        return std::array::from_fn(|_| "-".to_owned());
    }
    let joined = |cell: &dyn Fn(&InstanceFigures) -> String| {
        figures.iter().map(cell).collect::<Vec<_>>().join(" / ")
    };
    [
        joined(&|f| format!("{:.0}", f.round_trips_per_sec)),
        joined(&|f| us(f.cpu_per_rt_ns)),
        joined(&|f| ms(f.p50_ns)),
        joined(&|f| ms(f.p99_ns)),
    ]
}
