//! The sustained scenario's output: one table row per window as it closes, and the summary
//! that compares the last minute's rate with the first minute's.

use crate::report::{Percentiles, ms};
use crate::store_counters::StoreWindow;

/// The table's columns, in order.
pub(crate) const COLUMNS: [&str; 20] = [
    "window",
    "t s",
    "RT/s",
    "CPU µs/RT",
    "store µs/RT",
    "mock µs/RT",
    "p50 ms",
    "p99 ms",
    "err",
    "RSS MB",
    "hist hit %",
    "all hit %",
    "evictions",
    "mirror MB",
    "reads/turn",
    "db MB",
    "wal MB",
    "hist mean",
    "hist/turn",
    "new",
];

/// What one window measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowRow {
    /// 1-based.
    pub index: usize,
    /// Seconds from the start of this kind's run to the window's end.
    pub end_secs: f64,
    /// The window's length as measured.
    pub secs: f64,
    pub round_trips: u64,
    /// agentd's CPU time in the window, in nanoseconds.
    pub cpu_ns: Option<f64>,
    /// The store's CPU time in the window, in nanoseconds: agentd's SQLite writer and
    /// checkpoint threads (part of `cpu_ns`), or the PostgreSQL server the bench started.
    pub store_cpu_ns: Option<f64>,
    /// The mock model's CPU time in the window, in nanoseconds.
    pub mock_cpu_ns: Option<f64>,
    pub latency: Percentiles,
    pub errors: u64,
    pub rss_kb: Option<u64>,
    pub store: StoreWindow,
    pub db_bytes: Option<u64>,
    pub wal_bytes: Option<u64>,
    /// Entries per session over every session, at the window's end.
    pub history_mean: f64,
    /// Entries the session held when each turn of the window started, averaged over them.
    pub history_per_turn: Option<f64>,
    /// Sessions replaced in the window because their history reached its cap.
    pub replaced: u64,
}

impl WindowRow {
    pub(crate) fn round_trips_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.round_trips as f64 / self.secs
        } else {
            0.0
        }
    }

    pub(crate) fn cpu_per_rt_us(&self) -> Option<f64> {
        self.per_rt_us(self.cpu_ns)
    }

    fn per_rt_us(&self, cpu_ns: Option<f64>) -> Option<f64> {
        let cpu = cpu_ns?;
        (self.round_trips > 0).then(|| cpu / 1e3 / self.round_trips as f64)
    }

    /// The row's cells, in [`COLUMNS`] order.
    pub(crate) fn cells(&self) -> Vec<String> {
        let dash = || "-".to_owned();
        let fixed = |value: Option<f64>, places: usize| {
            value.map_or_else(dash, |v| format!("{v:.places$}"))
        };
        let mb = |bytes: Option<f64>| fixed(bytes.map(|b| b / (1 << 20) as f64), 1);
        vec![
            self.index.to_string(),
            format!("{:.0}", self.end_secs),
            format!("{:.0}", self.round_trips_per_sec()),
            fixed(self.cpu_per_rt_us(), 0),
            fixed(self.per_rt_us(self.store_cpu_ns), 0),
            fixed(self.per_rt_us(self.mock_cpu_ns), 0),
            ms(self.latency.p50),
            ms(self.latency.p99),
            self.errors.to_string(),
            mb(self.rss_kb.map(|kb| kb as f64 * 1024.0)),
            fixed(self.store.history_hit_pct, 1),
            fixed(self.store.all_hit_pct, 1),
            fixed(self.store.evictions, 0),
            mb(self.store.mirror_bytes),
            fixed(self.store.reads_per_turn, 2),
            mb(self.db_bytes.map(|b| b as f64)),
            mb(self.wal_bytes.map(|b| b as f64)),
            format!("{:.1}", self.history_mean),
            fixed(self.history_per_turn, 1),
            self.replaced.to_string(),
        ]
    }
}

pub(crate) fn print_header(title: &str) {
    println!("\n### {title}\n");
    println!("| {} |", COLUMNS.join(" | "));
    println!("|{}", "---:|".repeat(COLUMNS.len()));
}

pub(crate) fn print_row(row: &WindowRow) {
    println!("| {} |", row.cells().join(" | "));
}

/// The run's decay in one line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    /// Seconds the first and the last windows compared cover (a minute each, or half a
    /// shorter run, in whole windows).
    pub first_secs: f64,
    pub last_secs: f64,
    pub first_rate: f64,
    pub last_rate: f64,
    /// What the round trips of the first and the last windows were like, so that a drop in
    /// rate can be told apart from longer prompts.
    pub first_mix: Mix,
    pub last_mix: Mix,
    /// The highest CPU per round trip of any window, and that window's index.
    pub max_cpu_per_rt_us: Option<(f64, usize)>,
    pub max_p99_ns: u64,
}

