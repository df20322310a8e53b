//! The held-streams scenario: N streaming chats held open at once (one per session) against a
//! fresh agentd whose mock model answers only after a long delay; agentd's memory per open
//! stream (VmRSS delta ÷ streams open) and its recovery once every client hangs up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::held_client::{Opener, gauges, mock_config, one_stream};
use crate::limits;
use crate::load::{self, Target};
use crate::procs::{self, Running};

/// Mock latency while streams are held: every upstream call stays in flight this long. Below
/// agentd's provider read timeout (120 s), so no stream ends by timing out while measured.
pub(crate) const HOLD: Duration = Duration::from_secs(110);
/// Descriptors left free in agentd beside the streams and what it holds after the warm-up:
/// more SQLite readers (2 descriptors each) open while many chats start at once.
const AGENTD_FD_MARGIN: u64 = 128;
/// Descriptors left free in the mock and in this process.
const FD_MARGIN: u64 = 64;
/// How long agentd gets to drop every stream and turn after the clients hang up.
pub(crate) const RECOVERY_WAIT: Duration = Duration::from_secs(30);
/// When, after the hang-up, memory is read a last time (the allocator returns freed pages to
/// the system lazily, seconds later).
pub(crate) const SETTLE_WAIT: Duration = Duration::from_secs(10);
/// Streamed turns run (at latency 0, this many at once, twice) before the first RSS reading,
/// so code paths, worker threads and the SQLite reader pool are warm.
const WARMUP_STREAMS: usize = 64;

/// What one held-streams run measured.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub requested: usize,
    /// Streams opened (after any clamp).
    pub attempted: usize,
    /// Why fewer than `requested` were opened.
    pub clamp: Option<String>,
    /// `agentd_active_streams` when memory was read with all streams open.
    pub confirmed: i64,
    /// `agentd_active_streams` when memory was read with the first half open.
    pub confirmed_half: i64,
    /// Streams whose 200 head reached the client.
    pub heads: usize,
    /// Model calls the mock received during the run (all still waiting).
    pub mock_in_flight: u64,
    pub errors: usize,
    pub first_error: Option<String>,
    pub open_secs: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_half_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    pub fds_before: Option<u64>,
    pub fds_after: Option<u64>,
    pub fds_peak: u64,
    /// Time until active streams and turns were both 0 again.
    pub recovered_in: Option<Duration>,
    pub rss_recovered_kb: Option<u64>,
    pub fds_recovered: Option<u64>,
    /// A streamed turn on a session that had been held, after recovery.
    pub serves_after: Option<Result<(), String>>,
    /// VmRSS [`SETTLE_WAIT`] after the hang-up: what the allocator gave back to the system.
    pub rss_settled_kb: Option<u64>,
}

/// RSS growth per stream in KB; `None` without streams or without growth, since every open
/// stream costs memory: RSS that did not grow was not read from the process holding them.
fn per_stream(from_kb: Option<u64>, to_kb: Option<u64>, streams: i64) -> Option<f64> {
    let (from, to) = (from_kb?, to_kb?);
    (streams > 0 && to > from).then(|| (to - from) as f64 / streams as f64)
}

impl Held {
    /// (RSS with all open − RSS before) ÷ streams confirmed open, in KB.
    pub(crate) fn kb_per_stream(&self) -> Option<f64> {
        per_stream(self.rss_before_kb, self.rss_after_kb, self.confirmed)
    }

    /// (RSS with all open − RSS with half open) ÷ the streams in between, in KB: the cost of
    /// one more stream, without what grows once (threads, SQLite readers).
    pub(crate) fn kb_per_stream_marginal(&self) -> Option<f64> {
        per_stream(
            self.rss_half_kb,
            self.rss_after_kb,
            self.confirmed - self.confirmed_half,
        )
    }
}

/// [`run`], then prints the table (or why the run failed).
pub(crate) fn run_and_print(
    runtime: &tokio::runtime::Runtime,
    scratch: &std::path::Path,
    requested: usize,
) -> Option<Held> {
    match run(runtime, scratch, requested) {
        Ok(held) => {
            crate::held_report::print(&held);
            Some(held)
        }
        Err(e) => {
            println!("\n### held\n\nheld streams failed: {e}");
            None
        }
    }
}

/// Starts a fresh mock and agentd under `scratch`, holds `requested` streams (fewer when the
/// descriptor limits cannot cover them) and stops both processes again.
pub(crate) fn run(
    runtime: &tokio::runtime::Runtime,
    scratch: &std::path::Path,
    requested: usize,
) -> Result<Held, String> {
    let scratch = scratch.join("held");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mock = procs::start_mock(0)?;
    let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let agentd = procs::start_agentd(&scratch, &mock.origin, &api_key)?;
    let result = runtime.block_on(hold(&agentd, &mock, api_key, requested));
    agentd.stop();
    mock.stop();
    result
}

