//! `jetmill autoscale`: scale the workers from queue depth and slot use.
//!
//! Every `--interval` it reads the workers consumer (`num_pending + num_ack_pending`,
//! as KEDA's JetStream scaler does) and the live worker reports (running vs slots),
//! asks [`policy::Policy`] per target, and applies the changes through a [`Backend`]:
//! [`swarm::SwarmBackend`] (Docker Engine API, services labelled
//! `jetmill.autoscale=true`) or [`local::LocalBackend`] (worker child processes).
//! Decisions are logged with their reason and exported on `--metrics-listen`.

pub mod local;
pub mod policy;
pub mod swarm;

use crate::cli::parse_duration;
use anyhow::Context;
use futures::TryStreamExt;
use jetmill_metrics::Metrics;
use jetmill_natsx::{control, Jet, NatsArgs};
use jetmill_proto::names;
use policy::{Decision, Direction, Load, Policy, PolicyConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Which backend scales the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Docker Swarm services labelled `jetmill.autoscale=true`.
    Swarm,
    /// `jetmill worker` child processes of this autoscaler.
    Local,
}

/// The policy flags, shared by `jetmill autoscale` and `jetmill dev --autoscale`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// How often to read the queue and decide.
    #[arg(long, env = "JETMILL_AUTOSCALE_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Queued jobs per worker (default: the slots the workers report, else 1).
    #[arg(long, env = "JETMILL_AUTOSCALE_JOBS_PER_WORKER", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs_per_worker: Option<u32>,
    /// No scale-up sooner than this after the last change (0: up at once).
    #[arg(long, env = "JETMILL_AUTOSCALE_UP_COOLDOWN", default_value = "0s", value_parser = parse_duration)]
    pub up_cooldown: Duration,
    /// No scale-down sooner than this after the last change.
    #[arg(long, env = "JETMILL_AUTOSCALE_DOWN_COOLDOWN", default_value = "60s", value_parser = parse_duration)]
    pub down_cooldown: Duration,
    /// A scale-down goes only as low as the highest count wanted within this window.
    #[arg(long, env = "JETMILL_AUTOSCALE_STABILIZATION", default_value = "120s", value_parser = parse_duration)]
    pub stabilization: Duration,
    /// How long a stopped local worker may drain before it is killed.
    #[arg(long, env = "JETMILL_AUTOSCALE_DRAIN_TIMEOUT", default_value = "40s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Slots of each local worker process (`jetmill worker --concurrency`; default: 1).
    #[arg(long, env = "JETMILL_AUTOSCALE_WORKER_CONCURRENCY")]
    pub worker_concurrency: Option<usize>,
}

/// Flags of `jetmill autoscale`.
#[derive(Debug, Clone, clap::Args)]
pub struct AutoscaleArgs {
    /// What to scale.
    #[arg(
        long,
        env = "JETMILL_AUTOSCALE_BACKEND",
        value_enum,
        default_value = "swarm"
    )]
    pub backend: BackendKind,
    /// Fewest workers (swarm: unless the service's `jetmill.autoscale.min` label says).
    #[arg(long, env = "JETMILL_AUTOSCALE_MIN", default_value_t = 1)]
    pub min: u32,
    /// Most workers (swarm: unless the `jetmill.autoscale.max` label says; local:
    /// default the number of cores).
    #[arg(long, env = "JETMILL_AUTOSCALE_MAX")]
    pub max: Option<u32>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Decide once, print the decisions as JSON and exit (with --dry-run: a preview).
    #[arg(long)]
    pub once: bool,
    /// Decide and log, but change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Address of the autoscaler's Prometheus `/metrics` listener (port 0 picks a free one).
    #[arg(
        long,
        env = "JETMILL_AUTOSCALE_METRICS_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    pub metrics_listen: SocketAddr,
    /// Docker daemon socket, `unix:///path` (default: DOCKER_HOST, else /var/run/docker.sock).
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// One thing the autoscaler scales, as its backend sees it now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Target {
    /// Service name (`local` for the local backend).
    pub name: String,
    pub min: u32,
    pub max: u32,
    /// Workers asked for (swarm: the service's replicas; local: live children).
    pub replicas: u32,
    /// Workers running (swarm: running tasks; local: live children).
    pub running: u32,
}

/// Where the workers run: lists the targets and changes their replica counts.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// The targets to scale now, with their bounds and current counts. A target
    /// with bad settings is left out (and logged), not an error for the others.
    async fn targets(&self) -> anyhow::Result<Vec<Target>>;
    /// Set `target` to `replicas` workers.
    async fn scale(&self, target: &Target, replicas: u32) -> anyhow::Result<()>;
}

