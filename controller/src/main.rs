//! `jetmill`: the operator's CLI.
//!
//! - `jetmill dev`: the whole system on one machine (nats-server, gateway, worker).
//! - `jetmill gateway` / `jetmill worker`: run one part, as the standalone binaries do.
//!
//! Runtime operations (freeze, concurrency, ...) and job commands come next; see
//! docs/operations.md.

mod dev;

use clap::{Parser, Subcommand};
use jetmill_gateway::GatewayArgs;
use jetmill_runtime::LogArgs;
use jetmill_worker::WorkerArgs;

/// jetmill: a distributed job system on NATS JetStream.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine: a local nats-server, the gateway and a worker.
    ///
    /// Example: `jetmill dev` then open the printed URL, or
    /// `curl -d '{"kind":"factorial","input":1000}' http://127.0.0.1:8080/v1/jobs`
    Dev(dev::DevArgs),
    /// Run the HTTP gateway.
    Gateway(GatewayArgs),
    /// Run a worker.
    Worker(WorkerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    jetmill_runtime::init_logging(&cli.log);
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Gateway(args) => {
            let shutdown = jetmill_runtime::shutdown_token();
            let app = jetmill_gateway::Application::build(&args).await?;
            app.run_until_stopped(shutdown).await?;
            Ok(())
        }
        Command::Worker(args) => jetmill_worker::run(args, jetmill_runtime::shutdown_token()).await,
    }
}
