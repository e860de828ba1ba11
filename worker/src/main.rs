//! `jetmill-worker`: computes jobs pulled from JetStream.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a small job allocates and frees hundreds of
/// short-lived buffers across threads, where glibc's arenas cost about a sixth of the
/// process's CPU (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use jetmill_runtime::LogArgs;
use jetmill_worker::WorkerArgs;

/// jetmill worker: pulls jobs from the shared queue and computes them.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (log, telemetry) = jetmill_runtime::init(&cli.log, "jetmill-worker");
    let shutdown = jetmill_runtime::shutdown_token();
    let result = jetmill_worker::run_with_log(cli.worker, shutdown, log).await;
    telemetry.shutdown().await;
    result
}
