//! The `agentd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator: a turn makes thousands of small short-lived
/// allocations across threads, where it costs about half as much CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    agentd::cli::run(agentd::cli::Cli::parse())
}
