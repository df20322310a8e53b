//! `agentd-bench history-pages`: what reading one long history costs an API client that pages
//! through it with `GET /api/sessions/{id}/history`. One session is filled by chat turns, then
//! read whole, page by page, three times: while agentd still holds it from those turns, after
//! a restart (the first page reads it from the database), and once more.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::load::{self, Target};
use crate::procs;

/// How long agentd gets to stop between the readings.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// One reading of the whole history.
struct Reading {
    label: &'static str,
    entries: usize,
    pages: usize,
    wall: Duration,
    /// agentd's CPU (utime + stime) over the reading.
    cpu: Duration,
}

pub(crate) fn run(scratch: &Path, turns: u32, page: usize) -> Result<(), String> {
    if page == 0 {
        return Err("--page must be at least 1".into());
    }
    let runtime = crate::one_client_runtime()?;
    let mock = procs::start_mock(0)?;
    let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let http = load::http_client(1)?;
    let agentd = procs::start_agentd(scratch, &mock.origin, &api_key)?;
    let started = Instant::now();
    let (target, session, warm) = runtime.block_on(async {
        let target =
            Target::connect(http.clone(), &agentd.origin, &mock.origin, api_key.clone()).await?;
        let session = target.new_session().await?;
        for _ in 0..turns {
            target.chat(0, &session, None, false).await?;
        }
        let warm = read_all(&target, &session, page, agentd.pid(), "held from the turns").await?;
        Ok::<_, String>((target, session, warm))
    })?;
    let filled = started.elapsed();
    agentd.terminate(STOP_GRACE)?;
    let agentd = procs::restart_agentd(scratch, &mock.origin, &api_key)?;
    let target = Target {
        agentd: agentd.origin.clone(),
        ..target
    };
    let (cold, again) = runtime.block_on(async {
        let cold = read_all(&target, &session, page, agentd.pid(), "after a restart").await?;
        let again = read_all(&target, &session, page, agentd.pid(), "again").await?;
        Ok::<_, String>((cold, again))
    })?;
    println!(
        "### history pages: one session of {turns} chat turns (filled in {:.1} s), pages of {page}\n",
        filled.as_secs_f64()
    );
    println!("| read | entries | pages | ms | agentd CPU ms | agentd CPU µs/page |");
    println!("|---|---:|---:|---:|---:|---:|");
    for reading in [warm, cold, again] {
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.0} |",
            reading.label,
            reading.entries,
            reading.pages,
            reading.wall.as_secs_f64() * 1e3,
            reading.cpu.as_secs_f64() * 1e3,
            reading.cpu.as_secs_f64() * 1e6 / reading.pages as f64
        );
    }
    drop(agentd);
    mock.stop();
    Ok(())
}

/// Reads the session's whole history a page at a time.
async fn read_all(
    target: &Target,
    session: &str,
    page: usize,
    pid: u32,
    label: &'static str,
) -> Result<Reading, String> {
    let ticks = procs::clock_ticks_per_second() as f64;
    let cpu_before = procs::cpu_ticks(pid).ok_or("agentd's CPU time")?;
    let began = Instant::now();
    let (entries, pages) = target.history_len(session, page).await?;
    let wall = began.elapsed();
    let cpu_after = procs::cpu_ticks(pid).ok_or("agentd's CPU time")?;
    Ok(Reading {
        label,
        entries,
        pages,
        wall,
        cpu: Duration::from_secs_f64(cpu_after.saturating_sub(cpu_before) as f64 / ticks),
    })
}
