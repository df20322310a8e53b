//! The sustained scenario: one agentd under closed-loop load for minutes on many sessions
//! created up front, each kept until its history is long (`--max-history`); one table row per
//! window (rate, CPU, latency, memory, the store's mirror and reads, database files, history
//! length) shows whether agentd holds its rate or decays.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::fleet::{self, Plan};
use crate::load::{self, Target};
use crate::procs;
use crate::report::percentiles;
use crate::session_pick::{Pattern, Picker, Rng};
use crate::store::StoreKind;
use crate::store_counters::{StoreCounters, StoreWindow};
use crate::sustained_args::{Kind, Settings, SustainedArgs};
use crate::sustained_report::{self as table, Summary, WindowRow};

/// Agents the sessions are spread over.
const AGENTS: usize = 4;
/// Sessions created at once.
const CREATE_CONCURRENCY: usize = 64;
/// What a client waits after a failed turn, so a dead endpoint is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

/// What the top-level options say about the processes.
pub(crate) struct Common<'a> {
    /// `--quick`: the `--smoke` settings.
    pub quick: bool,
    pub latency_ms: u64,
    pub plan: Plan<'a>,
}

/// The sessions, how long the bench has made each one's history, and the picking state.
struct Book {
    /// The session in each slot (replaced when its history reaches the slot's cap).
    ids: Vec<Mutex<String>>,
    agents: Vec<String>,
    entries: Vec<AtomicU32>,
    total_entries: AtomicU64,
    picker: Picker,
}

impl Book {
    fn add_entries(&self, index: usize, added: u32) {
        self.entries[index].fetch_add(added, Ordering::Relaxed);
        self.total_entries
            .fetch_add(u64::from(added), Ordering::Relaxed);
    }