/// The decision state across ticks: one [`Policy`] per target, and the metrics.
pub struct Autoscaler {
    policy: PolicyArgs,
    policies: HashMap<String, Policy>,
    /// The last logged `(direction, reason, wanted)` per target: holds that repeat
    /// are logged at debug level only.
    logged: HashMap<String, (Direction, policy::Reason, u32)>,
    metrics: Arc<Metrics>,
    /// Decide and log, change nothing.
    dry_run: bool,
}

/// One target's decision at one tick, and whether the backend applied it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub target: Target,
    pub decision: Decision,
    /// `None` for a hold (or a dry run); `Ok` applied; `Err` the backend's error text.
    pub applied: Option<Result<(), String>>,
}

impl Autoscaler {
    /// A new autoscaler with no history, recording into `metrics`.
    pub fn new(policy: PolicyArgs, metrics: Arc<Metrics>) -> Self {
        Autoscaler {
            policy,
            policies: HashMap::new(),
            logged: HashMap::new(),
            metrics,
            dry_run: false,
        }
    }

    /// Decide and log, but never call the backend's `scale`.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    fn config(&self, t: &Target) -> PolicyConfig {
        PolicyConfig {
            min: t.min,
            max: t.max,
            jobs_per_worker: self.policy.jobs_per_worker,
            up_cooldown: self.policy.up_cooldown,
            down_cooldown: self.policy.down_cooldown,
            stabilization: self.policy.stabilization,
        }
    }

    /// One tick: decide for every target of `backend` under `load` at `now`, apply
    /// the changes, log and record them. Returns every decision (holds too).
    pub async fn run_once<B: Backend>(
        &mut self,
        backend: &B,
        load: &Load,
        now: Instant,
    ) -> anyhow::Result<Vec<Outcome>> {
        self.metrics
            .autoscale
            .observe(load.depth, load.running, load.slots);
        let targets = backend.targets().await?;
        // Services no longer labelled are forgotten (their history too).
        let gone: Vec<String> = self
            .policies
            .keys()
            .filter(|k| !targets.iter().any(|t| &t.name == *k))
            .cloned()
            .collect();
        for name in gone {
            self.policies.remove(&name);
            self.logged.remove(&name);
            self.metrics.autoscale.forget(&name);
        }
        let mut outcomes = Vec::with_capacity(targets.len());
        for target in targets {
            let config = self.config(&target);
            let policy = self
                .policies
                .entry(target.name.clone())
                .or_insert_with(|| Policy::new(config.clone()));
            if policy.config() != &config {
                policy.set_config(config);
            }
            let decision = policy.decide(now, load, target.replicas);
            let applied = if decision.direction == Direction::Hold || self.dry_run {
                None
            } else {
                let r = backend.scale(&target, decision.desired).await;
                if r.is_ok() {
                    policy.applied(now);
                }
                Some(r.map_err(|e| format!("{e:#}")))
            };
            self.record(&target, load, &decision, applied.as_ref());
            outcomes.push(Outcome {
                target,
                decision,
                applied,
            });
        }
        Ok(outcomes)
    }

    fn record(
        &mut self,
        t: &Target,
        load: &Load,
        d: &Decision,
        applied: Option<&Result<(), String>>,
    ) {
        let desired = match applied {
            Some(Err(_)) => d.current,
            _ => d.desired,
        };
        self.metrics.autoscale.decision(
            &t.name,
            desired,
            t.running,
            d.direction.as_str(),
            d.reason.as_str(),
        );
        let key = (d.direction, d.reason, d.wanted);
        let repeat = self.logged.get(&t.name) == Some(&key);
        self.logged.insert(t.name.clone(), key);
        macro_rules! log {
            ($level:ident, $msg:literal) => {
                tracing::$level!(
                    service = %t.name,
                    depth = load.depth,
                    running_jobs = load.running,
                    slots = load.slots,
                    jobs_per_worker = d.jobs_per_worker,
                    current = d.current,
                    running_workers = t.running,
                    wanted = d.wanted,
                    desired = d.desired,
                    min = t.min,
                    max = t.max,
                    direction = d.direction.as_str(),
                    reason = d.reason.as_str(),
                    $msg
                )
            };
        }
        match applied {
            Some(Err(e)) => {
                log!(warn, "autoscale: scaling failed");
                tracing::warn!(service = %t.name, error = %e, "autoscale: backend error");
            }
            Some(Ok(())) => log!(info, "autoscale: scaled"),
            None if self.dry_run && d.direction != Direction::Hold => {
                log!(info, "autoscale: would scale (dry run)")
            }
            None if repeat => log!(debug, "autoscale: held"),
            None => log!(info, "autoscale: held"),
        }
    }
}

