//! `jetmill`: the operator's CLI.
//!
//! - `jetmill dev`: the whole system on one machine (nats-server, gateway, worker).
//! - `jetmill gateway` / `jetmill worker`: run one part, as the standalone binaries do.
//! - Runtime config (`freeze`, `resume`, `concurrency`, `log-level`, `kind`, `chaos`,
//!   `config`): written to KV `config`, applied live by every worker; each command
//!   waits until the live workers report the new revision and says who did not.
//! - `provision`: create every stream, consumer and bucket (operator credentials).
//! - `workers`, `stats`: what runs and how the queue is doing.
//! - `jobs submit|get|list|cancel|watch`: the HTTP API from the shell.
//! - `bench`: end-to-end load numbers next to the broker's own rate.
//!
//! See docs/operations.md.

mod autoscale;
mod bench;
mod cli;
mod control;
mod dev;
mod dlq;
mod inspect;
mod jobs;
mod limits;
mod probe;
mod provision;
mod schedules;
mod workflows;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a small job allocates and frees hundreds of
/// short-lived buffers across threads, where glibc's arenas cost about a sixth of the
/// process's CPU (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cli::{parse_kind, ApplyArgs, ReadArgs};
use control::Change;
use jetmill_gateway::GatewayArgs;
use jetmill_proto::{Chaos, JobKind};
use jetmill_runtime::LogArgs;
use jetmill_worker::WorkerArgs;
use std::process::ExitCode;

