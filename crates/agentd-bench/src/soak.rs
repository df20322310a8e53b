//! `agentd-bench soak`: one real `agentd` (SQLite in a scratch data dir) behind which the
//! `mock-model` answers, under a steady mix of chat, tool and streaming turns from many
//! clients for a long time, SIGKILLed and restarted on the same data dir every few minutes
//! (seeded jitter). Owns the run: the processes, the kill schedule, a sample of agentd's
//! footprint and the clients' latencies every interval (printed as a table row and appended
//! to `samples.csv`), and the verdict at the end (`soak_verdict`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::crash_campaign::Rng;
use crate::procs::{self, Running};
use crate::soak_client::{self, Daemon, Shared};
use crate::soak_stats::{Footprint, Sample, jittered};
use crate::soak_verdict::{self, Tolerance, Verdict};

/// Settings of one run.
pub(crate) struct Settings {
    pub duration: Duration,
    pub clients: usize,
    pub kill_every: Duration,
    pub sample: Duration,
    pub warmup: Duration,
    pub seed: Option<u64>,
    pub out: Option<PathBuf>,
    pub model_latency_ms: u64,
    pub turns_per_session: u32,
    /// The run stops (and fails) once agentd's data dir is larger than this, in MB.
    pub max_data_dir_mb: u64,
}

/// Samples averaged at each end of a lifetime by the verdict.
const EDGE_SAMPLES: usize = 3;

/// The files a run writes.
struct Output {
    dir: PathBuf,
    samples: std::fs::File,
    kills: std::fs::File,
}

impl Output {
    fn create(dir: PathBuf) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let open = |name: &str, header: &str| -> Result<std::fs::File, String> {
            let path = dir.join(name);
            let mut file =
                std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            writeln!(file, "{header}").map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(file)
        };
        Ok(Self {
            samples: open("samples.csv", Sample::CSV_HEADER)?,
            kills: open("kills.csv", "t_s,lifetime,pid,restart_ms")?,
            dir,
        })
    }
}

pub(crate) fn run(scratch: &Path, settings: &Settings) -> Result<(), String> {
    let seed = settings.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let out_dir = settings.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("agentd-soak-{}", std::process::id()))
    });
    let mut output = Output::create(out_dir)?;
    crate::limits::raise_nofile_and_report(settings.clients as u64 * 4 + 1024);
    crate::install_crypto_provider();
    let mock = procs::start_mock(settings.model_latency_ms)?;
    let api_key = format!("soak-{:016x}", seed);
    let agentd = procs::start_agentd(scratch, &mock.origin, &api_key)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let http = crate::load::http_client(settings.clients * 2)?;
    let agent_id = runtime.block_on(create_agent(&http, &agentd.origin, &api_key))?;
    let shared = Arc::new(Shared::new(
        Daemon {
            origin: agentd.origin.clone(),
            up: true,
            up_since: Instant::now(),
        },
        http,
        api_key,
        agent_id,
    ));
    println!(
        "soak: agentd {} (pid {}), mock {} (latency {} ms); {} clients (chat, tool, stream in \
         turn), new session every {} turns; {:?} total, SIGKILL + restart every {:?} ±{:.0} % \
         (seed {seed}, replay with --seed {seed}), a sample every {:?}",
        agentd.origin,
        agentd.pid(),
        mock.origin,
        settings.model_latency_ms,
        settings.clients,
        settings.turns_per_session,
        settings.duration,
        settings.kill_every,
        crate::soak_stats::KILL_JITTER * 100.0,
        settings.sample,
    );
    println!("\n{}", Sample::TABLE_HEADER);
    let rig = Rig {
        agentd: Some(agentd),
        mock,
        data_dir: procs::data_dir(scratch),
        tools: procs::catalog(scratch),
        shared: Arc::clone(&shared),
    };
    let (samples, stopped_early) = runtime.block_on(drive(rig, settings, seed, &mut output))?;
    let tolerance = Tolerance {
        warmup_s: settings.warmup.as_secs_f64(),
        edge_samples: EDGE_SAMPLES,
        rss_ratio: 0.10,
        rss_kb: 8.0 * 1024.0,
        fds: 5.0,
        data_ratio: 0.10,
        data_kb: 64.0 * 1024.0,
    };
    let verdict = soak_verdict::judge(&samples, &tolerance);
    report(&samples, &verdict, &tolerance, &shared.failures());
    println!(
        "\ndata dir at the end: {:.1} MB; samples: {}; kills: {}",
        dir_bytes(&procs::data_dir(scratch)) as f64 / 1e6,
        output.dir.join("samples.csv").display(),
        output.dir.join("kills.csv").display()
    );
    if let Some(why) = &stopped_early {
        println!("stopped early: {why}");
    }
    if verdict.passed() && stopped_early.is_none() {
        println!("verdict: PASS");
        Ok(())
    } else {
        println!("verdict: FAIL");
        Err("soak verdict failed".into())
    }
}

