//! The `mock-model` binary: serves the mock model until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use agentd_mock::{MockConfig, MockModel};
use clap::Parser;

/// mimalloc instead of glibc's allocator: every request makes many small short-lived
/// allocations (body, parsed views, answer JSON), where glibc's malloc and free cost about a
/// third of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An OpenAI-compatible mock chat-completions server for demos and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "mock-model", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Delay added before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Do not keep request bodies (for benchmarks).
    #[arg(long)]
    no_record: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = MockConfig {
        latency: Duration::from_millis(args.latency_ms),
        record: !args.no_record,
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("mock-model: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let mock = match MockModel::start_on(listener, config).await {
        Ok(mock) => mock,
        Err(error) => {
            eprintln!("mock-model: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    // Scripts wait for this line; a closed stdout only loses the message.
    let _ = writeln!(stdout, "mock model listening on {}", mock.base_url());
    let _ = stdout.flush();
    if let Err(error) = stop_signal().await {
        eprintln!("mock-model: cannot wait for signals: {error}");
        mock.shutdown().await;
        return ExitCode::FAILURE;
    }
    mock.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}
