//! Each agentd instance's share of a window when the load is spread over several instances on
//! one database: its round trips per second, its own CPU per round trip it served, and its
//! latency, printed as `first / second` cells beside the totals.

use crate::load::Outcome;
use crate::report::{Counters, Row, ms, percentiles, us};

/// One instance's figures in one window.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceFigures {
    pub round_trips_per_sec: f64,
    /// How many operations it served (none when the clients are fewer than the instances).
    pub served: usize,
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
            let latencies_len = latencies.len();
            let round_trips = latencies_len as f64 * per;
            let ticks_before = before.cpu_ticks_each.get(instance).copied().unwrap_or(0);
            let cpu_ns =
                ticks_after.saturating_sub(ticks_before) as f64 * 1e9 / ticks_per_sec as f64;
            let latency = percentiles(latencies);
            InstanceFigures {
                round_trips_per_sec: round_trips / secs,
                served: latencies_len,
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
    // An instance that served nothing has no CPU per round trip and no latency.
    let joined = |cell: &dyn Fn(&InstanceFigures) -> String| {
        figures
            .iter()
            .map(|f| {
                if f.served == 0 {
                    "-".to_owned()
                } else {
                    cell(f)
                }
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    [
        figures
            .iter()
            .map(|f| format!("{:.0}", f.round_trips_per_sec))
            .collect::<Vec<_>>()
            .join(" / "),
        joined(&|f| us(f.cpu_per_rt_ns)),
        joined(&|f| ms(f.p50_ns)),
        joined(&|f| ms(f.p99_ns)),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{cells, figures};
    use crate::load::{Outcome, Sample};
    use crate::report::Counters;

    fn sample(instance: usize, total_ms: u64) -> Sample {
        Sample {
            total_ns: total_ms * 1_000_000,
            first_ns: None,
            instance,
        }
    }

    #[test]
    fn splits_a_window_by_the_instance_that_served_it() {
        let outcome = Outcome {
            samples: vec![sample(0, 1), sample(0, 3), sample(1, 2)],
            errors: 0,
            first_error: None,
            window: Duration::from_secs(1),
        };
        let before = Counters {
            cpu_ticks_each: vec![10, 20],
            ..Counters::default()
        };
        let after = Counters {
            cpu_ticks_each: vec![12, 21],
            ..Counters::default()
        };
        // Two model calls per operation, 100 ticks per second.
        let split = figures(&outcome, 2, &before, &after, 100);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].round_trips_per_sec, 4.0);
        assert_eq!(split[1].round_trips_per_sec, 2.0);
        // 2 ticks = 20 ms over 4 round trips; 1 tick = 10 ms over 2.
        assert_eq!(split[0].cpu_per_rt_ns, 5e6);
        assert_eq!(split[1].cpu_per_rt_ns, 5e6);
        assert_eq!(split[0].p50_ns, 1_000_000);
        assert_eq!(split[1].p99_ns, 2_000_000);
        let row = cells(&split, 2);
        assert_eq!(row[0], "4 / 2");
        assert_eq!(row[2], "1.00 / 2.00");
    }

    #[test]
    fn an_instance_that_served_nothing_shows_dashes() {
        let outcome = Outcome {
            samples: vec![sample(0, 1)],
            errors: 0,
            first_error: None,
            window: Duration::from_secs(1),
        };
        let counters = Counters {
            cpu_ticks_each: vec![0, 0],
            ..Counters::default()
        };
        let row = cells(&figures(&outcome, 1, &counters, &counters, 100), 2);
        assert_eq!(row[0], "1 / 0");
        assert_eq!(row[1], "0 / -");
        assert_eq!(row[3], "1.00 / -");
    }

    #[test]
    fn a_row_without_the_split_shows_dashes() {
        assert_eq!(cells(&[], 2), ["-", "-", "-", "-"]);
    }
}