    fn id(&self, index: usize) -> String {
        self.ids[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts a new session with an empty history in slot `index`.
    fn replace(&self, index: usize, id: String) {
        *self.ids[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = id;
        let held = self.entries[index].swap(0, Ordering::Relaxed);
        self.total_entries
            .fetch_sub(u64::from(held), Ordering::Relaxed);
    }

    fn agent_of(&self, index: usize) -> &str {
        &self.agents[index % self.agents.len()]
    }

    fn mean_history(&self) -> f64 {
        self.total_entries.load(Ordering::Relaxed) as f64 / self.ids.len().max(1) as f64
    }
}

/// The turns that ended in the current window.
#[derive(Default)]
struct Tally {
    latencies: Vec<u64>,
    /// Sum over those turns of the entries their session held when they started.
    history_seen: u64,
    replaced: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Counters read at a window boundary.
struct Snapshot {
    at: Instant,
    cpu_ticks: Option<u64>,
    store_cpu_ticks: Option<u64>,
    mock_cpu_ticks: Option<u64>,
    rss_kb: Option<u64>,
    store: StoreCounters,
    db_bytes: Option<u64>,
    wal_bytes: Option<u64>,
}

/// The name shared by agentd's SQLite store threads (the writer and the checkpointer), as
/// `/proc` shows it (15 bytes at most).
const STORE_THREADS: &str = "agentd-store-";

/// Where the counters come from.
struct Probe {
    pid: u32,
    /// The mock model's: its CPU shares the machine with agentd's.
    mock_pid: u32,
    /// agentd's data directory, on SQLite.
    data_dir: Option<PathBuf>,
    /// The PostgreSQL server's postmaster, when the bench started it: its CPU and its
    /// backends' is the store's (`store µs/RT`) there.
    database_pid: Option<u32>,
    target: Arc<Target>,
}

impl Probe {
    async fn snapshot(&self) -> Snapshot {
        let at = Instant::now();
        let cpu_ticks = procs::cpu_ticks(self.pid);
        let store_cpu_ticks = match self.database_pid {
            Some(server) => procs::tree_cpu_ticks(server),
            None => procs::threads_cpu_ticks(self.pid, STORE_THREADS),
        };
        let mock_cpu_ticks = procs::cpu_ticks(self.mock_pid);
        let rss_kb = procs::status_kb(self.pid, "VmRSS");
        let mut store = scrape(&self.target).await.unwrap_or_default();
        if self.data_dir.is_none() {
            // `agentd_store_reads_total` counts the SQLite store's reads; PostgreSQL's are
            // every turn's, and not counted there.
            store.reads = None;
        }
        let size = |name: &str| {
            let dir = self.data_dir.as_ref()?;
            std::fs::metadata(dir.join(name)).ok().map(|m| m.len())
        };
        Snapshot {
            at,
            cpu_ticks,
            store_cpu_ticks,
            mock_cpu_ticks,
            rss_kb,
            store,
            db_bytes: size("agentd.db"),
            wal_bytes: size("agentd.db-wal"),
        }
    }
}

/// agentd's store counters from its `/metrics`.
async fn scrape(target: &Target) -> Result<StoreCounters, String> {
    let text = target
        .http
        .get(format!("{}/metrics", target.agentd))
        .bearer_auth(&target.api_key)
        .send()
        .await
        .map_err(|e| format!("metrics: {e}"))?
        .error_for_status()
        .map_err(|e| format!("metrics: {e}"))?
        .text()
        .await
        .map_err(|e| format!("metrics: {e}"))?;
    Ok(StoreCounters::from_text(&text))
}

/// Runs the scenario: starts the mock and one agentd, creates the sessions, then runs each
/// kind for the duration on the same processes and prints its table.
pub(crate) fn run(args: &SustainedArgs, common: &Common, scratch: &Path) -> Result<(), String> {
    let clock_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let settings = Settings::resolve(args, common.quick, clock_seed)?;
    common.plan.check()?;
    if common.plan.instances != 1 {
        return Err("sustained runs one agentd: leave --instances at 1".into());
    }
    crate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mock = procs::start_mock(common.latency_ms)?;
    let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let fleet = fleet::start(
        &runtime,
        &common.plan,
        scratch,
        &mock.origin,
        &api_key,
        None,
    )?;
    let agentd = fleet.first();
    let target = Arc::new(runtime.block_on(Target::connect(
        load::http_client(settings.clients + CREATE_CONCURRENCY)?,
        &agentd.origin,
        &mock.origin,
        api_key,
    ))?);
    let probe = Probe {
        pid: agentd.pid(),
        mock_pid: mock.pid(),
        data_dir: (common.plan.store == StoreKind::Sqlite).then(|| scratch.join("data")),
        database_pid: fleet.database_pid,
        target: Arc::clone(&target),
    };
    println!(
        "agentd-bench sustained: agentd {} (pid {}), mock {} (pid {}), mock latency {} ms",
        agentd.origin,
        agentd.pid(),
        mock.origin,
        mock.pid(),
        common.latency_ms
    );
    print!("{}", fleet.header());

    let began = Instant::now();
    let (agents, ids) = runtime.block_on(create_sessions(&target, settings.sessions))?;
    let created_secs = began.elapsed().as_secs_f64();
    println!(
        "sessions: {} created on {AGENTS} agents in {created_secs:.1} s ({:.0}/s)",
        ids.len(),
        ids.len() as f64 / created_secs.max(1e-9)
    );
    let book = Arc::new(Book {
        entries: ids.iter().map(|_| AtomicU32::new(0)).collect(),
        picker: Picker::new(ids.len(), settings.pattern, settings.zipf_s, settings.seed),
        ids: ids.into_iter().map(Mutex::new).collect(),
        agents,
        total_entries: AtomicU64::new(0),
    });
    let budget = runtime
        .block_on(scrape(&target))
        .ok()
        .and_then(|c| c.budget_bytes);
    print_legend(&settings, budget);

    let ticks_per_sec = procs::clock_ticks_per_second();
    for (order, &kind) in settings.kinds.iter().enumerate() {
        let rows = runtime.block_on(run_kind(
            &target,
            &book,
            kind,
            order,
            &settings,
            &probe,
            ticks_per_sec,
        ));
        if let Some(summary) = Summary::of(&rows) {
            println!("\n{}", summary.line(kind.name()));
        }
    }
    println!("{}", runtime.block_on(check_history(&target, &book)));
    let retired = book.picker.retired();
    if retired > 0 {
        println!("sessions refused as full (history_full) and no longer picked: {retired}");
    }
    println!(
        "agentd peak RSS (VmHWM): {}; in transparent huge pages at the end: {}",
        crate::kb_text(procs::status_kb(agentd.pid(), "VmHWM")),
        crate::kb_text(procs::smaps_rollup_kb(agentd.pid(), "AnonHugePages")),
    );
    fleet.stop();
    mock.stop();
    Ok(())
}

/// Entries per page when the bench reads a history back.
const HISTORY_PAGE: usize = 1000;

/// Compares the history agentd holds for the session the bench made longest with the entries
/// the bench counted for it, as a line.
async fn check_history(target: &Target, book: &Book) -> String {
    let Some((index, counted)) = book
        .entries
        .iter()
        .map(|entries| entries.load(Ordering::Relaxed))
        .enumerate()
        .max_by_key(|&(_, entries)| entries)
    else {
        return "history check: no sessions".into();
    };
    let id = &book.id(index);
    match target.history_len(id, HISTORY_PAGE).await {
        Ok((held, _)) => format!(
            "history check: session {id} holds {held} entries in agentd; the bench counted {counted}"
        ),
        Err(error) => format!("history check: session {id}: {error}"),
    }
}

/// Creates [`AGENTS`] agents and `count` sessions over them, [`CREATE_CONCURRENCY`] at a time.
async fn create_sessions(
    target: &Arc<Target>,
    count: usize,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut agents = vec![target.agent_id.clone()];
    for _ in 1..AGENTS {
        agents.push(target.create_agent().await?);
    }
    let agents = Arc::new(agents);
    futures_util::stream::iter(0..count)
        .map(|index| {
            let target = Arc::clone(target);
            let agents = Arc::clone(&agents);
            async move {
                target
                    .new_session_of(0, &agents[index % agents.len()])
                    .await
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<String>, String>>()
        .map(|ids| (agents.to_vec(), ids))
}

fn print_legend(settings: &Settings, budget: Option<f64>) {
    let pattern = match settings.pattern {
        Pattern::RoundRobin => "round-robin (one shared cursor)".to_owned(),
        Pattern::Shuffled => format!(
            "shuffled round-robin (one shared cursor over a shuffle of the sessions, seed {})",
            settings.seed
        ),
        Pattern::Zipf => format!(
            "zipf s = {} over the sessions (seed {}; ranks shuffled over sessions)",
            settings.zipf_s, settings.seed
        ),
    };
    let budget = budget.map_or_else(
        || "not exposed".to_owned(),
        |b| format!("{:.1} MB", b / (1 << 20) as f64),
    );
    println!(
        "pattern: {pattern}; {} clients; windows of {:.1} s, {} per kind; {} CPUs; \
         transparent huge pages: {}\n\
         Each chat or stream turn adds 2 history entries, a tool turn 4; {max_history}.\n\
         A client skips sessions with a turn in flight. A turn counts in the window it ends in.\n\
         RT/s = model round trips (chat, stream 1 per turn; tool 2) ÷ window. CPU µs/RT = agentd\n\
         utime+stime delta (/proc/PID/stat) ÷ round trips; store µs/RT = the part of it spent on\n\
         the SQLite writer and checkpoint threads, or on PostgreSQL the server's CPU as above;\n\
         mock µs/RT the same for the mock model, which shares the machine's CPUs.\n\
         p50/p99 = turn latency. RSS = agentd VmRSS.\n\
         hist hit % / all hit % = mirror lookups that hit (history part / every part), evictions =\n\
         mirror evictions, mirror MB = mirror bytes at the window's end (budget {budget}),\n\
         reads/turn = reads that went to SQLite ÷ turns: deltas of agentd's /metrics, `-` where\n\
         agentd does not expose them. db MB, wal MB = agentd.db and agentd.db-wal in its data\n\
         directory. hist mean = entries per session over every session; hist/turn = entries the\n\
         session held when each of the window's turns started, averaged.",
        settings.clients,
        settings.window.as_secs_f64(),
        settings.windows(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        procs::huge_page_mode().unwrap_or_else(|| "unknown".to_owned()),
        max_history = if settings.max_history == 0 {
            "sessions are never replaced".to_owned()
        } else {
            format!(
                "a session is replaced by a new one (not counted\n\
                 as a turn; `new` = replacements in the window) once its history would pass its\n\
                 cap, spread over {}..={} entries by slot (--max-history)",
                settings.max_history - settings.max_history / 2,
                settings.max_history
            )
        },
    );
}

/// One kind for the whole duration: the clients run from the first window to the last, and
/// each window's row is printed as it closes.
async fn run_kind(
    target: &Arc<Target>,
    book: &Arc<Book>,
    kind: Kind,
    order: usize,
    settings: &Settings,
    probe: &Probe,
    ticks_per_sec: u64,
) -> Vec<WindowRow> {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..settings.clients)
        .map(|index| {
            let seed = settings
                .seed
                .wrapping_add(((order * settings.clients + index + 1) as u64) << 32);
            tokio::spawn(client(
                Arc::clone(target),
                Arc::clone(book),
                Arc::clone(&tally),
                Arc::clone(&stop),
                kind,
                settings.max_history,
                seed,
            ))
        })
        .collect();
    let started = Instant::now();
    let mut before = probe.snapshot().await;
    table::print_header(&format!(
        "sustained {}: {} sessions, {} clients, {:.0} s in windows of {:.1} s",
        kind.name(),
        book.ids.len(),
        settings.clients,
        settings.duration.as_secs_f64(),
        settings.window.as_secs_f64()
    ));
    let mut rows = Vec::with_capacity(settings.windows());
    let mut first_errors = Vec::new();
    for index in 1..=settings.windows() {
        let end = started + settings.window.mul_f64(index as f64).min(settings.duration);
        tokio::time::sleep_until(end.into()).await;
        let taken = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
        let after = probe.snapshot().await;
        let row = window_row(
            index,
            started,
            &before,
            &after,
            &taken,
            kind,
            book,
            ticks_per_sec,
        );
        table::print_row(&row);
        if let Some(error) = taken.first_error {
            first_errors.push((index, error));
        }
        rows.push(row);
        before = after;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    for (index, error) in first_errors.iter().take(3) {
        println!("  first error in window {index}: {error}");
    }
    rows
}

#[allow(clippy::too_many_arguments)]
fn window_row(
    index: usize,
    started: Instant,
    before: &Snapshot,
    after: &Snapshot,
    taken: &Tally,
    kind: Kind,
    book: &Book,
    ticks_per_sec: u64,
) -> WindowRow {
    let turns = taken.latencies.len() as u64;
    let cpu_ns = |before: Option<u64>, after: Option<u64>| {
        before
            .zip(after)
            .map(|(b, a)| a.saturating_sub(b) as f64 * 1e9 / ticks_per_sec.max(1) as f64)
    };
    WindowRow {
        index,
        end_secs: after.at.duration_since(started).as_secs_f64(),
        secs: after.at.duration_since(before.at).as_secs_f64(),
        round_trips: turns * kind.op().model_calls(),
        cpu_ns: cpu_ns(before.cpu_ticks, after.cpu_ticks),
        store_cpu_ns: cpu_ns(before.store_cpu_ticks, after.store_cpu_ticks),
        mock_cpu_ns: cpu_ns(before.mock_cpu_ticks, after.mock_cpu_ticks),
        latency: percentiles(taken.latencies.clone()),
        errors: taken.errors,
        rss_kb: after.rss_kb,
        store: StoreWindow::between(&before.store, &after.store, turns),
        db_bytes: after.db_bytes,
        wal_bytes: after.wal_bytes,
        history_mean: book.mean_history(),
        history_per_turn: (turns > 0).then(|| taken.history_seen as f64 / turns as f64),
        replaced: taken.replaced,
    }
}

/// The history length at which slot `index` gets a new session: spread evenly over
/// `max/2 ..= max` by slot, so sessions that started together do not all end together.
/// Unlimited when `max` is 0.
fn history_cap(index: usize, max: u32) -> u32 {
    if max == 0 {
        return u32::MAX;
    }
    let hashed = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let offset = hashed % u64::from(max / 2 + 1);
    max - max / 2 + u32::try_from(offset).unwrap_or(0)
}

/// One closed-loop client: claims a session, sends one turn, records it, again until stopped.
async fn client(
    target: Arc<Target>,
    book: Arc<Book>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    kind: Kind,
    max_history: u32,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let load::Op::Chat { tool, stream } = kind.op() else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let Some(index) = book.picker.claim(&mut rng) else {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        let mut seen = book.entries[index].load(Ordering::Relaxed);
        if seen + kind.entries_per_turn() > history_cap(index, max_history) {
            match target.new_session_of(0, book.agent_of(index)).await {
                Ok(id) => book.replace(index, id),
                Err(error) => {
                    book.picker.release(index);
                    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                    tally.errors += 1;
                    tally.first_error.get_or_insert(error);
                    continue;
                }
            }
            tally
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .replaced += 1;
            seen = 0;
        }
        let began = Instant::now();
        let result = target.chat(0, &book.id(index), tool, stream).await;
        let took = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match result {
            Ok(_) => {
                book.add_entries(index, kind.entries_per_turn());
                book.picker.release(index);
                let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                tally.latencies.push(took);
                tally.history_seen += u64::from(seen);
            }
            Err(error) => {
                let full = error.contains("history_full");
                if full {
                    book.picker.retire(index);
                } else {
                    book.picker.release(index);
                }
                {
                    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                    tally.errors += 1;
                    tally.first_error.get_or_insert(error);
                }
                if !full {
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::history_cap;

    #[test]
    fn caps_spread_over_the_upper_half_and_zero_means_none() {
        let caps: Vec<u32> = (0..20_000).map(|slot| history_cap(slot, 160)).collect();
        assert!(caps.iter().all(|cap| (80..=160).contains(cap)));
        let low = caps.iter().filter(|&&cap| cap < 120).count();
        assert!(
            (8_000..12_000).contains(&low),
            "{low} of 20000 below the middle"
        );
        assert_eq!(history_cap(7, 0), u32::MAX);
    }
}
