//! `agentd-bench`: what agentd costs per model round trip, next to the floor (the same model
//! calls sent straight to the mock). Starts `mock-model` and `agentd serve` as processes,
//! drives closed-loop load from this process over loopback, and prints one table per scenario
//! (the `mcp` scenario adds the reference MCP server as a tool source, `mcp_server.rs`);
//! the `held` scenario holds thousands of streams open on a fresh pair of processes;
//! the load scenarios run on SQLite or on PostgreSQL, there with one or more instances sharing
//! the database (`fleet.rs`, `store.rs`); `agentd-bench micro` times the hot pieces in-process (the loops live in the daemon crate,
//! `agentd::bench`, built with its `bench` feature); `agentd-bench instructions` counts
//! agentd's instructions per turn under valgrind's callgrind; `agentd-bench durability`
//! compares the `storage.synchronous` levels; `agentd-bench crash-campaign` SIGKILLs agentd
//! at random moments of send_email turns against a real SMTP relay and checks what survives;
//! `agentd-bench sustained` runs one agentd for minutes on many sessions whose histories grow
//! and prints a row per window (`sustained.rs`);
//! `agentd-bench soak` runs a mixed load for a long time with periodic SIGKILLs and restarts
//! and checks that agentd's memory and descriptors stay flat (`soak.rs`).

