//! The `sustained` subcommand's options and the settings they resolve to (full defaults, or
//! the few-second `--smoke` run), with the duration syntax they accept (`10s`, `5m`, `500ms`).

use std::time::Duration;

use crate::load::{Op, ServerTool};
use crate::session_pick::Pattern;

/// Options of `agentd-bench sustained`.
#[derive(Debug, clap::Args)]
pub(crate) struct SustainedArgs {
    /// Sessions created up front [default: 20000; 200 with --smoke].
    #[arg(long)]
    pub sessions: Option<usize>,
    /// How each client picks the session of its next turn.
    #[arg(long, value_enum, default_value_t = Pattern::RoundRobin)]
    pub pattern: Pattern,
    /// Exponent of the Zipf pattern (session of rank k drawn ∝ 1/(k+1)^s).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Seed of the shuffled order or of the Zipf pattern's RNG [default: from the clock; printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Turn kinds, run one after another on the same agentd (comma-separated: chat,tool,stream).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Chat])]
    pub kind: Vec<Kind>,
    /// Closed-loop clients [default: 64; 8 with --smoke].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Length of one row's window (`10s`, `500ms`, `1m`) [default: 10s; 1s with --smoke].
    #[arg(long, value_parser = crate::durations::parse_duration)]
    pub window: Option<Duration>,
    /// Run time of each kind [default: 5m; 3s with --smoke].
    #[arg(long, value_parser = crate::durations::parse_duration)]
    pub duration: Option<Duration>,
    /// Longest history a session reaches: each slot's session is replaced by a new one once
    /// its history would pass the slot's cap (spread over half this to this, so sessions end
    /// at different times), and a long run settles into histories of every length up to it
    /// instead of prompts that grow without end. 0: sessions are never replaced.
    #[arg(long, default_value_t = 160)]
    pub max_history: u32,
    /// A few seconds on a few sessions, to check that the scenario runs (`--quick` does the
    /// same).
    #[arg(long)]
    pub smoke: bool,
}

/// One kind of turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Non-streaming turn, no tools (1 model round trip, 2 history entries).
    Chat,
    /// Turn with one `echo` server tool call (2 model round trips, 4 history entries).
    Tool,
    /// Streaming turn (1 model round trip, 2 history entries).
    Stream,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Tool => "tool",
            Kind::Stream => "stream",
        }
    }

    pub(crate) fn op(self) -> Op {
        Op::Chat {
            tool: (self == Kind::Tool).then_some(ServerTool::Echo),
            stream: self == Kind::Stream,
        }
    }

    /// History entries one turn adds: the user message and the answer, plus the assistant's
    /// tool call and its result for a tool turn.
    pub(crate) fn entries_per_turn(self) -> u32 {
        match self {
            Kind::Tool => 4,
            Kind::Chat | Kind::Stream => 2,
        }
    }
}

/// The resolved settings of a run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub sessions: usize,
    pub pattern: Pattern,
    pub zipf_s: f64,
    pub seed: u64,
    pub kinds: Vec<Kind>,
    pub clients: usize,
    pub window: Duration,
    pub duration: Duration,
    pub max_history: u32,
}

impl Settings {
    /// `args` with the defaults filled in; `seed_from_clock` is used when no seed is given.
    pub(crate) fn resolve(
        args: &SustainedArgs,
        quick: bool,
        seed_from_clock: u64,
    ) -> Result<Self, String> {
        let smoke = args.smoke || quick;
        let pick = |given: Option<usize>, full: usize, short: usize| {
            given.unwrap_or(if smoke { short } else { full })
        };
        let settings = Self {
            sessions: pick(args.sessions, 20_000, 200),
            pattern: args.pattern,
            zipf_s: args.zipf_s,
            seed: args.seed.unwrap_or(seed_from_clock),
            kinds: args.kind.clone(),
            clients: pick(args.clients, 64, 8),
            window: args
                .window
                .unwrap_or(Duration::from_secs(if smoke { 1 } else { 10 })),
            duration: args
                .duration
                .unwrap_or(Duration::from_secs(if smoke { 3 } else { 300 })),
            max_history: args.max_history,
        };
        if settings.clients == 0 || settings.sessions <= settings.clients {
            return Err(format!(
                "sustained: --sessions ({}) must be above --clients ({}), and clients above 0",
                settings.sessions, settings.clients
            ));
        }
        if settings.window.is_zero() || settings.duration < settings.window {
            return Err("sustained: --window must be above 0 and at most --duration".into());
        }
        if !(settings.zipf_s.is_finite() && settings.zipf_s >= 0.0) {
            return Err("sustained: --zipf-s must be a number ≥ 0".into());
        }
        Ok(settings)
    }

    /// Windows per kind: the duration divided by the window, rounded up.
    pub(crate) fn windows(&self) -> usize {
        let windows = self.duration.as_secs_f64() / self.window.as_secs_f64();
        (windows - 1e-9).ceil().max(1.0) as usize
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{Kind, Settings, SustainedArgs};
    use crate::session_pick::Pattern;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: SustainedArgs,
    }

    fn settings(line: &[&str]) -> Result<Settings, String> {
        let wrapper = Wrapper::try_parse_from(std::iter::once("x").chain(line.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::resolve(&wrapper.args, false, 99)
    }

    #[test]
    fn fills_in_full_or_smoke_defaults() {
        let full = settings(&[]).expect("defaults");
        assert_eq!(
            (full.sessions, full.clients, full.windows()),
            (20_000, 64, 30)
        );
        assert_eq!(full.kinds, [Kind::Chat]);
        assert_eq!(full.pattern, Pattern::RoundRobin);
        assert_eq!(full.seed, 99);
        let smoke = settings(&["--smoke", "--clients", "4"]).expect("smoke");
        assert_eq!((smoke.sessions, smoke.clients), (200, 4));
        assert_eq!(smoke.window, Duration::from_secs(1));
        let listed = settings(&[
            "--kind",
            "chat,tool",
            "--pattern",
            "zipf",
            "--seed",
            "5",
            "--duration",
            "25s",
        ])
        .expect("listed");
        assert_eq!(listed.kinds, [Kind::Chat, Kind::Tool]);
        assert_eq!((listed.seed, listed.windows()), (5, 3));
    }

    #[test]
    fn refuses_settings_that_cannot_run() {
        assert!(settings(&["--sessions", "10", "--clients", "10"]).is_err());
        assert!(settings(&["--window", "20s", "--duration", "10s"]).is_err());
        assert!(settings(&["--zipf-s=-1"]).is_err());
    }
}
