//! The verdict of `agentd-bench soak`: per agentd process lifetime, after its warm-up, the
//! mean RSS, open descriptors and data directory size of its last samples against its first
//! ones, within stated tolerances; and no failed request in the whole run.

use crate::soak_stats::Sample;

/// How much growth counts as flat, and what is left out as warm-up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tolerance {
    /// Seconds after a process answered ready whose samples are warm-up.
    pub warmup_s: f64,
    /// Samples averaged at each end of a lifetime's post-warm-up part.
    pub edge_samples: usize,
    /// RSS may grow by this share of the first mean...
    pub rss_ratio: f64,
    /// ...or by this many kB, whichever is larger.
    pub rss_kb: f64,
    /// Open descriptors may grow by this many.
    pub fds: f64,
    /// The data directory may grow by this share of the first mean...
    pub data_ratio: f64,
    /// ...or by this many kB, whichever is larger (sessions are deleted as they are replaced,
    /// so the store should not keep growing).
    pub data_kb: f64,
}

impl Tolerance {
    pub(crate) fn stated(&self) -> String {
        format!(
            "per process lifetime, samples from {:.0} s after ready on: mean of the last {n} vs \
             the first {n}: RSS within +{:.0} % or +{:.0} MB (the larger), fds within +{:.0}, \
             data dir within +{:.0} % or +{:.0} MB (the larger); failures = 0",
            self.warmup_s,
            self.rss_ratio * 100.0,
            self.rss_kb / 1024.0,
            self.fds,
            self.data_ratio * 100.0,
            self.data_kb / 1024.0,
            n = self.edge_samples
        )
    }
}

/// What the verdict found for one lifetime.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lifetime {
    pub lifetime: u32,
    /// Post-warm-up samples it had.
    pub samples: usize,
    /// (first mean, last mean); `None` when too few samples to judge.
    pub rss_kb: Option<(f64, f64)>,
    pub fds: Option<(f64, f64)>,
    pub data_kb: Option<(f64, f64)>,
    pub rss_flat: bool,
    pub fds_flat: bool,
    pub data_flat: bool,
}

impl Lifetime {
    pub(crate) fn judged(&self) -> bool {
        self.rss_kb.is_some() && self.fds.is_some() && self.data_kb.is_some()
    }

    pub(crate) fn flat(&self) -> bool {
        self.rss_flat && self.fds_flat && self.data_flat
    }
}

/// The whole run's verdict.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub lifetimes: Vec<Lifetime>,
    pub failures: u64,
}

impl Verdict {
    /// Passed: no failure, at least one lifetime judged, every judged one flat.
    pub(crate) fn passed(&self) -> bool {
        self.failures == 0
            && self.lifetimes.iter().any(Lifetime::judged)
            && self
                .lifetimes
                .iter()
                .filter(|l| l.judged())
                .all(Lifetime::flat)
    }
}

/// Judges the samples of a run.
pub(crate) fn judge(samples: &[Sample], tolerance: &Tolerance) -> Verdict {
    let failures = samples.iter().map(|s| s.failures).sum();
    let mut lifetimes: Vec<u32> = samples.iter().map(|s| s.at.lifetime).collect();
    lifetimes.dedup();
    let lifetimes = lifetimes
        .into_iter()
        .map(|lifetime| {
            let warm: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.at.lifetime == lifetime && s.at.age_s >= tolerance.warmup_s)
                .collect();
            let rss = edges(&warm, tolerance.edge_samples, |s| s.at.rss_kb);
            let fds = edges(&warm, tolerance.edge_samples, |s| s.at.fds);
            let data = edges(&warm, tolerance.edge_samples, |s| s.at.data_kb);
            let rss_allowed = |first: f64| (first * tolerance.rss_ratio).max(tolerance.rss_kb);
            let data_allowed = |first: f64| (first * tolerance.data_ratio).max(tolerance.data_kb);
            Lifetime {
                lifetime,
                samples: warm.len(),
                rss_kb: rss,
                fds,
                data_kb: data,
                data_flat: data.is_none_or(|(first, last)| last - first <= data_allowed(first)),
                rss_flat: rss.is_none_or(|(first, last)| last - first <= rss_allowed(first)),
                fds_flat: fds.is_none_or(|(first, last)| last - first <= tolerance.fds),
            }
        })
        .collect();
    Verdict {
        lifetimes,
        failures,
    }
}