mod crash_campaign;
mod crash_phases;
mod durability;
mod durations;
mod fleet;
mod held;
mod held_client;
mod held_report;
mod history_pages;
mod instance_report;
mod instructions;
mod limits;
mod load;
mod mcp_server;
mod procs;
mod prom_text;
mod report;
mod session_pick;
mod smtp_relay;
mod soak;
mod soak_client;
mod soak_stats;
mod soak_verdict;
mod store;
mod store_counters;
mod sustained;
mod sustained_args;
mod sustained_report;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// The daemon's allocator, so the in-process timing loops measure what agentd runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use load::{Op, ServerTool, Target};
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
    #[arg(long, global = true, default_value_t = 0)]
    latency_ms: u64,
    /// Client counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64, 256])]
    concurrency: Vec<usize>,
    /// Measured seconds per scenario and client count.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Only these scenarios (comma-separated: chat,tool,mcp,stream,sessions,held). Without
    /// it all run, `mcp` only when the reference MCP server is installed.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The reference MCP server's entry point for the `mcp` scenario (server-everything's
    /// dist/index.js, run as `node PATH stdio`). Default: tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js
    /// under the current directory or one of its parents, else under the bench executable's
    /// directory or one of its parents (`npm ci --prefix tests/mcp` installs it).
    #[arg(long, global = true, value_name = "PATH")]
    mcp_server: Option<std::path::PathBuf>,
    /// Streaming chats the `held` scenario holds open at once (at most 1000 with --quick).
    #[arg(long, default_value_t = 10_000)]
    held: usize,
    /// The store of the load scenarios and `sustained` (`held`, `micro`, `durability` and
    /// `instructions` always use SQLite).
    #[arg(long, global = true, value_enum, default_value_t = store::StoreKind::Sqlite)]
    store: store::StoreKind,
    /// agentd instances sharing the PostgreSQL database; client i uses instance i % N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    instances: u16,
    /// The PostgreSQL database (`postgres://user@host:port/db`, no password in it). Without
    /// it, `--store postgres` creates one on a private server it starts (needs PostgreSQL
    /// installed; runs it as the `postgres` user).
    #[arg(long, global = true, value_name = "URL")]
    postgres_url: Option<String>,
    /// A file holding the password of `--postgres-url`'s user.
    #[arg(long, global = true, value_name = "PATH")]
    postgres_password_file: Option<std::path::PathBuf>,
    /// A setting for every agentd the load scenarios and `sustained` start, as agentd's own
    /// `--set KEY=VALUE` (repeatable; give them all before the subcommand or all after it),
    /// e.g. `storage.mirror_bytes=67108864` to run on a mirror smaller than the sessions'
    /// histories.
    #[arg(long = "agentd-set", global = true, value_name = "KEY=VALUE")]
    agentd_sets: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Timing loops over validation, catalog compilation, chunk assembly and a history write.
    Micro,
    /// Tool turns at each `storage.synchronous` level (off, normal, full, extra).
    Durability,
    /// Chat turns each sending one email through a real SMTP relay (the smtp plugin's
    /// aiosmtpd test server), agentd SIGKILLed at a random moment of each and restarted on the
    /// same data directory; checks at most one email per turn, well-formed history, no lost
    /// acknowledged turn, and a working next chat. Exits non-zero on a violation.
    CrashCampaign {
        /// Turns, each killed once.
        #[arg(long, default_value_t = 30)]
        turns: u32,
        /// Seed of the kill delays (printed; default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Mock model latency per call, in milliseconds.
        #[arg(long, default_value_t = 50)]
        model_latency_ms: u64,
        /// How long the relay holds back its answer to a message's data, in milliseconds
        /// (the window in which a kill lands mid-send).
        #[arg(long, default_value_t = 200)]
        data_delay_ms: u64,
        /// Turns per session before a new one is opened (keeps prompts short).
        #[arg(long, default_value_t = 25)]
        turns_per_session: u32,
        /// The relay script (default: plugins/smtp/tests/smtp_server.py above the current
        /// directory or the bench executable).
        #[arg(long, value_name = "PATH")]
        smtp_server: Option<std::path::PathBuf>,
    },
    /// A long mixed load (chat, tool and streaming turns) on one agentd, SIGKILLed and
    /// restarted on the same data dir every few minutes; samples RSS, descriptors, threads, the
    /// data dir's size and latency, writes them as CSV and exits non-zero unless those stay flat
    /// within each process lifetime after warm-up and no request fails (docs/testing.md).
    Soak {
        /// How long to run (`30m`, `90s`, `1h`). Default 30m (30s with --smoke).
        #[arg(long, value_parser = durations::parse_positive_duration)]
        duration: Option<Duration>,
        /// Concurrent clients. Default 64 (8 with --smoke).
        #[arg(long)]
        clients: Option<usize>,
        /// Mean time between SIGKILLs, each moved by up to ±20 % (seeded). Default 5m (12s with
        /// --smoke).
        #[arg(long, value_parser = durations::parse_positive_duration)]
        kill_every: Option<Duration>,
        /// Sample interval. Default 10s (1s with --smoke).
        #[arg(long, value_parser = durations::parse_positive_duration)]
        sample: Option<Duration>,
        /// Samples this soon after a (re)start are left out of the verdict. Default 2m (3s with
        /// --smoke).
        #[arg(long, value_parser = durations::parse_positive_duration)]
        warmup: Option<Duration>,
        /// Seed of the kill jitter (printed; default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Where samples.csv and kills.csv go (default: a new directory under the temp dir,
        /// printed at the end).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Mock model latency per call, in milliseconds.
        #[arg(long, default_value_t = 20)]
        model_latency_ms: u64,
        /// Turns per session before a client deletes it and opens a new one.
        #[arg(long, default_value_t = load::TURNS_PER_SESSION)]
        turns_per_session: u32,
        /// Stop the run (and fail it) once agentd's data dir is larger than this many MB.
        #[arg(long, default_value_t = 8192)]
        max_data_dir_mb: u64,
        /// A ≈ 30 s check of the machinery: the defaults become 30s, 8 clients, a kill every
        /// 12s, a sample every 1s, 3s warm-up (options given still win).
        #[arg(long)]
        smoke: bool,
    },
    /// User-space instructions per turn of agentd alone (chat, tool, stream, mcp), and per
    /// `POST /api/sessions` (session), counted by callgrind (which does not follow agentd's
    /// children: the MCP server is not counted).
    Instructions {
        /// Only these scenarios (comma-separated: chat,tool,stream,mcp,session). Without it all
        /// run, `mcp` only when the reference MCP server is installed.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Turns of the short run (start-up and shutdown are taken out with it).
        #[arg(long, default_value_t = 300)]
        short_turns: u32,
        /// Turns of the long run.
        #[arg(long, default_value_t = 900)]
        long_turns: u32,
        /// Turns before the client replaces its session with a new one: the histories the
        /// turns read hold up to twice as many entries (four times for `tool`).
        #[arg(long, default_value_t = load::TURNS_PER_SESSION)]
        turns_per_session: u32,
    },
    /// One agentd under load for minutes on many sessions that are never replaced (histories
    /// grow): a row per window with RT/s, CPU per round trip, latency, RSS, the store's mirror
    /// and reads, database file sizes and history length. Not part of the default run.
    Sustained(sustained_args::SustainedArgs),
    /// One long history read page by page through `GET /api/sessions/{id}/history`: while
    /// agentd holds it, after a restart, and again; time and agentd CPU per reading.
    HistoryPages {
        /// Chat turns that fill the session (2 entries each; `limits.max_history_entries`,
        /// 10,000 by default, bounds a history).
        #[arg(long, default_value_t = 4999)]
        turns: u32,
        /// Entries per page.
        #[arg(long, default_value_t = 100)]
        page: usize,
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
            ref only,
            short_turns,
            long_turns,
            turns_per_session,
        }) => run_instructions(
            &scratch,
            only,
            args.mcp_server.as_deref(),
            (short_turns, long_turns),
            turns_per_session,
            &args.agentd_sets,
        ),
        Some(Command::CrashCampaign {
            turns,
            seed,
            model_latency_ms,
            data_delay_ms,
            turns_per_session,
            ref smtp_server,
        }) => crash_campaign::run(
            &scratch,
            &crash_campaign::Settings {
                turns,
                seed,
                model_latency_ms,
                data_delay_ms,
                turns_per_session,
                smtp_server: smtp_server.clone(),
            },
        ),
        Some(Command::HistoryPages { turns, page }) => history_pages::run(&scratch, turns, page),
        Some(Command::Sustained(ref sustained)) => sustained::run(
            sustained,
            &sustained::Common {
                quick: args.quick,
                latency_ms: args.latency_ms,
                plan: fleet::Plan {
                    store: args.store,
                    instances: usize::from(args.instances),
                    postgres_url: args.postgres_url.as_deref(),
                    postgres_password_file: args.postgres_password_file.as_deref(),
                    sets: &args.agentd_sets,
                },
            },
            &scratch,
        ),
        Some(Command::Soak {
            duration,
            clients,
            kill_every,
            sample,
            warmup,
            seed,
            ref out,
            model_latency_ms,
            turns_per_session,
            max_data_dir_mb,
            smoke,
        }) => {
            let preset =
                |normal: u64, quick: u64| Duration::from_secs(if smoke { quick } else { normal });
            soak::run(
                &scratch,
                &soak::Settings {
                    duration: duration.unwrap_or(preset(30 * 60, 30)),
                    clients: clients.unwrap_or(if smoke { 8 } else { 64 }).max(1),
                    kill_every: kill_every.unwrap_or(preset(5 * 60, 12)),
                    sample: sample.unwrap_or(preset(10, 1)),
                    warmup: warmup.unwrap_or(preset(2 * 60, 3)),
                    seed,
                    out: out.clone(),
                    model_latency_ms,
                    turns_per_session: turns_per_session.max(1),
                    max_data_dir_mb,
                },
            )
        }
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