impl Summary {
    /// The windows ending within the first `span` seconds (at least the first window) against
    /// those starting within the last `span` (at least the last), `span` being a minute or
    /// half the run when it is shorter than two.
    pub(crate) fn of(rows: &[WindowRow]) -> Option<Self> {
        let last = rows.last()?;
        let total = last.end_secs;
        let span = (total / 2.0).min(60.0);
        let slack = 1e-6 + last.secs * 0.05;
        let rate = |chosen: &[&WindowRow]| {
            let secs: f64 = chosen.iter().map(|r| r.secs).sum();
            let trips: u64 = chosen.iter().map(|r| r.round_trips).sum();
            let rate = if secs > 0.0 { trips as f64 / secs } else { 0.0 };
            (secs, rate, Mix::of(chosen))
        };
        let mut first: Vec<&WindowRow> =
            rows.iter().filter(|r| r.end_secs <= span + slack).collect();
        if first.is_empty() {
            first.push(&rows[0]);
        }
        let mut final_rows: Vec<&WindowRow> = rows
            .iter()
            .filter(|r| r.end_secs - r.secs >= total - span - slack)
            .collect();
        if final_rows.is_empty() {
            final_rows.push(last);
        }
        // The first window of the highest figure.
        let max_cpu_per_rt_us = rows
            .iter()
            .filter_map(|r| r.cpu_per_rt_us().map(|cpu| (cpu, r.index)))
            .fold(
                None,
                |best: Option<(f64, usize)>, (cpu, index)| match best {
                    Some((top, _)) if top >= cpu => best,
                    _ => Some((cpu, index)),
                },
            );
        let (first_secs, first_rate, first_mix) = rate(&first);
        let (last_secs, last_rate, last_mix) = rate(&final_rows);
        Some(Self {
            first_secs,
            last_secs,
            first_rate,
            last_rate,
            first_mix,
            last_mix,
            max_cpu_per_rt_us,
            max_p99_ns: rows.iter().map(|r| r.latency.p99).max().unwrap_or(0),
        })
    }

    pub(crate) fn last_as_pct_of_first(&self) -> Option<f64> {
        (self.first_rate > 0.0).then(|| self.last_rate * 100.0 / self.first_rate)
    }

    pub(crate) fn line(&self, kind: &str) -> String {
        let pct = self
            .last_as_pct_of_first()
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.1} %"));
        let cpu = self.max_cpu_per_rt_us.map_or_else(
            || "-".to_owned(),
            |(cpu, window)| format!("{cpu:.0} µs (window {window})"),
        );
        let pair = |figure: fn(&Mix) -> Option<f64>, unit: &str| match (
            figure(&self.first_mix),
            figure(&self.last_mix),
        ) {
            (Some(first), Some(last)) => format!("{first:.0} → {last:.0}{unit}"),
            _ => "-".to_owned(),
        };
        format!(
            "summary ({kind}): RT/s in the last {last_secs:.0} s = {pct} of the first \
             {first_secs:.0} s ({first:.0} → {last:.0}); over the same windows, history per \
             turn {history}, CPU per round trip {cpu_span} for agentd and {mock_span} for the \
             mock; max CPU/RT {cpu}; max p99 {p99} ms",
            last_secs = self.last_secs,
            first_secs = self.first_secs,
            first = self.first_rate,
            last = self.last_rate,
            history = pair(|mix| mix.history_per_turn, " entries"),
            cpu_span = pair(|mix| mix.cpu_per_rt_us, " µs"),
            mock_span = pair(|mix| mix.mock_per_rt_us, " µs"),
            p99 = ms(self.max_p99_ns),
        )
    }
}

/// The round trips of a run of windows: the history their turns read, and the CPU they took.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Mix {
    /// Entries a session held when a turn started, averaged over the turns.
    pub history_per_turn: Option<f64>,
    /// agentd's CPU per round trip, and the mock model's.
    pub cpu_per_rt_us: Option<f64>,
    pub mock_per_rt_us: Option<f64>,
}

