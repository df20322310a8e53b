//! Which session the next turn of the sustained scenario goes to: round-robin over every
//! session (one shared cursor), in creation order or in a seeded shuffle of it, or
//! Zipf-distributed over them (a small seeded RNG per client),
//! skipping sessions with a turn in flight (agentd would answer 409) and sessions whose
//! history agentd has refused as full.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// How sessions are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Pattern {
    /// Every session in turn, in the order they were created.
    RoundRobin,
    /// Every session in turn, in a seeded shuffle of that order fixed for the run: each
    /// session once per pass, as with `round-robin`, but consecutive turns go to sessions
    /// created apart, so that their data do not lie side by side in memory.
    Shuffled,
    /// Session of rank k with probability ∝ 1 / (k+1)^s.
    Zipf,
}

const FREE: u8 = 0;
const BUSY: u8 = 1;
const FULL: u8 = 2;

/// Draws before giving up on finding a free session in one call.
const MAX_DRAWS: usize = 10_000;

/// The shared state of the picking: each session's state and the round-robin cursor.
pub(crate) struct Picker {
    states: Vec<AtomicU8>,
    cursor: AtomicUsize,
    /// The round-robin's order, when not the sessions' own.
    order: Option<Vec<usize>>,
    zipf: Option<Zipf>,
}

impl Picker {
    /// A picker over `sessions` sessions by `pattern`; `seed` shuffles the order (`shuffled`)
    /// or the ranks (`zipf`, of exponent `zipf_s`).
    pub(crate) fn new(sessions: usize, pattern: Pattern, zipf_s: f64, seed: u64) -> Self {
        Self {
            states: (0..sessions).map(|_| AtomicU8::new(FREE)).collect(),
            cursor: AtomicUsize::new(0),
            order: (pattern == Pattern::Shuffled).then(|| shuffle(sessions, seed)),
            zipf: (pattern == Pattern::Zipf).then(|| Zipf::new(sessions, zipf_s, seed)),
        }
    }

    /// Claims the next free session for a turn; `None` when none was found (all busy or
    /// full). The caller gives it back with [`Picker::release`] or [`Picker::retire`].
    pub(crate) fn claim(&self, rng: &mut Rng) -> Option<usize> {
        for _ in 0..MAX_DRAWS.min(self.states.len().max(1) * 4) {
            let index = match &self.zipf {
                Some(zipf) => zipf.draw(rng),
                None => {
                    let next = self.cursor.fetch_add(1, Ordering::Relaxed) % self.states.len();
                    self.order.as_ref().map_or(next, |order| order[next])
                }
            };
            let state = &self.states[index];
            if state
                .compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(index);
            }
        }
        None
    }

    /// The turn on `index` is over; the session may be picked again.
    pub(crate) fn release(&self, index: usize) {
        self.states[index].store(FREE, Ordering::Release);
    }

    /// agentd refused the session's history as full; it is not picked again.
    pub(crate) fn retire(&self, index: usize) {
        self.states[index].store(FULL, Ordering::Release);
    }

    /// Sessions retired as full so far.
    pub(crate) fn retired(&self) -> usize {
        self.states
            .iter()
            .filter(|state| state.load(Ordering::Relaxed) == FULL)
            .count()
    }
}

/// A Zipf sampler over ranks 0..n by inverse CDF, with ranks mapped to sessions through a
/// seeded shuffle so the hot sessions are not simply the first ones created.
struct Zipf {
    cumulative: Vec<f64>,
    session_of_rank: Vec<usize>,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        let cumulative = cumulative.into_iter().map(|c| c / total).collect();
        Self {
            cumulative,
            session_of_rank: shuffle(n, seed),
        }
    }

    fn rank(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len().saturating_sub(1))
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        self.session_of_rank[self.rank(rng)]
    }
}

/// `0..n` in an order drawn from `seed` (Fisher–Yates); the same seed gives the same order.
fn shuffle(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

/// SplitMix64: small, fast and good enough to spread load; the same seed gives the same
/// sequence.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::{Pattern, Picker, Rng, Zipf};

    fn round_robin(sessions: usize) -> Picker {
        Picker::new(sessions, Pattern::RoundRobin, 1.0, 0)
    }

    #[test]
    fn round_robin_visits_every_session_in_turn() {
        let picker = round_robin(3);
        let mut rng = Rng::new(1);
        let mut seen = Vec::new();
        for _ in 0..6 {
            let index = picker.claim(&mut rng).expect("a free session");
            seen.push(index);
            picker.release(index);
        }
        assert_eq!(seen, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn shuffled_visits_every_session_once_per_pass_in_a_seeded_order() {
        let passes = |seed| {
            let picker = Picker::new(50, Pattern::Shuffled, 1.0, seed);
            let mut rng = Rng::new(1);
            (0..150)
                .map(|_| {
                    let index = picker.claim(&mut rng).expect("a free session");
                    picker.release(index);
                    index
                })
                .collect::<Vec<_>>()
        };
        let seen = passes(3);
        let first: Vec<usize> = seen[..50].to_vec();
        assert_eq!(seen[50..100], first[..], "every pass in the same order");
        assert_eq!(seen[100..], first[..]);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "each session once");
        assert_ne!(first, sorted, "not the creation order");
        assert_eq!(passes(3), seen, "the seed fixes the order");
        assert_ne!(passes(4), seen);
    }

    #[test]
    fn busy_and_full_sessions_are_skipped() {
        let picker = round_robin(3);
        let mut rng = Rng::new(1);
        let first = picker.claim(&mut rng).expect("free");
        let second = picker.claim(&mut rng).expect("free");
        picker.retire(second);
        picker.release(first);
        // Cursor at 2: session 2, then 0 (1 is full), then nothing while both are busy.
        assert_eq!(picker.claim(&mut rng), Some(2));
        assert_eq!(picker.claim(&mut rng), Some(0));
        assert_eq!(picker.claim(&mut rng), None);
        assert_eq!(picker.retired(), 1);
    }

    #[test]
    fn zipf_favours_low_ranks_by_the_exponent() {
        let zipf = Zipf::new(1000, 1.0, 7);
        let mut rng = Rng::new(42);
        let mut counts = vec![0u32; 1000];
        for _ in 0..200_000 {
            counts[zipf.rank(&mut rng)] += 1;
        }
        // With s = 1, rank 0 is drawn twice as often as rank 1 and 10 times as often as 9;
        // H(1000) ≈ 7.485, so rank 0 takes ≈ 13.4 % of the draws.
        let share = f64::from(counts[0]) / 200_000.0;
        assert!((0.12..0.15).contains(&share), "rank 0 share {share}");
        let ratio = f64::from(counts[0]) / f64::from(counts[9]);
        assert!((8.0..12.5).contains(&ratio), "rank 0 / rank 9 = {ratio}");
        assert!(counts[999] < counts[0] / 100);
    }

    #[test]
    fn zipf_maps_ranks_to_a_seeded_shuffle_of_sessions() {
        let a = Zipf::new(100, 1.0, 3);
        let b = Zipf::new(100, 1.0, 3);
        assert_eq!(a.session_of_rank, b.session_of_rank);
        let mut sorted = a.session_of_rank.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a.session_of_rank, (0..100).collect::<Vec<_>>());
    }
}
