//! The local-process backend: `jetmill worker` child processes of this process.
//!
//! Growing spawns `current_exe() worker --server URL`; shrinking sends the newest
//! child SIGTERM (the worker stops fetching, finishes or hands back its jobs, and
//! exits) and kills it only if it has not exited within the drain timeout. Used by
//! `jetmill dev --autoscale` and `jetmill autoscale --backend local`.

use super::{Backend, PolicyArgs, Target};
use anyhow::Context;
use jetmill_natsx::NatsArgs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// The target name of the local backend (the `service` metric label).
pub const TARGET: &str = "local";

/// The default maximum: one worker process per core.
pub fn default_max() -> u32 {
    u32::try_from(jetmill_worker::config::cores())
        .unwrap_or(1)
        .max(1)
}

/// How the local workers are started and stopped.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `jetmill` binary (this one).
    pub exe: PathBuf,
    /// How the workers reach NATS.
    pub nats: NatsArgs,
    /// Extra `jetmill worker` flags.
    pub worker_flags: Vec<String>,
    pub min: u32,
    pub max: u32,
    /// How long a stopped worker may drain before it is killed.
    pub drain_timeout: Duration,
}

impl LocalConfig {
    /// Workers of this binary on `nats`, between `min` and `max`, tuned by `policy`.
    pub fn new(nats: &NatsArgs, min: u32, max: u32, policy: &PolicyArgs) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the jetmill binary to run workers")?;
        let slots = policy.worker_concurrency.unwrap_or(1);
        Ok(LocalConfig {
            exe,
            nats: nats.clone(),
            worker_flags: vec!["--concurrency".into(), slots.to_string()],
            min,
            max,
            drain_timeout: policy.drain_timeout,
        })
    }
}

/// Worker child processes, grown and shrunk on request.
pub struct LocalBackend {
    config: LocalConfig,
    /// Live workers, oldest first.
    children: Mutex<Vec<Child>>,
    /// Workers told to stop, waited for (and killed past the drain timeout).
    draining: Mutex<JoinSet<()>>,
}

impl LocalBackend {
    /// A backend with no workers yet (the first tick raises them to the minimum).
    pub fn new(config: LocalConfig) -> anyhow::Result<Self> {
        if config.max == 0 || config.min > config.max {
            anyhow::bail!(
                "autoscale bounds: need 0 <= min <= max and max >= 1 (got min {}, max {})",
                config.min,
                config.max
            );
        }
        Ok(LocalBackend {
            config,
            children: Mutex::new(Vec::new()),
            draining: Mutex::new(JoinSet::new()),
        })
    }

    fn spawn_worker(&self) -> anyhow::Result<Child> {
        let c = &self.config;
        let mut cmd = Command::new(&c.exe);
        cmd.arg("worker")
            .arg("--server")
            .arg(&c.nats.url)
            .args(&c.worker_flags);
        if let Some(creds) = &c.nats.creds {
            cmd.arg("--creds").arg(creds);
        }
        // Through the environment, so the password is not on a command line.
        if let Some(user) = &c.nats.user {
            cmd.env("JETMILL_NATS_USER", user);
        }
        if let Some(password) = &c.nats.password {
            cmd.env("JETMILL_NATS_PASSWORD", password);
        }
        if let Some(file) = &c.nats.password_file {
            cmd.env("JETMILL_NATS_PASSWORD_FILE", file);
        }
        let child = cmd
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} worker", c.exe.display()))?;
        tracing::info!(pid = child.id(), "autoscale: started a worker process");
        Ok(child)
    }

    /// Forget children that exited on their own (logged), and count the rest.
    fn reap(children: &mut Vec<Child>) {
        children.retain_mut(|child| match child.try_wait() {
            Ok(Some(status)) => {
                tracing::warn!(%status, "autoscale: a worker process exited on its own");
                false
            }
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(error = %e, "autoscale: cannot poll a worker process; dropping it");
                false
            }
        });
    }

    /// Stop every worker (SIGTERM, then kill past the drain timeout) and wait for them.
    pub async fn stop_all(&self) {
        let children: Vec<Child> = std::mem::take(&mut *self.children.lock().await);
        let n = children.len();
        {
            let mut draining = self.draining.lock().await;
            for child in children {
                draining.spawn(drain(child, self.config.drain_timeout));
            }
        }
        let mut draining = std::mem::take(&mut *self.draining.lock().await);
        while draining.join_next().await.is_some() {}
        tracing::info!(workers = n, "autoscale: stopped every worker process");
    }
}

/// SIGTERM `child`, wait up to `timeout` for it to exit, then kill it.
async fn drain(mut child: Child, timeout: Duration) {
    let Some(pid) = child.id() else {
        return;
    };
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    if !matches!(&sent, Ok(s) if s.success()) {
        tracing::warn!(pid, "autoscale: SIGTERM failed; killing the worker");
        let _ = child.kill().await;
        return;
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(pid, %status, "autoscale: worker process stopped"),
        Ok(Err(e)) => tracing::warn!(pid, error = %e, "autoscale: waiting for a worker failed"),
        Err(_) => {
            tracing::warn!(
                pid,
                ?timeout,
                "autoscale: worker did not drain in time; killing it"
            );
            let _ = child.kill().await;
        }
    }
}

impl Backend for LocalBackend {
    async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let mut children = self.children.lock().await;
        Self::reap(&mut children);
        // Finished drains leave the set.
        let mut draining = self.draining.lock().await;
        while draining.try_join_next().is_some() {}
        let n = u32::try_from(children.len()).unwrap_or(u32::MAX);
        Ok(vec![Target {
            name: TARGET.into(),
            min: self.config.min,
            max: self.config.max,
            replicas: n,
            running: n,
        }])
    }

    async fn scale(&self, _target: &Target, replicas: u32) -> anyhow::Result<()> {
        let want = replicas as usize;
        let mut children = self.children.lock().await;
        while children.len() < want {
            children.push(self.spawn_worker()?);
        }
        if children.len() > want {
            let mut draining = self.draining.lock().await;
            // The newest go first: the oldest have warmed up.
            for child in children.drain(want..) {
                draining.spawn(drain(child, self.config.drain_timeout));
            }
        }
        Ok(())
    }
}