async fn hold(
    agentd: &Running,
    mock: &Running,
    api_key: String,
    requested: usize,
) -> Result<Held, String> {
    let target = Target::connect(
        load::http_client(256)?,
        &agentd.origin,
        &mock.origin,
        api_key,
    )
    .await?;
    let target = Arc::new(target);
    let began = Instant::now();
    let sessions: Vec<String> = futures_util::stream::iter(0..requested + WARMUP_STREAMS)
        .map(|_| {
            let target = Arc::clone(&target);
            async move { target.new_session().await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!(
        "held: {} sessions created in {:.1} s",
        sessions.len(),
        began.elapsed().as_secs_f64()
    );
    let (warm, sessions) = sessions.split_at(WARMUP_STREAMS);
    for _ in 0..2 {
        let turns = warm.iter().map(|session| one_stream(&target, session));
        for result in futures_util::future::join_all(turns).await {
            result?;
        }
    }

    let mut held = Held {
        requested,
        ..Held::default()
    };
    let (attempted, clamp) = clamp(requested, agentd.pid(), mock.pid());
    held.attempted = attempted;
    held.clamp = clamp;
    let previous_latency = mock_config(&target, json!({})).await?;
    mock_config(&target, json!({"latency_ms": HOLD.as_millis() as u64})).await?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = agentd.pid();
    held.rss_before_kb = procs::status_kb(pid, "VmRSS");
    held.fds_before = limits::open_fds(pid);
    let mut opener = Opener::new(Arc::clone(&target), pid).await?;
    let opened_at = Instant::now();
    let deadline = opened_at + HOLD - Duration::from_secs(15);
    let half = attempted / 2;
    opener.open(&sessions[..half]).await;
    opener.wait_open(deadline).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    held.rss_half_kb = procs::status_kb(pid, "VmRSS");
    held.confirmed_half = gauges(&target).await.map_or(0, |(s, _)| s);
    opener.open(&sessions[half..attempted]).await;
    opener.wait_open(deadline).await;
    held.open_secs = opened_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    held.rss_after_kb = procs::status_kb(pid, "VmRSS");
    held.fds_after = limits::open_fds(pid);
    held.confirmed = gauges(&target).await.map_or(0, |(s, _)| s);
    held.mock_in_flight = opener.mock_arrivals().await;
    let tally = Arc::clone(&opener.tally);
    held.heads = tally.heads.load(std::sync::atomic::Ordering::Relaxed);
    held.errors = tally.failed();
    held.first_error = tally.first_error.lock().ok().and_then(|e| e.clone());
    held.fds_peak = opener
        .fds_peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(held.fds_after.unwrap_or(0));

    // Every client hangs up at once.
    opener.hang_up();
    let hung_up = Instant::now();
    while hung_up.elapsed() < RECOVERY_WAIT {
        if gauges(&target).await == Ok((0, 0)) {
            held.recovered_in = Some(hung_up.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    held.rss_recovered_kb = procs::status_kb(pid, "VmRSS");
    held.fds_recovered = limits::open_fds(pid);
    mock_config(&target, json!({"latency_ms": previous_latency})).await?;
    held.serves_after = Some(match sessions.first() {
        Some(session) => one_stream(&target, session).await,
        None => Err("no session was held".into()),
    });
    tokio::time::sleep(SETTLE_WAIT.saturating_sub(hung_up.elapsed())).await;
    held.rss_settled_kb = procs::status_kb(pid, "VmRSS");
    Ok(held)
}

/// Picks how many streams fit the descriptor limits of agentd (2 per stream: client socket and
/// upstream socket), the mock (1) and this process (1); says why when that is below `requested`.
fn clamp(requested: usize, agentd: u32, mock: u32) -> (usize, Option<String>) {
    let mut fit = requested;
    let mut reasons = Vec::new();
    for (name, pid, per, margin) in [
        ("agentd", agentd, 2, AGENTD_FD_MARGIN),
        ("mock-model", mock, 1, FD_MARGIN),
        ("agentd-bench", std::process::id(), 1, FD_MARGIN),
    ] {
        let Some(can) = limits::streams_that_fit(pid, per, margin) else {
            continue;
        };
        let can = usize::try_from(can).unwrap_or(usize::MAX);
        if can < fit {
            fit = can;
            let soft = limits::open_files_limit(pid).map_or(0, |(s, _)| s);
            let open = limits::open_fds(pid).unwrap_or(0);
            reasons.push(format!(
                "{name} needs {per} fd(s) per stream; its RLIMIT_NOFILE is {soft} with {open} \
                 open and {margin} kept free, so {can} streams fit"
            ));
        }
    }
    let clamp = (fit < requested).then(|| {
        format!(
            "clamped from {requested} to {fit} streams: {}",
            reasons.join("; ")
        )
    });
    (fit, clamp)
}

#[cfg(test)]
mod tests {
    use super::per_stream;

    #[test]
    fn memory_per_stream_needs_streams_and_growth() {
        assert_eq!(per_stream(Some(1_000), Some(3_000), 40), Some(50.0));
        assert_eq!(per_stream(Some(1_000), Some(1_000), 40), None);
        assert_eq!(per_stream(Some(1_000), Some(900), 40), None);
        assert_eq!(per_stream(Some(1_000), Some(3_000), 0), None);
        assert_eq!(per_stream(None, Some(3_000), 40), None);
    }
}
