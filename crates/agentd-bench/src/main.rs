//! `agentd-bench`: what agentd costs per model round trip, next to the floor (the same model
//! calls sent straight to the mock). Starts `mock-model` and `agentd serve` as processes,
//! drives closed-loop load from this process over loopback, and prints one table per scenario;
//! the `held` scenario holds thousands of streams open on a fresh pair of processes;
//! `agentd-bench micro` times the hot pieces in-process (the loops live in the daemon crate,
//! `agentd::bench`, built with its `bench` feature); `agentd-bench instructions` counts
//! agentd's instructions per turn under valgrind's callgrind; `agentd-bench durability`
//! compares the `storage.synchronous` levels.

mod durability;
mod held;
mod held_client;
mod held_report;
mod instructions;
mod limits;
mod load;
mod procs;
mod report;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// The daemon's allocator, so the in-process timing loops measure what agentd runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use load::{Op, Target};
use report::{Counters, Row, Side};

#[derive(Debug, Parser)]
#[command(
    name = "agentd-bench",
    about = "Cost of agentd per model round trip, against the floor"
)]
struct Args {
    /// Short run: 2 s windows at 1 and 64 clients.
    #[arg(long, global = true)]
    quick: bool,
    /// Mock model latency per call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Client counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64, 256])]
    concurrency: Vec<usize>,
    /// Measured seconds per scenario and client count.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Only these scenarios (comma-separated: chat,tool,stream,sessions,held).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Streaming chats the `held` scenario holds open at once (at most 1000 with --quick).
    #[arg(long, default_value_t = 10_000)]
    held: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Timing loops over validation, catalog compilation, chunk assembly and a history write.
    Micro,
    /// Tool turns at each `storage.synchronous` level (off, normal, full, extra).
    Durability,
    /// User-space instructions per turn (chat, tool, stream), counted by callgrind.
    Instructions {
        /// Turns of the short run (start-up and shutdown are taken out with it).
        #[arg(long, default_value_t = 300)]
        short_turns: u32,
        /// Turns of the long run.
        #[arg(long, default_value_t = 900)]
        long_turns: u32,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scratch = std::env::temp_dir().join(format!("agentd-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        eprintln!("agentd-bench: {}: {e}", scratch.display());
        return ExitCode::FAILURE;
    }
    let result = match args.command {
        Some(Command::Micro) => run_micro(&args, &scratch).map(|_| ()),
        Some(Command::Durability) => {
            let (clients, window) = if args.quick {
                (vec![1, 16], Duration::from_secs(2))
            } else {
                (
                    vec![1, 16, 64],
                    Duration::from_secs_f64(args.duration_secs.max(0.5)),
                )
            };
            durability::run(&scratch, &clients, window)
        }
        Some(Command::Instructions {
            short_turns,
            long_turns,
        }) => run_instructions(&scratch, short_turns, long_turns),
        None => run_load(&args, &scratch),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_micro(args: &Args, scratch: &std::path::Path) -> Result<f64, String> {
    let budget = Duration::from_millis(if args.quick { 300 } else { 1000 });
    println!("\n### micro (one thread, {budget:?} per loop)\n");
    println!("| operation | ns/op | ops/s |");
    println!("|---|---:|---:|");
    let measures = agentd::bench::run(budget, scratch)?;
    for m in &measures {
        println!(
            "| {} | {:.0} | {:.0} |",
            m.name,
            m.ns_per_op,
            m.ops_per_sec()
        );
    }
    Ok(measures
        .first()
        .map(agentd::bench::Measure::ops_per_sec)
        .unwrap_or(0.0))
}

fn run_instructions(scratch: &std::path::Path, short: u32, long: u32) -> Result<(), String> {
    let counted = instructions::run(scratch, short, long)?;
    println!(
        "\n### instructions per turn (callgrind, user space, one client, sessions of {})\n",
        load::TURNS_PER_SESSION
    );
    println!("| scenario | Ir, {short} turns | Ir, {long} turns | Ir per turn |");
    println!("|---|---:|---:|---:|");
    for c in &counted {
        println!(
            "| {} | {} | {} | {:.1} k |",
            c.scenario,
            c.short.1,
            c.long.1,
            c.per_turn() / 1000.0
        );
    }
    Ok(())
}

/// The scenarios, each with its floor operation when it has one.
fn scenarios() -> Vec<(&'static str, &'static str, Op, Option<Op>)> {
    vec![
        (
            "chat",
            "chat: non-streaming turn, no tools (1 model round trip)",
            Op::Chat {
                tool: false,
                stream: false,
            },
            Some(Op::Floor {
                tool: false,
                stream: false,
            }),
        ),
        (
            "tool",
            "tool: turn with one server tool call (2 model round trips)",
            Op::Chat {
                tool: true,
                stream: false,
            },
            Some(Op::Floor {
                tool: true,
                stream: false,
            }),
        ),
        (
            "stream",
            "stream: streaming turn (1 model round trip; TTFB = first data: chunk)",
            Op::Chat {
                tool: false,
                stream: true,
            },
            Some(Op::Floor {
                tool: false,
                stream: true,
            }),
        ),
        (
            "sessions",
            "sessions: POST /api/sessions burst (no model call)",
            Op::NewSession,
            None,
        ),
    ]
}

fn run_load(args: &Args, scratch: &std::path::Path) -> Result<(), String> {
    let (concurrency, window) = if args.quick {
        (vec![1, 64], Duration::from_secs(2))
    } else {
        (
            args.concurrency.clone(),
            Duration::from_secs_f64(args.duration_secs.max(0.5)),
        )
    };
    let warmup = (window / 5).clamp(Duration::from_millis(300), Duration::from_secs(1));
    let ticks_per_sec = procs::clock_ticks_per_second();
    let started = Instant::now();
    let held_streams = args.held.min(if args.quick { 1000 } else { usize::MAX });
    let run_held = args.only.is_empty() || args.only.iter().any(|o| o == "held");
    // Each held stream costs agentd two descriptors; children inherit the limit set here.
    let wanted = u64::try_from(held_streams).unwrap_or(u64::MAX) * 2 + 1024;
    limits::raise_nofile_and_report(wanted);

    let mock = procs::start_mock(args.latency_ms)?;
    let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let agentd = procs::start_agentd(scratch, &mock.origin, &api_key)?;
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss_kb = procs::status_kb(agentd.pid(), "VmRSS");

    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let target = Arc::new(runtime.block_on(Target::connect(
        load::http_client(4096)?,
        &agentd.origin,
        &mock.origin,
        api_key,
    ))?);

    println!(
        "agentd-bench: agentd {} (pid {}), mock {} (pid {}), mock latency {} ms",
        agentd.origin,
        agentd.pid(),
        mock.origin,
        mock.pid(),
        args.latency_ms
    );
    println!(
        "windows: {:.1} s measured after {:.1} s warm-up; clients {:?}; {} CPUs; CLK_TCK {}",
        window.as_secs_f64(),
        warmup.as_secs_f64(),
        concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ticks_per_sec
    );
    println!(
        "overhead/RT = (end-to-end latency − mean mock busy time per call × calls) ÷ calls, per request;\n\
         mock busy time from the mock's busy_ns_total delta over the window ÷ its request delta.\n\
         CPU/RT = agentd utime+stime delta (/proc/PID/stat) ÷ round trips in the window.\n\
         Chat workers open a new session every {} turns (that POST is untimed but inside the window).\n\
         All three processes share the same cores.",
        load::TURNS_PER_SESSION
    );

    let mut summary: Vec<(&str, usize, Side)> = Vec::new();
    for (key, title, op, floor) in scenarios() {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == key) {
            continue;
        }
        let mut rows = Vec::new();
        for &clients in &concurrency {
            let agentd_side = measure(
                &runtime,
                &target,
                op,
                clients,
                warmup,
                window,
                agentd.pid(),
                ticks_per_sec,
            );
            let floor_side = floor.map(|f| {
                measure(
                    &runtime,
                    &target,
                    f,
                    clients,
                    warmup,
                    window,
                    mock.pid(),
                    ticks_per_sec,
                )
            });
            summary.push((key, clients, agentd_side.clone()));
            rows.push(Row {
                clients,
                agentd: agentd_side,
                floor: floor_side,
            });
        }
        report::print_table(title, op.model_calls(), &rows);
        let peak = procs::status_kb(agentd.pid(), "VmHWM");
        println!("\nagentd peak RSS so far (VmHWM): {}", kb_text(peak));
    }
    let peak_rss_kb = procs::status_kb(agentd.pid(), "VmHWM");
    println!(
        "\nagentd idle RSS (VmRSS after start, before load): {}",
        kb_text(idle_rss_kb)
    );
    println!(
        "agentd peak RSS (VmHWM after all runs): {}",
        kb_text(peak_rss_kb)
    );

    agentd.stop();
    mock.stop();
    let held = run_held.then(|| held::run_and_print(&runtime, scratch, held_streams));
    // The micro loops run alone, with the daemons and mocks gone.
    let validation = run_micro(args, scratch).ok();

    let at64 = |key: &str| {
        summary
            .iter()
            .find(|(k, c, _)| *k == key && *c == 64)
            .map(|(_, _, s)| s.clone())
    };
    let chat = at64("chat");
    let tool = at64("tool");
    println!("\n### targets (rates and overheads at 64 clients)\n");
    println!("| target | measured | limit | verdict |");
    println!("|---|---:|---:|---|");
    for (name, side) in [("chat", &chat), ("tool", &tool)] {
        report::print_target(
            &format!("{name}: overhead per round trip p50"),
            side.as_ref().map(|s| s.overhead_per_rt.p50 as f64 / 1e6),
            0.25,
            true,
            "ms",
        );
        report::print_target(
            &format!("{name}: overhead per round trip p99"),
            side.as_ref().map(|s| s.overhead_per_rt.p99 as f64 / 1e6),
            1.0,
            true,
            "ms",
        );
        report::print_target(
            &format!("{name}: model round trips/s through agentd"),
            side.as_ref().map(|s| s.round_trips_per_sec),
            4000.0,
            false,
            "RT/s",
        );
        report::print_target(
            &format!("{name}: agentd CPU per round trip"),
            side.as_ref()
                .and_then(|s| s.cpu_per_rt_ns)
                .map(|ns| ns / 1e3),
            100.0,
            true,
            "µs",
        );
    }
    report::print_target(
        "agentd idle RSS",
        idle_rss_kb.map(|kb| kb as f64 / 1024.0),
        20.0,
        true,
        "MB",
    );
    report::print_target("argument validation", validation, 1_000_000.0, false, "/s");
    if let Some(held) = &held {
        held_report::print_targets(held.as_ref());
    }
    println!("\ntotal time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// rustls's ring provider, which reqwest (built without a default one) needs even for plain
/// HTTP; the same one the daemon installs.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn kb_text(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "unknown".into(),
        |kb| format!("{:.1} MB", kb as f64 / 1024.0),
    )
}

/// One window of `op` at `clients`, with the CPU time of process `cpu_of_pid` (agentd, or the
/// mock for the floor) per model call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn measure(
    runtime: &tokio::runtime::Runtime,
    target: &Arc<Target>,
    op: Op,
    clients: usize,
    warmup: Duration,
    window: Duration,
    cpu_of_pid: u32,
    ticks_per_sec: u64,
) -> Side {
    let marks: Arc<Mutex<Vec<Counters>>> = Arc::new(Mutex::new(Vec::new()));
    let outcome = runtime.block_on(async {
        let marks_at = Arc::clone(&marks);
        let target_at = Arc::clone(target);
        load::run(Arc::clone(target), op, clients, warmup, window, move || {
            // Read counters synchronously on a helper thread so the runtime keeps serving.
            let target = Arc::clone(&target_at);
            let marks = Arc::clone(&marks_at);
            let ticks = procs::cpu_ticks(cpu_of_pid).unwrap_or(0);
            let handle = tokio::runtime::Handle::current();
            handle.spawn(async move {
                let (busy, requests) = target.mock_stats().await.unwrap_or((0, 0));
                if let Ok(mut marks) = marks.lock() {
                    marks.push(Counters {
                        mock_busy_ns: busy,
                        mock_requests: requests,
                        cpu_ticks: ticks,
                    });
                }
            });
        })
        .await
    });
    // The second stats read may still be in flight; give it a moment.
    for _ in 0..100 {
        if marks.lock().map(|m| m.len() >= 2).unwrap_or(true) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let marks = marks.lock().map(|m| m.clone()).unwrap_or_default();
    let (before, after) = match marks.as_slice() {
        [a, b, ..] => (*a, *b),
        _ => (Counters::default(), Counters::default()),
    };
    report::side(
        &outcome,
        op.model_calls(),
        before,
        after,
        ticks_per_sec,
        true,
    )
}