fn run_instructions(
    scratch: &std::path::Path,
    only: &[String],
    mcp_server: Option<&std::path::Path>,
    (short, long): (u32, u32),
    turns_per_session: u32,
    sets: &[String],
) -> Result<(), String> {
    let counted = instructions::run(
        scratch,
        only,
        mcp_server,
        (short, long),
        turns_per_session,
        sets,
    )?;
    println!(
        "\n### instructions per turn (callgrind, user space, one client, sessions of {turns_per_session} turns)\n"
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
    if counted.iter().any(|c| c.scenario == "session") {
        println!("\n`session` counts `POST /api/sessions` requests where the others count turns.");
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
                tool: None,
                stream: false,
            },
            Some(Op::Floor {
                tool: None,
                stream: false,
            }),
        ),
        (
            "tool",
            "tool: turn with one server tool call (2 model round trips)",
            Op::Chat {
                tool: Some(ServerTool::Echo),
                stream: false,
            },
            Some(Op::Floor {
                tool: Some(ServerTool::Echo),
                stream: false,
            }),
        ),
        (
            "mcp",
            "mcp: turn with one MCP tool call over stdio (2 model round trips)",
            Op::Chat {
                tool: Some(ServerTool::McpEcho),
                stream: false,
            },
            Some(Op::Floor {
                tool: Some(ServerTool::McpEcho),
                stream: false,
            }),
        ),
        (
            "stream",
            "stream: streaming turn (1 model round trip; TTFB = first data: chunk)",
            Op::Chat {
                tool: None,
                stream: true,
            },
            Some(Op::Floor {
                tool: None,
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
    let wanted_scenario = |key: &str| args.only.is_empty() || args.only.iter().any(|o| o == key);
    let run_held = wanted_scenario("held");
    let mcp_script = if wanted_scenario("mcp") {
        mcp_server::locate(args.mcp_server.as_deref())
            .inspect_err(|line| println!("{line}"))
            .ok()
    } else {
        None
    };
    // Each held stream costs agentd two descriptors; children inherit the limit set here.
    let wanted = u64::try_from(held_streams).unwrap_or(u64::MAX) * 2 + 1024;
    limits::raise_nofile_and_report(wanted);

    let plan = fleet::Plan {
        store: args.store,
        instances: usize::from(args.instances),
        postgres_url: args.postgres_url.as_deref(),
        postgres_password_file: args.postgres_password_file.as_deref(),
        sets: &args.agentd_sets,
    };
    plan.check()?;
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mock = procs::start_mock(args.latency_ms)?;
    let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let fleet = fleet::start(
        &runtime,
        &plan,
        scratch,
        &mock.origin,
        &api_key,
        mcp_script.as_deref(),
    )?;
    let agentd = fleet.first();
    let pids = fleet.pids();
    let tool_servers: Vec<_> = mcp_script
        .as_deref()
        .map(|script| {
            fleet
                .instances
                .iter()
                .map(|instance| start_tool_server(&runtime, instance, script))
                .collect()
        })
        .unwrap_or_default();
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss_kb = procs::status_kb(agentd.pid(), "VmRSS");
    let target = Arc::new(
        runtime
            .block_on(Target::connect(
                load::http_client(4096)?,
                &agentd.origin,
                &mock.origin,
                api_key,
            ))?
            .with_more_instances(fleet.more_origins()),
    );

    println!(
        "agentd-bench: agentd {} (pid {}), mock {} (pid {}), mock latency {} ms",
        agentd.origin,
        agentd.pid(),
        mock.origin,
        mock.pid(),
        args.latency_ms
    );
    print!("{}", fleet.header());
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
    let mut tool_server_pids = Vec::new();
    for started in tool_servers {
        match started {
            Ok((line, pid)) => {
                println!("{line}");
                tool_server_pids.push(pid);
            }
            Err(line) => println!("{line}"),
        }
    }
    let tool_server_pids = if tool_server_pids.len() == pids.len() {
        println!(
            "mcp: agentd's CPU/RT is its own process only; MCP server CPU/call = the node\n\
             child's utime+stime delta ÷ tool calls (one per turn) in the window, same cores."
        );
        tool_server_pids
    } else {
        Vec::new()
    };

    let mut summary: Vec<(&str, usize, Side)> = Vec::new();
    for (key, title, op, floor) in scenarios() {
        if !wanted_scenario(key) {
            continue;
        }
        let server_pids: &[u32] = match op {
            Op::Chat {
                tool: Some(ServerTool::McpEcho),
                ..
            } if tool_server_pids.is_empty() => continue,
            Op::Chat {
                tool: Some(ServerTool::McpEcho),
                ..
            } => &tool_server_pids,
            _ => &[],
        };
        let mut rows = Vec::new();
        for &clients in &concurrency {
            let agentd_side = measure(
                &runtime,
                &target,
                op,
                clients,
                warmup,
                window,
                &Measured {
                    processes: &pids,
                    tool_servers: server_pids,
                    database: fleet.database_pid,
                },
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
                    &Measured {
                        processes: &[mock.pid()],
                        tool_servers: &[],
                        database: None,
                    },
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
        let peaks: Vec<String> = pids
            .iter()
            .map(|&pid| kb_text(procs::status_kb(pid, "VmHWM")))
            .collect();
        println!("\nagentd peak RSS so far (VmHWM): {}", peaks.join(" / "));
    }
    let peak_rss_kb = procs::status_kb(agentd.pid(), "VmHWM");
    let with_mcp = if !tool_server_pids.is_empty() {
        ", its MCP server up"
    } else {
        ""
    };
    println!(
        "\nagentd idle RSS (VmRSS after start{with_mcp}, before load): {}",
        kb_text(idle_rss_kb)
    );
    println!(
        "agentd peak RSS (VmHWM after all runs): {}",
        kb_text(peak_rss_kb)
    );

    fleet.stop();
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
    print_tool_sources(&summary);
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
        &format!("agentd idle RSS{with_mcp}"),
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

/// Waits for agentd's MCP server to be up and finds its process: a line saying so and its
/// pid, or the line saying why the `mcp` scenario is skipped.
fn start_tool_server(
    runtime: &tokio::runtime::Runtime,
    agentd: &procs::Running,
    script: &std::path::Path,
) -> Result<(String, u32), String> {
    let up = runtime.block_on(async {
        let http = load::http_client(1)?;
        mcp_server::wait_up(&http, &agentd.origin, Duration::from_secs(30)).await
    });
    let pid = up.and_then(|after| {
        mcp_server::server_pid(agentd.pid(), script)
            .map(|pid| (after, pid))
            .ok_or_else(|| {
                "mcp: skipped, the MCP server's process is not among agentd's children".to_owned()
            })
    });
    pid.map(|(after, pid)| {
        let line = format!(
            "mcp: {} up {:.2} s after agentd was ready (node pid {pid})",
            script.display(),
            after.as_secs_f64()
        );
        (line, pid)
    })
}

/// The in-process `echo` handler and the MCP server's `echo` side by side, at each client
/// count both ran.
fn print_tool_sources(summary: &[(&str, usize, Side)]) {
    let of = |key: &str| {
        summary
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, clients, side)| (*clients, side))
            .collect::<Vec<_>>()
    };
    let mcp = of("mcp");
    if mcp.is_empty() {
        return;
    }
    println!("\n### tool sources: in-process echo handler (tool) and MCP echo over stdio (mcp)\n");
    println!(
        "| clients | scenario | turns/s | p50 ms | p99 ms | agentd CPU µs/RT | agentd CPU µs/turn | MCP server CPU µs/call |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    let tool = of("tool");
    for (clients, mcp_side) in &mcp {
        let same = tool.iter().find(|(c, _)| c == clients).map(|(_, s)| *s);
        for (key, side) in [("tool", same), ("mcp", Some(*mcp_side))] {
            let Some(side) = side else { continue };
            let us = |ns: Option<f64>| {
                ns.map_or_else(|| "-".to_owned(), |ns| format!("{:.0}", ns / 1e3))
            };
            println!(
                "| {clients} | {key} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                side.ops_per_sec,
                side.latency.p50 as f64 / 1e6,
                side.latency.p99 as f64 / 1e6,
                us(side.cpu_per_rt_ns),
                us(side.cpu_per_rt_ns.map(|ns| ns * 2.0)),
                us(side.tool_server_cpu_per_call_ns),
            );
        }
    }
}

/// A single-threaded runtime for driving agentd from one client, with the TLS crypto provider
/// installed.
pub(crate) fn one_client_runtime() -> Result<tokio::runtime::Runtime, String> {
    install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// rustls's ring provider, which reqwest (built without a default one) needs even for plain
/// HTTP; the same one the daemon installs.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A size in kB as MB with one decimal, or `unknown`.
pub(crate) fn kb_text(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "unknown".into(),
        |kb| format!("{:.1} MB", kb as f64 / 1024.0),
    )
}

/// The processes whose CPU time a window reports.
pub(crate) struct Measured<'a> {
    /// agentd's instances, or the mock for the floor: their CPU per model call.
    pub processes: &'a [u32],
    /// The MCP servers the turns call: their CPU per tool call.
    pub tool_servers: &'a [u32],
    /// The PostgreSQL server's postmaster: its and its children's CPU per model call.
    pub database: Option<u32>,
}

impl Measured<'_> {
    fn counters(&self, mock_busy_ns: u64, mock_requests: u64) -> Counters {
        let each: Vec<u64> = self
            .processes
            .iter()
            .map(|&pid| procs::cpu_ticks(pid).unwrap_or(0))
            .collect();
        let tool_server_cpu_ticks = (!self.tool_servers.is_empty()).then(|| {
            self.tool_servers
                .iter()
                .filter_map(|&pid| procs::cpu_ticks(pid))
                .sum()
        });
        Counters {
            mock_busy_ns,
            mock_requests,
            cpu_ticks: each.iter().sum(),
            cpu_ticks_each: each,
            tool_server_cpu_ticks,
            database_cpu_ticks: self.database.and_then(procs::tree_cpu_ticks),
        }
    }
}

/// One window of `op` at `clients`, with the CPU time of the `measured` processes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn measure(
    runtime: &tokio::runtime::Runtime,
    target: &Arc<Target>,
    op: Op,
    clients: usize,
    warmup: Duration,
    window: Duration,
    measured: &Measured,
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
            let taken = measured.counters(0, 0);
            let handle = tokio::runtime::Handle::current();
            handle.spawn(async move {
                let (busy, requests) = target.mock_stats().await.unwrap_or((0, 0));
                if let Ok(mut marks) = marks.lock() {
                    marks.push(Counters {
                        mock_busy_ns: busy,
                        mock_requests: requests,
                        ..taken
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
        [a, b, ..] => (a.clone(), b.clone()),
        _ => (Counters::default(), Counters::default()),
    };
    report::side(
        &outcome,
        op.model_calls(),
        &before,
        &after,
        ticks_per_sec,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agentd_settings_are_taken_in_order_before_or_after_the_subcommand() {
        let sets = ["storage.mirror_bytes=0", "limits.max_history_entries=500"];
        let flags = sets.iter().flat_map(|set| ["--agentd-set", set]);
        let before = std::iter::once("agentd-bench")
            .chain(flags.clone())
            .chain(["sustained"]);
        let after = ["agentd-bench", "sustained"].into_iter().chain(flags);
        for line in [before.collect::<Vec<_>>(), after.collect()] {
            let args = Args::try_parse_from(&line).expect("parses");
            assert_eq!(args.agentd_sets, sets, "{line:?}");
            assert!(matches!(args.command, Some(Command::Sustained(_))));
        }
    }
}