/// The processes of a run; `agentd` is replaced at each restart.
struct Rig {
    agentd: Option<Running>,
    mock: Running,
    data_dir: PathBuf,
    tools: PathBuf,
    shared: Arc<Shared>,
}

impl Rig {
    /// SIGKILLs agentd and starts it again on the same data dir; returns the killed pid and
    /// how long until the new one answered ready.
    async fn kill_and_restart(&mut self) -> Result<(u32, Duration), String> {
        self.shared.going_down();
        let old = self.agentd.take().ok_or("agentd is not running")?;
        let pid = old.pid();
        let (data_dir, tools) = (self.data_dir.clone(), self.tools.clone());
        let (mock, key) = (self.mock.origin.clone(), self.shared.api_key.clone());
        let began = Instant::now();
        let fresh = tokio::task::spawn_blocking(move || {
            old.stop();
            procs::start_agentd_on(&data_dir, &tools, &mock, &key)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("restarting agentd: {e}"))?;
        let took = began.elapsed();
        self.shared.came_up(fresh.origin.clone());
        self.agentd = Some(fresh);
        Ok((pid, took))
    }
}

/// Runs the clients for the whole duration, killing and sampling on schedule; stops early
/// (saying why) when the data dir outgrows its cap, so a runaway store cannot fill the disk.
async fn drive(
    mut rig: Rig,
    settings: &Settings,
    seed: u64,
    output: &mut Output,
) -> Result<(Vec<Sample>, Option<String>), String> {
    let start = Instant::now();
    let deadline = start + settings.duration;
    let workers: Vec<_> = (0..settings.clients)
        .map(|index| {
            tokio::spawn(soak_client::worker(
                Arc::clone(&rig.shared),
                index,
                settings.turns_per_session,
                deadline,
            ))
        })
        .collect();
    let mut rng = Rng(seed);
    let mut draw_kill = |from: Instant| from + jittered(settings.kill_every, unit(&mut rng));
    let mut next_kill = draw_kill(start);
    let mut next_sample = start + settings.sample;
    let mut last_sample = start;
    let mut up_at = start;
    let (mut lifetime, mut kills) = (0u32, 0u32);
    let mut samples = Vec::new();
    let mut stopped_early = None;
    while next_sample <= deadline {
        tokio::time::sleep_until(next_kill.min(next_sample).into()).await;
        if next_kill <= next_sample {
            let (pid, took) = rig.kill_and_restart().await?;
            up_at = Instant::now();
            let line = format!(
                "{:.1},{lifetime},{pid},{}",
                next_kill.duration_since(start).as_secs_f64(),
                took.as_millis()
            );
            writeln!(output.kills, "{line}").map_err(|e| e.to_string())?;
            lifetime += 1;
            kills += 1;
            next_kill = draw_kill(up_at);
            continue;
        }
        let now = Instant::now();
        let pid = rig.agentd.as_ref().map_or(0, Running::pid);
        let mut interval = rig.shared.take_interval();
        let sample = Sample::of(
            &mut interval,
            now.duration_since(last_sample).as_secs_f64(),
            Footprint {
                t_s: now.duration_since(start).as_secs_f64(),
                lifetime,
                pid,
                age_s: now.duration_since(up_at).as_secs_f64(),
                rss_kb: procs::status_kb(pid, "VmRSS"),
                fds: crate::limits::open_fds(pid),
                threads: procs::status_kb(pid, "Threads"),
                data_kb: Some(dir_bytes(&rig.data_dir) / 1024),
                kills,
            },
        );
        println!("{}", sample.table_row());
        writeln!(output.samples, "{}", sample.csv_line()).map_err(|e| e.to_string())?;
        let data_mb = sample.at.data_kb.unwrap_or(0) / 1024;
        samples.push(sample);
        last_sample = now;
        next_sample += settings.sample;
        if data_mb > settings.max_data_dir_mb {
            stopped_early = Some(format!(
                "agentd's data dir reached {data_mb} MB, over --max-data-dir-mb {}",
                settings.max_data_dir_mb
            ));
            for worker in &workers {
                worker.abort();
            }
            break;
        }
    }
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    }
    Ok((samples, stopped_early))
}

