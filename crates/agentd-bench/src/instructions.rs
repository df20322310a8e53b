//! `agentd-bench instructions`: the user-space instructions agentd executes per turn (and per
//! session created), counted by valgrind's callgrind. Unlike time, the count is the same run
//! to run whatever else the machine does, so changes of a few percent show.
//!
//! For each scenario agentd runs under callgrind twice, once for a short and once for a long
//! sequence of turns from one client (sessions replaced every `--turns-per-session` turns:
//! [`load::TURNS_PER_SESSION`] by default, as under load, more to count long histories); the
//! difference of the two totals divided by the difference in turns is one turn with start-up
//! and shutdown taken out.
//!
//! The `mcp` scenario adds the reference MCP server to agentd's catalog; callgrind does not
//! follow children (`--trace-children=no`), so node's instructions are not in the count.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::load::{self, Op, ServerTool, Target};
use crate::{mcp_server, procs};

/// How long agentd under callgrind gets to drain and write its counts after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(60);

/// How long agentd under callgrind gets to have its MCP server up.
const MCP_UP_WAIT: Duration = Duration::from_secs(120);

/// One scenario's count.
pub(crate) struct PerTurn {
    pub scenario: &'static str,
    pub short: (u32, u64),
    pub long: (u32, u64),
}

impl PerTurn {
    pub(crate) fn per_turn(&self) -> f64 {
        let turns = f64::from(self.long.0 - self.short.0);
        (self.long.1 as f64 - self.short.1 as f64) / turns
    }
}

/// The scenarios counted: the load scenarios that make model calls, and creating a session
/// (`POST /api/sessions`, counted per session instead of per turn).
const SCENARIOS: [(&str, Op); 5] = [
    (
        "chat",
        Op::Chat {
            tool: None,
            stream: false,
        },
    ),
    (
        "tool",
        Op::Chat {
            tool: Some(ServerTool::Echo),
            stream: false,
        },
    ),
    (
        "stream",
        Op::Chat {
            tool: None,
            stream: true,
        },
    ),
    (
        "mcp",
        Op::Chat {
            tool: Some(ServerTool::McpEcho),
            stream: false,
        },
    ),
    ("session", Op::NewSession),
];

/// Counts the scenarios named in `only` (all when empty); `mcp` runs the MCP server at
/// `mcp_script` (or the one found, see [`mcp_server::locate`]) and is skipped, saying so,
/// when there is none. `sets` are more `--set` settings for each agentd.
pub(crate) fn run(
    scratch: &Path,
    only: &[String],
    mcp_script: Option<&Path>,
    (short, long): (u32, u32),
    turns_per_session: u32,
    sets: &[String],
) -> Result<Vec<PerTurn>, String> {
    if long <= short {
        return Err(format!(
            "--long-turns ({long}) must be more than --short-turns ({short})"
        ));
    }
    let version = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| format!("valgrind not found ({e}); install it: apt-get install valgrind"))?;
    println!(
        "counting with {} (callgrind), {short} and {long} turns per scenario",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let runtime = crate::one_client_runtime()?;
    let mock = procs::start_mock(0)?;
    let wanted = |key: &str| only.is_empty() || only.iter().any(|o| o == key);
    let script = if wanted("mcp") {
        mcp_server::locate(mcp_script)
            .inspect_err(|line| println!("{line}"))
            .ok()
    } else {
        None
    };
    let mut results = Vec::new();
    for (scenario, op) in SCENARIOS {
        let server = match op {
            Op::Chat {
                tool: Some(ServerTool::McpEcho),
                ..
            } => match &script {
                Some(script) => Some(script.as_path()),
                None => continue,
            },
            _ => None,
        };
        if !wanted(scenario) {
            continue;
        }
        let agentd = Agentd {
            scratch,
            mock_origin: &mock.origin,
            mcp_server: server,
            turns_per_session,
            sets,
        };
        let short_count = count(&runtime, &agentd, scenario, op, short)?;
        let long_count = count(&runtime, &agentd, scenario, op, long)?;
        results.push(PerTurn {
            scenario,
            short: (short, short_count),
            long: (long, long_count),
        });
    }
    mock.stop();
    Ok(results)
}

/// How each agentd under callgrind is started.
struct Agentd<'a> {
    scratch: &'a Path,
    mock_origin: &'a str,
    /// The reference MCP server's entry point, for the `mcp` scenario.
    mcp_server: Option<&'a Path>,
    /// Turns before the client replaces its session (the histories the turns read).
    turns_per_session: u32,
    /// More `--set` settings.
    sets: &'a [String],
}

/// Total instructions of one agentd process serving `turns` turns of `op`.
fn count(
    runtime: &tokio::runtime::Runtime,
    agentd: &Agentd<'_>,
    scenario: &str,
    op: Op,
    turns: u32,
) -> Result<u64, String> {
    let Agentd {
        scratch,
        mock_origin,
        mcp_server,
        turns_per_session,
        sets,
    } = *agentd;
    let dir = scratch.join(format!("callgrind-{scenario}-{turns}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join("callgrind.out");
    let launcher = [
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        // agentd's own instructions only, never those of an MCP server it starts.
        "--trace-children=no".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let api_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let agentd = procs::start_agentd_under(
        Some(&launcher),
        &dir,
        mock_origin,
        &api_key,
        sets,
        mcp_server,
    )?;
    let http = load::http_client(1)?;
    let driven = runtime.block_on(async {
        if mcp_server.is_some() {
            mcp_server::wait_up(&http, &agentd.origin, MCP_UP_WAIT).await?;
        }
        let target = Target::connect(http, &agentd.origin, mock_origin, api_key).await?;
        load::sequential(&target, op, turns, turns_per_session).await
    });
    agentd.terminate(EXIT_GRACE)?;
    driven.map_err(|e| format!("{scenario}, {turns} turns: {e}"))?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    total(&text).ok_or_else(|| format!("{}: no summary line", out.display()))
}

/// The `summary:` (or `totals:`) count of a callgrind output file.
fn total(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
            .and_then(|n| n.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::{PerTurn, total};

    #[test]
    fn reads_the_total_and_takes_start_up_out() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123456\n";
        assert_eq!(total(text), Some(123_456));
        assert_eq!(total("events: Ir\n"), None);
        let counted = PerTurn {
            scenario: "chat",
            short: (300, 1_000_000),
            long: (900, 2_200_000),
        };
        assert!((counted.per_turn() - 2_000.0).abs() < 1e-9);
    }
}
