//! The pure arithmetic of `agentd-bench soak`: durations written as `30m`, the seeded jitter
//! of the kill schedule, latency percentiles of one sample interval, and the table rows and
//! CSV lines the samples are printed and stored as.

use std::time::Duration;

/// Parses `90`, `90s`, `5m`, `1h` or `500ms` (a bare number is seconds).
pub(crate) fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m, h or ms"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (s, m, h or ms)")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Share of the kill interval the jitter moves a kill by, either way.
pub(crate) const KILL_JITTER: f64 = 0.2;

/// `base` moved by up to ±[`KILL_JITTER`] of itself; `unit` is a draw in `[0, 1)`.
pub(crate) fn jittered(base: Duration, unit: f64) -> Duration {
    let factor = 1.0 - KILL_JITTER + 2.0 * KILL_JITTER * unit.clamp(0.0, 1.0);
    base.mul_f64(factor)
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted values; `None` when empty.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
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
    pub turns: u64,
    pub turns_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub failures: u64,
    pub cut: u64,
    pub busy: u64,
    /// Kills so far in the run.
    pub kills: u32,
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
            t_s: at.t_s,
            lifetime: at.lifetime,
            pid: at.pid,
            age_s: at.age_s,
            rss_kb: at.rss_kb,
            fds: at.fds,
            threads: at.threads,
            data_kb: at.data_kb,
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
            kills: at.kills,
        }
    }

    pub(crate) fn csv_line(&self) -> String {
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
        format!(
            "{:.1},{},{},{:.1},{},{},{},{},{},{:.1},{},{},{},{},{},{}",
            self.t_s,
            self.lifetime,
            self.pid,
            self.age_s,
            opt(self.rss_kb),
            opt(self.fds),
            opt(self.threads),
            opt(self.data_kb),
            self.turns,
            self.turns_per_s,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.failures,
            self.cut,
            self.busy,
            self.kills
        )
    }

    pub(crate) fn table_row(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let mb =
            |v: Option<u64>| v.map_or("-".to_owned(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        format!(
            "| {:>6} | {:>4} | {:>4} | {:>7} | {:>4} | {:>3} | {:>7} | {:>7.0} | {:>6} | {:>6} | {:>4} | {:>3} | {:>3} | {:>5} |",
            clock(self.t_s),
            self.lifetime,
            format!("{:.0}", self.age_s),
            mb(self.rss_kb),
            opt(self.fds),
            opt(self.threads),
            mb(self.data_kb),
            self.turns_per_s,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.failures,
            self.cut,
            self.busy,
            self.kills
        )
    }
}

/// agentd's state when a sample is taken.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Footprint {
    pub t_s: f64,
    pub lifetime: u32,
    pub pid: u32,
    pub age_s: f64,
    pub rss_kb: Option<u64>,
    pub fds: Option<u64>,
    pub threads: Option<u64>,
    pub data_kb: Option<u64>,
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
    fn spans_parse_with_units() {
        assert_eq!(parse_span("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_span("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_span("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_span("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_span("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_span("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_span("5x").is_err());
        assert!(parse_span("m").is_err());
        assert!(parse_span("0s").is_err());
    }

    #[test]
    fn jitter_stays_within_a_fifth_either_way() {
        let base = Duration::from_secs(300);
        assert_eq!(jittered(base, 0.0), Duration::from_secs(240));
        assert_eq!(jittered(base, 0.5), Duration::from_secs(300));
        assert!(jittered(base, 0.999_999) <= Duration::from_secs(360));
        assert!(jittered(base, 0.999_999) > Duration::from_secs(359));
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[3, 9], 50.0), Some(3));
        assert_eq!(percentile(&[], 50.0), None);
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
