//! `jetmill dev`: a local nats-server (child process), the gateway and a worker.
//!
//! With `--autoscale` the workers are `jetmill worker` child processes that the
//! autoscaler's local backend grows and shrinks with the queue.

use anyhow::{bail, Context};
use jetmill_gateway::{Application, GatewayArgs};
use jetmill_worker::WorkerArgs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Flags of `jetmill dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Folder for the nats-server store and logs.
    #[arg(long, env = "JETMILL_DEV_DIR", default_value = ".jetmill")]
    pub dir: PathBuf,
    /// NATS client port (0 picks a free one).
    #[arg(long, env = "JETMILL_DEV_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// Gateway address.
    #[arg(long, env = "JETMILL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Worker concurrency (default: the number of cores).
    #[arg(long, env = "JETMILL_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Address of the worker's Prometheus `/metrics` listener (port 0 picks a free one).
    #[arg(long, env = "JETMILL_METRICS_LISTEN", default_value = "127.0.0.1:0")]
    pub worker_metrics_listen: SocketAddr,
    /// nats-server binary (default: .tools/nats/bin/nats-server, then PATH).
    #[arg(long, env = "JETMILL_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// Run workers as child processes scaled with the queue, instead of one in-process
    /// worker (`--worker-metrics-listen` then serves the autoscaler's metrics).
    #[arg(long, env = "JETMILL_DEV_AUTOSCALE")]
    pub autoscale: bool,
    /// Fewest worker processes (with --autoscale).
    #[arg(long, env = "JETMILL_AUTOSCALE_MIN", default_value_t = 1)]
    pub autoscale_min: u32,
    /// Most worker processes (with --autoscale; default: the number of cores).
    #[arg(long, env = "JETMILL_AUTOSCALE_MAX")]
    pub autoscale_max: Option<u32>,
    #[command(flatten, next_help_heading = "Autoscaling (with --autoscale)")]
    pub policy: crate::autoscale::PolicyArgs,
}

/// Locate nats-server: the flag, the folder scripts/install-nats.sh fills, or PATH.
fn find_nats_server(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let local = PathBuf::from(".tools/nats/bin/nats-server");
    if local.is_file() {
        return Ok(local);
    }
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return Ok(p);
    }
    bail!("nats-server not found. Run scripts/install-nats.sh (installs nats-server 2.15 into .tools/nats), or pass --nats-server PATH")
}

/// A nats-server child that is terminated when dropped.
struct NatsChild {
    child: Child,
}

impl NatsChild {
    async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM lets JetStream flush; fall back to kill after a few seconds.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

async fn start_nats(args: &DevArgs) -> anyhow::Result<(NatsChild, String)> {
    let bin = find_nats_server(args.nats_server.as_deref())?;
    let store = args.dir.join("nats");
    std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
    let ports_dir = args.dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir)
        .with_context(|| format!("creating {}", ports_dir.display()))?;
    let log = std::fs::File::create(args.dir.join("nats-server.log"))
        .context("creating the nats-server log")?;
    let port = if args.nats_port == 0 {
        "-1".to_string()
    } else {
        args.nats_port.to_string()
    };
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
        .arg(&store)
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("log handle")?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut nats = NatsChild { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(url) = read_ports(&ports_dir) {
            return Ok((nats, url));
        }
        if let Ok(Some(status)) = nats.child.try_wait() {
            bail!(
                "nats-server exited ({status}); see {}. Is port {} in use? Try --nats-port 0",
                args.dir.join("nats-server.log").display(),
                args.nats_port
            );
        }
        if Instant::now() > deadline {
            nats.stop().await;
            bail!(
                "nats-server did not start within 20 s; see {}",
                args.dir.join("nats-server.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn read_ports(dir: &Path) -> Option<String> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
    Some(v["nats"][0].as_str()?.to_string())
}

/// Print where everything is.
fn banner(url: &str, metrics: &str, nats_url: &str, dir: &Path) {
    eprintln!();
    eprintln!("  jetmill dev is running (no authentication: loopback only)");
    eprintln!("  API:   {url}/v1/jobs");
    eprintln!("  metrics: {metrics}");
    eprintln!("  NATS:  {nats_url}   (data in {})", dir.display());
    eprintln!("  try:   curl -s -d '{{\"kind\":\"factorial\",\"input\":1000}}' {url}/v1/jobs");
    eprintln!("  stop:  Ctrl-C");
    eprintln!();
}

/// `--autoscale`: the gateway in process, the workers as scaled child processes.
async fn run_autoscaled(
    args: &DevArgs,
    nats_url: &str,
    app: Application,
    url: String,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use crate::autoscale::{self, local};
    let nats = jetmill_natsx::NatsArgs::with_url(nats_url);
    let jet = crate::control::connect(&nats).await?;
    let max = args.autoscale_max.unwrap_or_else(local::default_max);
    let mut policy = args.policy.clone();
    if policy.worker_concurrency.is_none() {
        policy.worker_concurrency = args.concurrency;
    }
    let backend = local::LocalBackend::new(local::LocalConfig::new(
        &nats,
        args.autoscale_min,
        max,
        &policy,
    )?)?;
    let metrics = std::sync::Arc::new(jetmill_metrics::Metrics::autoscaler());
    let autoscaler_metrics = autoscale::serve_metrics(
        args.worker_metrics_listen,
        metrics.clone(),
        shutdown.clone(),
    )
    .await
    .context("use --worker-metrics-listen to pick another address")?;
    let gateway = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    banner(
        &url,
        &format!("{url}/metrics (gateway)   {autoscaler_metrics} (autoscaler)"),
        nats_url,
        &args.dir,
    );
    eprintln!(
        "  autoscaling {}..{max} worker processes ({} slot(s) each)",
        args.autoscale_min,
        policy.worker_concurrency.unwrap_or(1)
    );
    eprintln!();
    let mut scaler = autoscale::Autoscaler::new(policy.clone(), metrics);
    // The loop ends on Ctrl-C or when the gateway stops on its own (an error).
    let stop_all = shutdown.clone();
    let gateway = async move {
        let r = gateway.await;
        stop_all.cancel();
        r
    };
    let scaling = async {
        autoscale::run_loop(&backend, &jet, &mut scaler, policy.interval, &shutdown).await;
        backend.stop_all().await;
    };
    let (g, ()) = tokio::join!(gateway, scaling);
    g.context("gateway task")?.context("gateway")?;
    Ok(())
}

/// Run nats-server, the gateway and a worker until Ctrl-C/SIGTERM, then stop them in order.
pub async fn run(args: DevArgs, log: jetmill_runtime::LogHandle) -> anyhow::Result<()> {
    let (mut nats, nats_url) = start_nats(&args).await?;
    let result = run_parts(&args, &nats_url, log).await;
    nats.stop().await;
    eprintln!("jetmill dev stopped");
    result
}

async fn run_parts(
    args: &DevArgs,
    nats_url: &str,
    log: jetmill_runtime::LogHandle,
) -> anyhow::Result<()> {
    let shutdown = jetmill_runtime::shutdown_token();
    let gateway_args = GatewayArgs::local(nats_url, args.listen)?;
    let app = Application::build(&gateway_args).await.with_context(|| {
        format!(
            "starting the gateway on {} (use --listen to pick another address)",
            args.listen
        )
    })?;
    let url = format!("http://{}", app.local_addr());
    if args.autoscale {
        return run_autoscaled(args, nats_url, app, url, shutdown).await;
    }
    let mut worker_args = WorkerArgs::local(nats_url)?;
    worker_args.concurrency = args.concurrency;
    let metrics_listener = jetmill_worker::observe::bind_metrics(args.worker_metrics_listen)
        .await
        .context("use --worker-metrics-listen to pick another address")?;
    let worker_metrics = format!(
        "http://{}/metrics",
        metrics_listener
            .local_addr()
            .context("reading the metrics address")?
    );

    let gateway = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let worker = tokio::spawn(jetmill_worker::run_with(
        worker_args,
        shutdown.clone(),
        log,
        Some(metrics_listener),
    ));
    banner(
        &url,
        &format!("{url}/metrics (gateway)   {worker_metrics} (worker)"),
        nats_url,
        &args.dir,
    );
    // If either part stops on its own (an error), stop the other too instead of
    // leaving half a system running.
    let stop_all = shutdown.clone();
    let gateway = async move {
        let r = gateway.await;
        stop_all.cancel();
        r
    };
    let stop_all = shutdown.clone();
    let worker = async move {
        let r = worker.await;
        stop_all.cancel();
        r
    };
    let (g, w) = tokio::join!(gateway, worker);
    g.context("gateway task")?.context("gateway")?;
    w.context("worker task")?.context("worker")?;
    Ok(())
}
