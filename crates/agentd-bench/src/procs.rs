//! The processes under test: the mock model and the agentd daemon, each started from the
//! binaries next to the bench's own executable, plus their CPU time, memory and children
//! from `/proc`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process killed when dropped.
pub(crate) struct Running {
    child: Child,
    /// Where it listens: `http://ADDR` (no path).
    pub origin: String,
}

impl Running {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the process (no chance to clean up) and reaps it.
    pub(crate) fn stop(mut self) {
        self.kill();
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` for it to exit, so it can
    /// write what it keeps until exit (callgrind's counts); killed after that.
    pub(crate) fn terminate(mut self, grace: Duration) -> Result<(), String> {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or("no process id")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .map_err(|e| format!("SIGTERM: {e}"))?;
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("did not exit within {grace:?} of SIGTERM"))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The directory holding the bench's executable (and `agentd`, `mock-model`).
pub(crate) fn bin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "executable has no directory".to_owned())
}

/// Names the directory holding `agentd` and `mock-model` when they are not next to the bench's
/// executable (a debug bench run by `cargo test` against release binaries).
pub(crate) const BIN_DIR_ENV: &str = "AGENTD_BENCH_BIN_DIR";

/// `name` next to the bench's executable, or in [`BIN_DIR_ENV`]'s directory when it is set.
/// The bench does not build it: a `cargo run` of the bench builds only the bench, so the
/// error says which build puts the binaries there.
fn binary(name: &str) -> Result<PathBuf, String> {
    let dir = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => bin_dir()?,
    };
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    let profile = if dir.ends_with("debug") {
        ""
    } else {
        " --release"
    };
    Err(format!(
        "{} not found; build agentd and the mock model first: cargo build{profile} -p agentd -p agentd-mock",
        path.display()
    ))
}

/// Starts `mock-model --no-record` on a fresh port; waits for its ready line on stdout.
pub(crate) fn start_mock(latency_ms: u64) -> Result<Running, String> {
    spawn_mock(latency_ms, false)
}

/// Starts `mock-model` keeping every request it gets (readable under `/_mock/recorded`).
pub(crate) fn start_recording_mock(latency_ms: u64) -> Result<Running, String> {
    spawn_mock(latency_ms, true)
}

fn spawn_mock(latency_ms: u64, record: bool) -> Result<Running, String> {
    let mut command = Command::new(binary("mock-model")?);
    command
        .args(["--listen", "127.0.0.1:0", "--latency-ms"])
        .arg(latency_ms.to_string());
    if !record {
        command.arg("--no-record");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start mock-model: {e}"))?;
    let stdout = child.stdout.take().ok_or("mock-model: no stdout")?;
    let line = wait_for_line(stdout, "mock model listening on ", false)?;
    let url = line
        .split("listening on ")
        .nth(1)
        .map(str::trim)
        .ok_or_else(|| format!("mock-model: unexpected line {line:?}"))?;
    let origin = url.trim_end_matches("/v1").to_owned();
    Ok(Running { child, origin })
}

/// The data directory [`start_agentd`] gives agentd in `scratch`.
pub(crate) fn data_dir(scratch: &Path) -> PathBuf {
    scratch.join("data")
}

/// The catalog [`start_agentd`] writes in `scratch`.
pub(crate) fn catalog(scratch: &Path) -> PathBuf {
    scratch.join("tools.toml")
}

/// Starts agentd again on the data directory and catalog a stopped [`start_agentd`] left in
/// `scratch`.
pub(crate) fn restart_agentd(
    scratch: &Path,
    mock_origin: &str,
    api_key: &str,
) -> Result<Running, String> {
    start_agentd_on(&data_dir(scratch), &catalog(scratch), mock_origin, api_key)
}

/// Starts `agentd serve` against the mock with a scratch data dir and catalog; waits for
/// `agentd ready addr=...` on stderr (which is drained for the rest of the run).
pub(crate) fn start_agentd(
    scratch: &Path,
    mock_origin: &str,
    api_key: &str,
) -> Result<Running, String> {
    start_agentd_under(None, scratch, mock_origin, api_key, &[], None)
}

/// [`start_agentd`], run by `launcher` (a program and its arguments, such as valgrind) when
/// given; the launcher must keep the process id (exec or run in place). `sets` are more
/// `--set key=value` settings; `mcp_server`, the reference MCP server's entry point, adds it
/// to the catalog as an `[[mcp]]` entry (agentd starts it in the background after its ready
/// line).
pub(crate) fn start_agentd_under(
    launcher: Option<&[String]>,
    scratch: &Path,
    mock_origin: &str,
    api_key: &str,
    sets: &[String],
    mcp_server: Option<&Path>,
) -> Result<Running, String> {
    let tools = catalog(scratch);
    let mut entries = "[[tool]]\nname = \"echo\"\ndescription = \"Return the arguments\"\n\
                       handler = \"echo\"\noffer = false\nparameters = { type = \"object\" }\n"
        .to_owned();
    if let Some(script) = mcp_server {
        entries.push_str(&crate::mcp_server::tools_entry(script));
    }
    std::fs::write(&tools, entries).map_err(|e| format!("{}: {e}", tools.display()))?;
    let agentd = binary("agentd")?;
    let command = match launcher {
        Some([program, args @ ..]) => {
            let mut command = Command::new(program);
            command.args(args).arg(&agentd);
            command
        }
        _ => Command::new(&agentd),
    };
    spawn_agentd(
        command,
        &data_dir(scratch),
        &tools,
        mock_origin,
        api_key,
        sets,
    )
}

/// Starts the `agentd` binary on `data_dir` with the catalog `tools` (no launcher, no extra
/// settings); waits for its ready line.
pub(crate) fn start_agentd_on(
    data_dir: &Path,
    tools: &Path,
    mock_origin: &str,
    api_key: &str,
) -> Result<Running, String> {
    spawn_agentd(
        Command::new(binary("agentd")?),
        data_dir,
        tools,
        mock_origin,
        api_key,
        &[],
    )
}

fn spawn_agentd(
    mut command: Command,
    data_dir: &Path,
    tools: &Path,
    mock_origin: &str,
    api_key: &str,
    sets: &[String],
) -> Result<Running, String> {
    let mut child = command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--tools")
        .arg(tools)
        .arg("--set")
        .arg(format!("provider.base_url=\"{mock_origin}/v1\""))
        .arg("--set")
        .arg("provider.model=\"mock-model\"")
        .args(sets.iter().flat_map(|set| ["--set", set.as_str()]))
        .env("AGENTD_API_KEY", api_key)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start agentd: {e}"))?;
    let stderr = child.stderr.take().ok_or("agentd: no stderr")?;
    let line = wait_for_line(stderr, "agentd ready", true)?;
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_matches('"').to_owned())
        .ok_or_else(|| format!("agentd: no addr in {line:?}"))?;
    Ok(Running {
        child,
        origin: format!("http://{addr}"),
    })
}

/// Reads lines on a thread until one contains `marker`; keeps draining afterwards. Lines are
/// echoed to our stderr when `echo_problems` and they look like warnings or errors.
fn wait_for_line(
    source: impl std::io::Read + Send + 'static,
    marker: &'static str,
    echo_problems: bool,
) -> Result<String, String> {
    let (found, ready) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if let Some(sender) = found.as_ref()
                && line.contains(marker)
            {
                let _ = sender.send(line.clone());
                found = None;
                continue;
            }
            if echo_problems && (line.contains("ERROR") || line.contains("WARN")) {
                eprintln!("  [agentd] {line}");
            }
        }
    });
    ready
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| format!("no line containing {marker:?} within {READY_TIMEOUT:?}"))
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    Stat::read(format!("/proc/{pid}/stat"))?.ticks(11..13)
}

/// utime + stime, in clock ticks, of the threads of a process whose name starts with
/// `prefix`; `None` when no thread's does.
pub(crate) fn threads_cpu_ticks(pid: u32, prefix: &str) -> Option<u64> {
    let mut total = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread that ended between the listing and this read is skipped.
        let Some(stat) = Stat::read(task.path().join("stat")) else {
            continue;
        };
        if stat.name().starts_with(prefix)
            && let Some(ticks) = stat.ticks(11..13)
        {
            *total.get_or_insert(0) += ticks;
        }
    }
    total
}

/// CPU time of a process and everything it started, in clock ticks: its own utime + stime,
/// what its waited-for children used (cutime + cstime), and the utime + stime of the children
/// still running (a server's postmaster and its backends).
pub(crate) fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let own = Stat::read(format!("/proc/{pid}/stat"))?.ticks(11..15)?;
    let running: u64 = children(pid).into_iter().filter_map(cpu_ticks).sum();
    Some(own + running)
}

/// The text of a `/proc/.../stat` file: the command name in parentheses (which may hold spaces
/// and parentheses), then the fields from the state (field 3) on.
struct Stat(String);

impl Stat {
    fn read(path: impl AsRef<Path>) -> Option<Self> {
        std::fs::read_to_string(path).ok().map(Self)
    }

    /// The command (or thread) name, as `comm` shows it.
    fn name(&self) -> &str {
        let open = self.0.find('(').map_or(0, |at| at + 1);
        let close = self.0.rfind(')').unwrap_or(open);
        self.0.get(open..close).unwrap_or("")
    }

    /// The fields after the name: index 0 is the state, 1 the parent, 11 utime, 12 stime,
    /// 13 cutime, 14 cstime.
    fn fields(&self) -> Option<Vec<&str>> {
        let rest = self.0.get(self.0.rfind(')')? + 2..)?;
        Some(rest.split_whitespace().collect())
    }

    /// The sum of the clock-tick fields in `range`.
    fn ticks(&self, range: std::ops::Range<usize>) -> Option<u64> {
        self.fields()?
            .get(range)?
            .iter()
            .map(|field| field.parse::<u64>().ok())
            .sum()
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that cannot be run).
pub(crate) fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in kB.
pub(crate) fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_line(&status, key)
}

/// A `kB` line of `/proc/PID/smaps_rollup` (`AnonHugePages`: anonymous memory in
/// transparent huge pages), in kB.
pub(crate) fn smaps_rollup_kb(pid: u32, key: &str) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kb_line(&rollup, key)
}

/// The number on the `key:` line of a `/proc` table of `key: N kB` lines.
fn kb_line(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(key) && line[key.len()..].starts_with(':'))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
}

/// The system's transparent huge page mode (`always`, `madvise` or `never`): the bracketed
/// word of `/sys/kernel/mm/transparent_hugepage/enabled`. Under `madvise` agentd's heap gets
/// none (its allocator asks for none), under `always` the kernel backs it with them.
pub(crate) fn huge_page_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    bracketed(&text).map(str::to_owned)
}

fn bracketed(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    Some(&text[start..start + len])
}

/// The direct children of a process: `/proc/PID/task/*/children`, else (a kernel without
/// that file) every `/proc/*/stat` whose parent is `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    if found.is_empty() {
        found = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&other| parent(other) == Some(pid))
            .collect();
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// The parent process id of a process (field 4 of `/proc/PID/stat`).
fn parent(pid: u32) -> Option<u32> {
    Stat::read(format!("/proc/{pid}/stat"))?
        .fields()?
        .get(1)?
        .parse()
        .ok()
}

/// A process's command line, its arguments joined by spaces.
pub(crate) fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    Some(args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::{
        bracketed, children, command_line, cpu_ticks, huge_page_mode, kb_line, smaps_rollup_kb,
        threads_cpu_ticks,
    };

    #[test]
    fn reads_a_kb_line_and_the_huge_page_mode() {
        let rollup = "Rss:              775884 kB\nAnonHugePages:    522240 kB\nAnon:  1 kB\n";
        assert_eq!(kb_line(rollup, "AnonHugePages"), Some(522_240));
        assert_eq!(kb_line(rollup, "Anon"), Some(1));
        assert_eq!(kb_line(rollup, "Swap"), None);
        assert_eq!(bracketed("always [madvise] never\n"), Some("madvise"));
        assert_eq!(bracketed("[always] madvise never"), Some("always"));
        assert_eq!(bracketed("always madvise never"), None);
        // And from this process, as the bench reads agentd's.
        assert!(smaps_rollup_kb(std::process::id(), "Rss").is_some_and(|kb| kb > 0));
        if let Some(mode) = huge_page_mode() {
            assert!(
                ["always", "madvise", "never"].contains(&mode.as_str()),
                "{mode}"
            );
        }
    }

    #[test]
    fn counts_the_cpu_of_the_threads_with_a_name() {
        let busy = std::thread::Builder::new()
            .name("probe-spinner".into())
            .spawn(|| {
                let started = std::time::Instant::now();
                let mut spins = 0u64;
                while started.elapsed() < std::time::Duration::from_millis(300) {
                    spins = std::hint::black_box(spins + 1);
                }
                // Still running, so its task is listed when counted.
                std::thread::sleep(std::time::Duration::from_millis(500));
            })
            .expect("thread");
        std::thread::sleep(std::time::Duration::from_millis(400));
        let pid = std::process::id();
        let named = threads_cpu_ticks(pid, "probe-spin");
        let all = cpu_ticks(pid);
        busy.join().expect("join");
        // 300 ms of spinning is about 30 ticks at the usual 100 per second; a third of that
        // on a busy machine.
        assert!(named.is_some_and(|ticks| ticks >= 5), "{named:?}");
        assert!(named <= all, "{named:?} of {all:?}");
        assert_eq!(threads_cpu_ticks(pid, "no-such-thread"), None);
    }

    #[test]
    fn finds_a_child_and_its_command_line() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let found = children(std::process::id());
        // The new process's command line may read empty for a moment after spawn returns.
        let mut line = None;
        for _ in 0..100 {
            line = command_line(child.id()).filter(|line| !line.is_empty());
            if line.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert_eq!(line.as_deref(), Some("sleep 30"));
    }
}