/// A draw in `[0, 1)`.
fn unit(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 / (1u64 << 53) as f64
}

async fn create_agent(http: &reqwest::Client, origin: &str, key: &str) -> Result<String, String> {
    let response = http
        .post(format!("{origin}/api/agents"))
        .bearer_auth(key)
        .json(&json!({"name": "Soak", "instructions": ["Answer briefly."]}))
        .send()
        .await
        .map_err(|e| format!("creating the agent: {e}"))?;
    let value: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("creating the agent: {e}"))?;
    value["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("creating the agent: no id in {value}"))
}

/// Prints the totals, each lifetime's flatness and the first failures.
fn report(samples: &[Sample], verdict: &Verdict, tolerance: &Tolerance, failures: &[String]) {
    let turns: u64 = samples.iter().map(|s| s.turns).sum();
    let cut: u64 = samples.iter().map(|s| s.cut).sum();
    let busy: u64 = samples.iter().map(|s| s.busy).sum();
    let kills = samples.last().map_or(0, |s| s.at.kills);
    println!(
        "\nturns answered {turns}; failures {}; cut by a kill {cut}; 409 after a restart {busy}; \
         kills {kills}",
        verdict.failures
    );
    println!("flat means: {}\n", tolerance.stated());
    println!(
        "| lifetime | samples after warm-up | RSS MB first → last | fds first → last | data MB first → last | flat |"
    );
    println!("|---:|---:|---|---|---|---|");
    for life in &verdict.lifetimes {
        let pair = |p: Option<(f64, f64)>, scale: f64| {
            p.map_or("-".to_owned(), |(a, b)| {
                format!("{:.1} → {:.1}", a / scale, b / scale)
            })
        };
        let grew: Vec<&str> = [
            (life.rss_flat, "RSS"),
            (life.fds_flat, "fds"),
            (life.data_flat, "data dir"),
        ]
        .into_iter()
        .filter_map(|(flat, name)| (!flat).then_some(name))
        .collect();
        let flat = if !life.judged() {
            "not judged (too few samples)".to_owned()
        } else if grew.is_empty() {
            "yes".to_owned()
        } else {
            format!("NO ({})", grew.join(", "))
        };
        println!(
            "| {} | {} | {} | {} | {} | {flat} |",
            life.lifetime,
            life.samples,
            pair(life.rss_kb, 1024.0),
            pair(life.fds, 1.0),
            pair(life.data_kb, 1024.0)
        );
    }
    if !failures.is_empty() {
        println!("\nfirst failures:");
        for failure in failures {
            println!("- {failure}");
        }
    }
}

/// Bytes of the files under a directory.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
