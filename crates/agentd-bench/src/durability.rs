//! `agentd-bench durability`: what each `storage.synchronous` level costs. Tool turns (three
//! commits each) on a fresh agentd per level, at one client (every commit waits for its own
//! sync) and at several (commits share a sync through the writer's group commit).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{Op, ServerTool, Target};
use crate::report::{self, Row, Side};
use crate::{measure, procs};

/// The levels measured, weakest first.
const LEVELS: [&str; 4] = ["off", "normal", "full", "extra"];

pub(crate) fn run(scratch: &Path, clients: &[usize], window: Duration) -> Result<(), String> {
    let warmup = (window / 5).clamp(Duration::from_millis(300), Duration::from_secs(1));
    let ticks_per_sec = procs::clock_ticks_per_second();
    crate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let op = Op::Chat {
        tool: Some(ServerTool::Echo),
        stream: false,
    };
    let mut summary: Vec<(&str, usize, Side)> = Vec::new();
    for level in LEVELS {
        let dir = scratch.join(format!("durability-{level}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mock = procs::start_mock(0)?;
        let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let agentd = procs::start_agentd_under(
            None,
            &dir,
            &mock.origin,
            &api_key,
            &[format!("storage.synchronous=\"{level}\"")],
            None,
        )?;
        let target = Arc::new(runtime.block_on(Target::connect(
            crate::load::http_client(1024)?,
            &agentd.origin,
            &mock.origin,
            api_key,
        ))?);
        let mut rows = Vec::new();
        for &n in clients {
            let side = measure(
                &runtime,
                &target,
                op,
                n,
                warmup,
                window,
                &crate::Measured {
                    processes: &[agentd.pid()],
                    tool_servers: &[],
                    database: None,
                },
                ticks_per_sec,
            );
            summary.push((level, n, side.clone()));
            rows.push(Row {
                clients: n,
                agentd: side,
                floor: None,
            });
        }
        report::print_table(
            &format!("tool turns, storage.synchronous = {level}"),
            op.model_calls(),
            &rows,
        );
        agentd.stop();
        mock.stop();
    }
    println!("\n### durability levels side by side (tool turns: 3 commits each)\n");
    println!("| storage.synchronous | clients | turns/s | p50 ms | p99 ms | agentd CPU µs/turn |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (level, n, side) in &summary {
        println!(
            "| {level} | {n} | {:.0} | {:.2} | {:.2} | {} |",
            side.ops_per_sec,
            side.latency.p50 as f64 / 1e6,
            side.latency.p99 as f64 / 1e6,
            side.cpu_per_rt_ns.map_or_else(
                || "-".to_owned(),
                |ns| format!("{:.0}", ns * op.model_calls() as f64 / 1e3)
            ),
        );
    }
    Ok(())
}