/// Means of the first and last `n` values, when there are at least `2n` (the two ends do not
/// overlap).
fn edges(
    samples: &[&Sample],
    n: usize,
    value: impl Fn(&Sample) -> Option<u64>,
) -> Option<(f64, f64)> {
    let values: Vec<f64> = samples
        .iter()
        .filter_map(|s| value(s))
        .map(|v| v as f64)
        .collect();
    if n == 0 || values.len() < 2 * n {
        return None;
    }
    let mean = |part: &[f64]| part.iter().sum::<f64>() / part.len() as f64;
    Some((mean(&values[..n]), mean(&values[values.len() - n..])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak_stats::{Footprint, Interval};

    const TOLERANCE: Tolerance = Tolerance {
        warmup_s: 20.0,
        edge_samples: 2,
        rss_ratio: 0.10,
        rss_kb: 8192.0,
        fds: 5.0,
        data_ratio: 0.10,
        data_kb: 65536.0,
    };

    fn sample(lifetime: u32, age_s: f64, rss_kb: u64, fds: u64, failures: u64) -> Sample {
        with_data(lifetime, age_s, rss_kb, fds, failures, 100_000)
    }

    fn with_data(
        lifetime: u32,
        age_s: f64,
        rss_kb: u64,
        fds: u64,
        failures: u64,
        data_kb: u64,
    ) -> Sample {
        let mut interval = Interval {
            failures,
            ..Interval::default()
        };
        Sample::of(
            &mut interval,
            10.0,
            Footprint {
                lifetime,
                age_s,
                rss_kb: Some(rss_kb),
                fds: Some(fds),
                data_kb: Some(data_kb),
                ..Footprint::default()
            },
        )
    }

    /// A lifetime sampled every 10 s from 10 s to 60 s, RSS and fds from `grow(age)`.
    fn lifetime(n: u32, grow: impl Fn(f64) -> (u64, u64)) -> Vec<Sample> {
        (1..=6)
            .map(|i| {
                let age = f64::from(i) * 10.0;
                let (rss, fds) = grow(age);
                sample(n, age, rss, fds, 0)
            })
            .collect()
    }

    #[test]
    fn flat_lifetimes_pass_and_warmup_growth_is_ignored() {
        // Warm-up (age < 20 s) jumps from 10 MB to 100 MB; afterwards it stays near 100 MB.
        let mut samples = lifetime(0, |age| {
            if age < 20.0 {
                (10_000, 20)
            } else {
                (100_000 + age as u64, 40)
            }
        });
        samples.extend(lifetime(1, |_| (90_000, 38)));
        let verdict = judge(&samples, &TOLERANCE);
        assert!(verdict.passed(), "{verdict:?}");
        assert_eq!(verdict.lifetimes.len(), 2);
        assert_eq!(verdict.lifetimes[0].samples, 5);
        let (first, last) = verdict.lifetimes[0].rss_kb.unwrap();
        assert_eq!(first, 100_025.0);
        assert_eq!(last, 100_055.0);
    }

    #[test]
    fn rss_growth_beyond_both_allowances_fails() {
        // 100 MB growing 4 MB per 10 s: first mean 110 MB, last 122 MB: +12 MB > 11 MB.
        let samples = lifetime(0, |age| (100_000 + (age as u64) * 400, 30));
        let verdict = judge(&samples, &TOLERANCE);
        assert!(!verdict.lifetimes[0].rss_flat);
        assert!(verdict.lifetimes[0].fds_flat);
        assert!(!verdict.passed());
    }

    #[test]
    fn small_processes_get_the_absolute_allowance() {
        // 20 MB growing to 27 MB: +35 % but within +8 MB.
        let samples = lifetime(0, |age| (20_000 + (age as u64 - 10) * 140, 30));
        assert!(judge(&samples, &TOLERANCE).passed());
    }

    #[test]
    fn descriptor_growth_fails() {
        let samples = lifetime(0, |age| (50_000, 30 + age as u64 / 5));
        let verdict = judge(&samples, &TOLERANCE);
        assert!(verdict.lifetimes[0].rss_flat);
        assert!(!verdict.lifetimes[0].fds_flat);
        assert!(!verdict.passed());
    }

    #[test]
    fn a_growing_data_dir_fails() {
        // A WAL growing 200 MB per 10 s: far past +64 MB.
        let samples: Vec<Sample> = (1u32..=6)
            .map(|i| {
                with_data(
                    0,
                    f64::from(i) * 10.0,
                    50_000,
                    30,
                    0,
                    u64::from(i) * 204_800,
                )
            })
            .collect();
        let verdict = judge(&samples, &TOLERANCE);
        assert!(verdict.lifetimes[0].rss_flat && verdict.lifetimes[0].fds_flat);
        assert!(!verdict.lifetimes[0].data_flat);
        assert!(!verdict.passed());
        // Churn of a few MB either way is flat.
        let churn: Vec<Sample> = (1u32..=6)
            .map(|i| {
                with_data(
                    0,
                    f64::from(i) * 10.0,
                    50_000,
                    30,
                    0,
                    20_000 + u64::from(i % 2) * 4096,
                )
            })
            .collect();
        assert!(judge(&churn, &TOLERANCE).passed());
    }

    #[test]
    fn one_failure_fails_a_flat_run() {
        let mut samples = lifetime(0, |_| (50_000, 30));
        samples.push(sample(0, 70.0, 50_000, 30, 1));
        let verdict = judge(&samples, &TOLERANCE);
        assert_eq!(verdict.failures, 1);
        assert!(!verdict.passed());
    }

    #[test]
    fn short_lifetimes_are_not_judged_and_a_run_of_only_those_fails() {
        // Only 3 post-warm-up samples: fewer than two ends of 2.
        let samples: Vec<Sample> = (2u32..=4)
            .map(|i| sample(0, f64::from(i) * 10.0, 50_000 * u64::from(i), 30, 0))
            .collect();
        let verdict = judge(&samples, &TOLERANCE);
        assert!(!verdict.lifetimes[0].judged());
        assert!(!verdict.passed());
        // Next to a judged flat lifetime, a short one (say, cut by the end of the run) is fine.
        let mut more = lifetime(1, |_| (50_000, 30));
        more.extend(samples.into_iter().map(|s| Sample {
            at: Footprint {
                lifetime: 2,
                ..s.at
            },
            ..s
        }));
        assert!(judge(&more, &TOLERANCE).passed());
    }
}
