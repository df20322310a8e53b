//! The pure arithmetic of `agentd-bench soak`: the seeded jitter of the kill schedule, latency
//! percentiles of one sample interval, and the table rows and CSV lines the samples are printed
//! and stored as.

use std::time::Duration;

use crate::report::percentile;

/// Share of the kill interval the jitter moves a kill by, either way.
pub(crate) const KILL_JITTER: f64 = 0.2;

/// `base` moved by up to ±[`KILL_JITTER`] of itself; `unit` is a draw in `[0, 1)`.
pub(crate) fn jittered(base: Duration, unit: f64) -> Duration {
    let factor = 1.0 - KILL_JITTER + 2.0 * KILL_JITTER * unit.clamp(0.0, 1.0);
    base.mul_f64(factor)
}

/// What the clients did between two samples.
#[derive(Debug, Default, Clone)]
pub(crate) struct Interval {
    /// Latency of each turn answered in full, in microseconds.
    pub turn_micros: Vec<u64>,
    /// Requests answered wrongly while agentd was up (the verdict wants none).
    pub failures: u64,
    /// Requests cut off by a kill (connection refused, reset or a body cut short).
    pub cut: u64,
    /// 409s from a session busy shortly after a restart (allowed).
    pub busy: u64,
}

/// One row of the run: the interval's client counts and agentd's footprint at its end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// agentd's state at the interval's end.
    pub at: Footprint,
    pub turns: u64,
    pub turns_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub failures: u64,
    pub cut: u64,
    pub busy: u64,
}

impl Sample {
    pub(crate) const CSV_HEADER: &'static str = "t_s,lifetime,pid,age_s,rss_kb,fds,threads,data_kb,\
turns,turns_per_s,p50_ms,p99_ms,failures,cut,busy,kills";

    pub(crate) const TABLE_HEADER: &'static str = "|      t | life |  age |  RSS MB |  fds | thr | data MB | \
turns/s | p50 ms | p99 ms | fail | cut | 409 | kills |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

    /// The interval's latencies summarized, with agentd's footprint.
    pub(crate) fn of(interval: &mut Interval, seconds: f64, at: Footprint) -> Self {
        interval.turn_micros.sort_unstable();
        let ms = |p| percentile(&interval.turn_micros, p).map(|us| us as f64 / 1000.0);
        let turns = interval.turn_micros.len() as u64;
        Self {
            at,
            turns,
            turns_per_s: if seconds > 0.0 {
                turns as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(50.0),
            p99_ms: ms(99.0),
            failures: interval.failures,
            cut: interval.cut,
            busy: interval.busy,
        }
    }

    pub(crate) fn csv_line(&self) -> String {
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
        let at = &self.at;
        format!(
            "{:.1},{},{},{:.1},{},{},{},{},{},{:.1},{},{},{},{},{},{}",
            at.t_s,
            at.lifetime,
            at.pid,
            at.age_s,
            opt(at.rss_kb),
            opt(at.fds),
            opt(at.threads),
            opt(at.data_kb),
            self.turns,
            self.turns_per_s,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.failures,
            self.cut,
            self.busy,
            at.kills
        )
    }

    pub(crate) fn table_row(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let mb =
            |v: Option<u64>| v.map_or("-".to_owned(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        let at = &self.at;
        format!(
            "| {:>6} | {:>4} | {:>4} | {:>7} | {:>4} | {:>3} | {:>7} | {:>7.0} | {:>6} | {:>6} | {:>4} | {:>3} | {:>3} | {:>5} |",
            clock(at.t_s),
            at.lifetime,
            format!("{:.0}", at.age_s),
            mb(at.rss_kb),
            opt(at.fds),
            opt(at.threads),
            mb(at.data_kb),
            self.turns_per_s,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.failures,
            self.cut,
            self.busy,
            at.kills
        )
    }
}

/// agentd's state when a sample is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Footprint {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Which agentd process (0 for the first, +1 per restart).
    pub lifetime: u32,
    pub pid: u32,
    /// Seconds since this process answered ready.
    pub age_s: f64,
    pub rss_kb: Option<u64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
    /// Size of agentd's data directory (database, WAL and its index).
    pub data_kb: Option<u64>,
    /// Kills so far in the run.
    pub kills: u32,
}

/// `m:ss` of a number of seconds.
fn clock(seconds: f64) -> String {
    let whole = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", whole / 60, whole % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth_either_way() {
        let base = Duration::from_secs(300);
        assert_eq!(jittered(base, 0.0), Duration::from_secs(240));
        assert_eq!(jittered(base, 0.5), Duration::from_secs(300));
        assert!(jittered(base, 0.999_999) <= Duration::from_secs(360));
        assert!(jittered(base, 0.999_999) > Duration::from_secs(359));
    }

    #[test]
    fn a_sample_summarizes_its_interval() {
        let mut interval = Interval {
            turn_micros: vec![3000, 1000, 2000, 50_000],
            failures: 1,
            cut: 2,
            busy: 0,
        };
        let sample = Sample::of(
            &mut interval,
            2.0,
            Footprint {
                t_s: 12.0,
                rss_kb: Some(20480),
                data_kb: Some(1024),
                ..Footprint::default()
            },
        );
        assert_eq!(sample.turns, 4);
        assert_eq!(sample.turns_per_s, 2.0);
        assert_eq!(sample.p50_ms, Some(2.0));
        assert_eq!(sample.p99_ms, Some(50.0));
        assert_eq!(
            sample.csv_line(),
            "12.0,0,0,0.0,20480,,,1024,4,2.0,2.00,50.00,1,2,0,0"
        );
        assert_eq!(
            sample.csv_line().split(',').count(),
            Sample::CSV_HEADER.split(',').count()
        );
        assert!(
            sample.table_row().starts_with("|   0:12 |"),
            "{}",
            sample.table_row()
        );
        assert!(sample.table_row().contains("20.0"));
    }
}