/// jetmill: a distributed job system on NATS JetStream.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  jetmill dev                       # everything on this machine\n  jetmill freeze                    # no worker starts new jobs\n  jetmill concurrency 4 --worker w1 # one worker's slots\n  jetmill workers                   # who is alive, what they applied\n  jetmill jobs submit factorial 100000 --watch"
)]
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
    /// Scale the workers from queue depth and slot use (swarm services or local processes).
    ///
    /// Example: `jetmill autoscale` (swarm services labelled `jetmill.autoscale=true`), or
    /// `jetmill autoscale --backend local --min 1 --max 4`
    Autoscale(autoscale::AutoscaleArgs),
    /// Create every stream, consumer and bucket (operator credentials), so gateways and
    /// workers can run as NATS users that may not create them. Example:
    /// `jetmill provision --user controller --password-file /run/secrets/nats-controller-password`
    Provision(provision::ProvisionArgs),
    /// Stop workers from starting new jobs (running jobs finish). Example: `jetmill freeze`
    Freeze(ApplyArgs),
    /// Let frozen workers fetch jobs again.
    Resume(ApplyArgs),
    /// Set job slots per worker, live. Example: `jetmill concurrency 4 --worker w1`
    Concurrency {
        /// Slots (jobs at once) per worker.
        slots: usize,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Change the workers' log filter, live. Example: `jetmill log-level info,jetmill_worker=debug`
    LogLevel {
        /// A tracing filter (RUST_LOG syntax).
        filter: String,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Enable or disable a job kind (the gateway answers 503 for a disabled kind;
    /// queued jobs of that kind wait). Example: `jetmill kind disable fibonacci`
    Kind {
        #[command(subcommand)]
        action: KindAction,
    },
    /// Failure injection for jobs without their own. Examples:
    /// `jetmill chaos --fail 0.2 --delay 100-500`, `jetmill chaos --off`
    Chaos {
        #[command(flatten)]
        chaos: ChaosArgs,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Show or reset the stored runtime config.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Live workers: id, host, pid, slots, running, done/failed, frozen, applied config.
    Workers(ReadArgs),
    /// Queue depth per priority and kind, pending acks, redeliveries, jobs/s.
    Stats(ReadArgs),
    /// Submit, inspect, cancel and follow jobs through the gateway.
    Jobs {
        #[command(subcommand)]
        cmd: jobs::JobsCmd,
    },
    /// Dead letters (failed jobs): list them with their error trail, retry, purge.
    /// Examples: `jetmill dlq list`, `jetmill dlq retry --all`, `jetmill dlq purge ID`
    Dlq {
        #[command(subcommand)]
        cmd: dlq::DlqCmd,
    },
    /// Workflows: job steps that wait for each other (chains, fan-out/fan-in, graphs).
    /// Examples: `jetmill workflows submit flow.json --watch`, `jetmill workflows get ID`
    Workflows {
        #[command(subcommand)]
        cmd: workflows::WorkflowsCmd,
    },
    /// Recurring schedules: each firing submits a job. Examples:
    /// `jetmill schedules create '@every 5m' factorial 10000`, `jetmill schedules list`
    Schedules {
        #[command(subcommand)]
        cmd: schedules::SchedulesCmd,
    },
    /// Cluster-wide run limits per kind and/or tenant: at most N running and/or R
    /// starts per period; limited jobs wait in the queue. Examples:
    /// `jetmill limits set --kind factorial --max-running 4`, `jetmill limits list`
    Limits {
        #[command(subcommand)]
        cmd: limits::LimitsCmd,
    },
    /// Load-test a running jetmill over HTTP, next to the broker's own rate.
    /// Example: `jetmill bench --mix 10000:factorial:1000 --concurrency 64`
    Bench(bench::BenchArgs),
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise (the images' HEALTHCHECK).
    /// Example: `jetmill probe http://127.0.0.1:8080/readyz --timeout 2s`
    Probe(probe::ProbeArgs),
    /// Print a shell completion script. Example: `jetmill completions bash > /etc/bash_completion.d/jetmill`
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum KindAction {
    /// Accept and run jobs of this kind again.
    Enable {
        #[arg(value_parser = parse_kind)]
        kind: JobKind,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Refuse new jobs of this kind; queued ones wait until it is enabled.
    Disable {
        #[arg(value_parser = parse_kind)]
        kind: JobKind,
        #[command(flatten)]
        apply: ApplyArgs,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// The global config and every worker override.
    Show(ReadArgs),
    /// Forget every setting (workers go back to their own flags), or one worker's overrides.
    Reset(ApplyArgs),
}

/// Chaos settings from the command line.
#[derive(Debug, clap::Args)]
struct ChaosArgs {
    /// Probability (0..1) that an attempt fails.
    #[arg(long, default_value_t = 0.0)]
    fail: f64,
    /// Extra delay per attempt, `MS` or `MIN-MAX` milliseconds.
    #[arg(long, value_parser = jetmill_worker::chaos::parse_delay)]
    delay: Option<(u64, u64)>,
    /// Fail by panicking inside the kernel thread instead of returning an error.
    #[arg(long)]
    panic: bool,
    /// Turn failure injection off (overrides the workers' own flags).
    #[arg(long, conflicts_with_all = ["fail", "delay", "panic"])]
    off: bool,
}

impl ChaosArgs {
    fn change(&self) -> anyhow::Result<Change> {
        if self.off {
            return Ok(Change::Chaos(None));
        }
        if !(0.0..=1.0).contains(&self.fail) {
            anyhow::bail!("--fail must be a probability between 0 and 1, e.g. 0.2");
        }
        let (lo, hi) = self.delay.unwrap_or((0, 0));
        let chaos = Chaos {
            fail_ppm: (self.fail * f64::from(Chaos::PPM)).round() as u32,
            delay_min_ms: lo,
            delay_max_ms: hi,
            panic: self.panic,
        };
        if !chaos.is_active() {
            anyhow::bail!("nothing to inject: pass --fail P and/or --delay MS, or --off");
        }
        Ok(Change::Chaos(Some(chaos)))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Operator commands print their own output; library chatter (connects, ...) only
    // shows when asked for with --log-level or JETMILL_LOG.
    let defaulted = matches.value_source("level") == Some(clap::parser::ValueSource::DefaultValue);
    if defaulted
        && !matches!(
            cli.command,
            Command::Dev(_) | Command::Gateway(_) | Command::Worker(_) | Command::Autoscale(_)
        )
    {
        cli.log.level = "warn".into();
    }
    // The long-running parts export traces when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let (log, telemetry) = match &cli.command {
        Command::Dev(_) => jetmill_runtime::init(&cli.log, "jetmill-dev"),
        Command::Gateway(_) => jetmill_runtime::init(&cli.log, "jetmill-gateway"),
        Command::Worker(_) => jetmill_runtime::init(&cli.log, "jetmill-worker"),
        _ => (
            jetmill_runtime::init_logging(&cli.log),
            jetmill_runtime::Telemetry::default(),
        ),
    };
    let outcome = run(cli.command, log).await;
    // Send the spans still buffered, whatever the outcome.
    telemetry.shutdown().await;
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(violation) = jetmill_natsx::last_permission_violation() {
                eprintln!(
                    "hint: the NATS server refused this user: {violation}. A refused request \
                     gets no answer, so it timed out. Run this with a NATS user allowed to \
                     do it (--user/--password-file; `controller` may do everything), see \
                     docs/operations.md \"NATS roles and permissions\""
                );
            }
            ExitCode::from(2)
        }
    }
}

/// Run one command; `Ok(false)` means it ran but the outcome was not what was asked
/// (a worker did not apply a change, a watched job did not end `done`).
async fn run(command: Command, log: jetmill_runtime::LogHandle) -> anyhow::Result<bool> {
    match command {
        Command::Dev(args) => dev::run(args, log).await.map(|()| true),
        Command::Gateway(args) => {
            let shutdown = jetmill_runtime::shutdown_token();
            // A stop while it waits for `jetmill provision` ends it too.
            let app = tokio::select! {
                app = jetmill_gateway::Application::build(&args) => app?,
                () = shutdown.cancelled() => return Ok(true),
            };
            app.run_until_stopped(shutdown).await?;
            Ok(true)
        }
        Command::Worker(args) => {
            jetmill_worker::run_with_log(args, jetmill_runtime::shutdown_token(), log).await?;
            Ok(true)
        }
        Command::Autoscale(args) => autoscale::run(args).await.map(|()| true),
        Command::Provision(args) => provision::run(&args).await.map(|()| true),
        Command::Freeze(apply) => control::run(Change::Freeze, &apply).await,
        Command::Resume(apply) => control::run(Change::Resume, &apply).await,
        Command::Concurrency { slots, apply } => {
            control::run(Change::Concurrency(slots), &apply).await
        }
        Command::LogLevel { filter, apply } => control::run(Change::LogLevel(filter), &apply).await,
        Command::Kind {
            action: KindAction::Enable { kind, apply },
        } => control::run(Change::EnableKind(kind), &apply).await,
        Command::Kind {
            action: KindAction::Disable { kind, apply },
        } => control::run(Change::DisableKind(kind), &apply).await,
        Command::Chaos { chaos, apply } => control::run(chaos.change()?, &apply).await,
        Command::Config {
            action: ConfigAction::Show(args),
        } => inspect::config_show(&args).await.map(|()| true),
        Command::Config {
            action: ConfigAction::Reset(apply),
        } => control::run(Change::Reset, &apply).await,
        Command::Workers(args) => inspect::workers(&args).await.map(|()| true),
        Command::Stats(args) => inspect::stats(&args).await.map(|()| true),
        Command::Jobs { cmd } => jobs::run(cmd).await,
        Command::Dlq { cmd } => dlq::run(cmd).await,
        Command::Schedules { cmd } => schedules::run(cmd).await,
        Command::Workflows { cmd } => workflows::run(cmd).await,
        Command::Limits { cmd } => limits::run(cmd).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Probe(args) => probe::run(&args).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "jetmill",
                &mut std::io::stdout(),
            );
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
