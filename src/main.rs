//! The `agentd` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    agentd::cli::run(agentd::cli::Cli::parse())
}