impl Mix {
    fn of(rows: &[&WindowRow]) -> Self {
        let trips: u64 = rows.iter().map(|r| r.round_trips).sum();
        if trips == 0 {
            return Self::default();
        }
        let trips = trips as f64;
        // Every window's figure, weighted by its round trips; none when a window lacks it.
        let weighted = |figure: &dyn Fn(&WindowRow) -> Option<f64>| {
            rows.iter()
                .map(|r| figure(r).map(|value| value * r.round_trips as f64))
                .sum::<Option<f64>>()
                .map(|sum| sum / trips)
        };
        let summed = |cpu_ns: &dyn Fn(&WindowRow) -> Option<f64>| {
            rows.iter()
                .map(|r| cpu_ns(r))
                .sum::<Option<f64>>()
                .map(|ns| ns / 1e3 / trips)
        };
        Self {
            history_per_turn: weighted(&|r| r.history_per_turn),
            cpu_per_rt_us: summed(&|r| r.cpu_ns),
            mock_per_rt_us: summed(&|r| r.mock_cpu_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{COLUMNS, Summary, WindowRow};

    fn row(index: usize, secs: f64, round_trips: u64, cpu_ns: f64) -> WindowRow {
        WindowRow {
            index,
            end_secs: index as f64 * secs,
            secs,
            round_trips,
            cpu_ns: Some(cpu_ns),
            ..WindowRow::default()
        }
    }

    #[test]
    fn compares_the_last_minute_with_the_first() {
        // 18 windows of 10 s: the first six at 1000 RT/s, the last six at 800.
        let rows: Vec<WindowRow> = (1..=18)
            .map(|i| {
                let trips = if i <= 6 {
                    10_000
                } else if i <= 12 {
                    9_000
                } else {
                    8_000
                };
                row(i, 10.0, trips, 1e9)
            })
            .collect();
        let summary = Summary::of(&rows).expect("rows");
        assert_eq!((summary.first_secs, summary.last_secs), (60.0, 60.0));
        assert_eq!(summary.first_rate, 1000.0);
        assert_eq!(summary.last_rate, 800.0);
        assert_eq!(summary.last_as_pct_of_first(), Some(80.0));
        // 1 s of CPU over 8,000 round trips is the most per round trip.
        assert_eq!(summary.max_cpu_per_rt_us, Some((125.0, 13)));
        // 6 s of CPU over 60,000 and over 48,000 round trips.
        assert_eq!(summary.first_mix.cpu_per_rt_us, Some(100.0));
        assert_eq!(summary.last_mix.cpu_per_rt_us, Some(125.0));
        assert_eq!(summary.first_mix.mock_per_rt_us, None, "no mock counted");
    }

    #[test]
    fn the_history_of_each_span_is_averaged_over_its_round_trips() {
        let with = |index: usize, trips: u64, history: f64, mock_ns: f64| WindowRow {
            history_per_turn: Some(history),
            mock_cpu_ns: Some(mock_ns),
            ..row(index, 30.0, trips, 1e9)
        };
        // Two windows a span: 3,000 turns at 10 entries and 1,000 at 30, then 2,000 at 60 and
        // 2,000 at 80.
        let rows = vec![
            with(1, 3_000, 10.0, 1e8),
            with(2, 1_000, 30.0, 1e8),
            with(3, 2_000, 60.0, 2e8),
            with(4, 2_000, 80.0, 2e8),
        ];
        let summary = Summary::of(&rows).expect("rows");
        assert_eq!(summary.first_mix.history_per_turn, Some(15.0));
        assert_eq!(summary.last_mix.history_per_turn, Some(70.0));
        assert_eq!(summary.first_mix.mock_per_rt_us, Some(50.0));
        assert_eq!(summary.last_mix.mock_per_rt_us, Some(100.0));
        let line = summary.line("chat");
        assert!(line.contains("history per turn 15 → 70 entries"), "{line}");
        assert!(line.contains("500 → 500 µs for agentd"), "{line}");
    }

    #[test]
    fn a_short_run_compares_its_halves() {
        let rows = vec![row(1, 1.0, 100, 0.0), row(2, 1.0, 50, 0.0)];
        let summary = Summary::of(&rows).expect("rows");
        assert_eq!((summary.first_secs, summary.last_secs), (1.0, 1.0));
        assert_eq!(summary.last_as_pct_of_first(), Some(50.0));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn a_row_has_a_cell_per_column_and_dashes_for_the_unknown() {
        let cells = row(3, 10.0, 5_000, 1e9).cells();
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(cells[2], "500");
        assert_eq!(cells[3], "200");
        assert_eq!(cells[4], "-", "no store threads counted");
        assert_eq!(cells[10], "-", "no hit rate without the mirror's series");
    }
}
