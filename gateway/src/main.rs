//! `jetmill-gateway`: the HTTP API in its own process.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a small job allocates and frees hundreds of
/// short-lived buffers across threads, where glibc's arenas cost about a sixth of the
/// process's CPU (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use jetmill_gateway::{Application, GatewayArgs};
use jetmill_runtime::LogArgs;

/// jetmill HTTP gateway: accepts jobs and serves their records and results.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (_log, telemetry) = jetmill_runtime::init(&cli.log, "jetmill-gateway");
    let shutdown = jetmill_runtime::shutdown_token();
    // A stop while waiting for `jetmill provision` (see Application::build) ends it too.
    let built = tokio::select! {
        built = Application::build(&cli.gateway) => Some(built),
        () = shutdown.cancelled() => None,
    };
    let result = match built {
        Some(Ok(app)) => app.run_until_stopped(shutdown).await.map_err(Into::into),
        Some(Err(e)) => Err(e),
        None => Ok(()),
    };
    telemetry.shutdown().await;
    result
}