/// Read the autoscaler's inputs: queue depth from the workers consumer, and slot use
/// from the live worker reports.
pub async fn observe(jet: &Jet) -> anyhow::Result<Load> {
    let mut depth = 0;
    for priority in jetmill_proto::Priority::ALL {
        match jet
            .jobs
            .consumer_info(&names::workers_consumer(priority))
            .await
        {
            Ok(c) => depth += c.num_pending + c.num_ack_pending as u64,
            // No worker has ever started, so nothing was delivered: every run job waits.
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound
                ) =>
            {
                depth = queued_run_jobs(jet).await?;
                break;
            }
            Err(e) => return Err(e).context("reading the workers consumers"),
        }
    }
    let reports = control::workers(jet)
        .await
        .context("reading worker reports")?;
    Ok(Load {
        depth,
        running: reports.iter().map(|r| r.running as u64).sum(),
        slots: reports.iter().map(|r| r.concurrency as u64).sum(),
        reporting_workers: reports.len() as u64,
    })
}

async fn queued_run_jobs(jet: &Jet) -> anyhow::Result<u64> {
    let mut subjects = jet
        .jobs
        .info_with_subjects("jobs.run.>")
        .await
        .context("reading the JOBS stream")?;
    let mut n = 0u64;
    while let Some((_, count)) = subjects
        .try_next()
        .await
        .context("reading the JOBS stream")?
    {
        n += count as u64;
    }
    Ok(n)
}

/// Bind the autoscaler's `/metrics` listener, serve it until `shutdown`, and return
/// its URL.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (see --metrics-listen)"))?;
    let url = format!(
        "http://{}/metrics",
        listener
            .local_addr()
            .context("reading the metrics address")?
    );
    tokio::spawn(async move {
        if let Err(e) = jetmill_metrics::serve(listener, metrics, shutdown).await {
            tracing::error!(error = %e, "autoscaler metrics listener failed");
        }
    });
    Ok(url)
}

/// Tick until `shutdown`: observe, decide, apply. Errors reading NATS or the backend
/// are logged and retried at the next tick.
pub async fn run_loop<B: Backend>(
    backend: &B,
    jet: &Jet,
    scaler: &mut Autoscaler,
    interval: Duration,
    shutdown: &CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let load = match observe(jet).await {
            Ok(load) => load,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "autoscale: cannot read the queue; holding");
                continue;
            }
        };
        if let Err(e) = scaler.run_once(backend, &load, Instant::now()).await {
            tracing::warn!(error = %format!("{e:#}"), "autoscale: cannot list targets; holding");
        }
    }
}

/// `jetmill autoscale`: run until Ctrl-C/SIGTERM (the local backend then stops its
/// workers).
pub async fn run(args: AutoscaleArgs) -> anyhow::Result<()> {
    let shutdown = jetmill_runtime::shutdown_token();
    let metrics = Arc::new(Metrics::autoscaler());
    let url = serve_metrics(args.metrics_listen, metrics.clone(), shutdown.clone()).await?;
    eprintln!("autoscaler metrics: {url}");
    let jet = crate::control::connect_waiting(&args.nats).await?;
    let mut scaler = Autoscaler::new(args.policy.clone(), metrics).dry_run(args.dry_run);
    match args.backend {
        BackendKind::Swarm => {
            let backend =
                swarm::SwarmBackend::connect(args.docker_host.as_deref(), args.min, args.max)
                    .await?;
            if args.once {
                return once(&backend, &jet, &mut scaler).await;
            }
            tracing::info!(interval = ?args.policy.interval, "autoscaling swarm services labelled {}=true", swarm::LABEL);
            run_loop(&backend, &jet, &mut scaler, args.policy.interval, &shutdown).await;
        }
        BackendKind::Local => {
            let max = args.max.unwrap_or_else(local::default_max);
            let backend = local::LocalBackend::new(local::LocalConfig::new(
                &args.nats,
                args.min,
                max,
                &args.policy,
            )?)?;
            if args.once {
                let r = once(&backend, &jet, &mut scaler).await;
                backend.stop_all().await;
                return r;
            }
            tracing::info!(min = args.min, max, interval = ?args.policy.interval, "autoscaling local worker processes");
            run_loop(&backend, &jet, &mut scaler, args.policy.interval, &shutdown).await;
            backend.stop_all().await;
        }
    }
    Ok(())
}

/// `--once`: one tick, its outcomes printed as JSON.
async fn once<B: Backend>(backend: &B, jet: &Jet, scaler: &mut Autoscaler) -> anyhow::Result<()> {
    let load = observe(jet).await?;
    let outcomes = scaler.run_once(backend, &load, Instant::now()).await?;
    #[derive(serde::Serialize)]
    struct Once<'a> {
        load: &'a Load,
        outcomes: &'a [Outcome],
    }
    crate::cli::print_json(&Once {
        load: &load,
        outcomes: &outcomes,
    })
}
