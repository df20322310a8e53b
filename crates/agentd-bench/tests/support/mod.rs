//! Runs the bench binary against real `agentd` and `mock-model` processes.
//!
//! The bench starts the binaries it finds next to itself or in `AGENTD_BENCH_BIN_DIR`;
//! `cargo test` builds neither, so the tests look for them in the bench's own target
//! directory (debug, then release) and say which build to run when both lack them.

use std::path::PathBuf;
use std::process::Command;

/// A directory of the bench's target directory holding both binaries the bench starts.
fn binaries() -> Option<PathBuf> {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_agentd-bench"));
    let profile = bench.parent()?;
    [profile.to_path_buf(), profile.parent()?.join("release")]
        .into_iter()
        .find(|dir| dir.join("agentd").is_file() && dir.join("mock-model").is_file())
}

/// The bench's stdout for `args`, which must succeed; `None` (after saying so) when the
/// binaries it starts are not built.
pub(crate) fn run_bench(args: &[&str]) -> Option<String> {
    let Some(dir) = binaries() else {
        // CI builds them before the tests (.ci/run): there, missing binaries are a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "agentd and mock-model are not built next to agentd-bench"
        );
        eprintln!(
            "skipped: build agentd and mock-model first \
             (cargo build -p agentd -p agentd-mock, or with --release)"
        );
        return None;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_agentd-bench"))
        .args(args)
        .env("AGENTD_BENCH_BIN_DIR", &dir)
        .output()
        .expect("run agentd-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "agentd-bench failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout)
}
