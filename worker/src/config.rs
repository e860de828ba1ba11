//! Worker configuration from flags and `JETMILL_*` environment variables.

use jetmill_natsx::{NatsArgs, QueueArgs};
use std::net::SocketAddr;

/// Everything a worker can be told at start.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Jobs run at once by this worker (default: the number of cores).
    #[arg(long, env = "JETMILL_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// This worker's id in records and reports (default: `<hostname>-<pid>`).
    #[arg(long = "worker-id", env = "JETMILL_WORKER_ID")]
    pub id: Option<String>,
    /// Results up to this many bytes stay inline in the record; larger go to the Object Store.
    #[arg(long, env = "JETMILL_INLINE_LIMIT", default_value_t = 64 * 1024)]
    pub inline_limit: usize,
    /// Per-attempt timeout in seconds for jobs that do not set one.
    #[arg(long, env = "JETMILL_DEFAULT_TIMEOUT_SECS", default_value_t = 3600.0, value_parser = jetmill_natsx::parse_secs)]
    pub default_timeout_secs: f64,
    /// First retry delay in milliseconds; doubles per attempt up to 60 s.
    #[arg(long, env = "JETMILL_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Memory this worker's jobs may use at once (e.g. `2G`, `512M`, bytes); default:
    /// its cgroup's memory limit (a swarm resource limit), else none. A job whose
    /// estimated peak does not fit waits for room or for a bigger worker; one no live
    /// worker can hold fails at once, saying so.
    #[arg(long, env = "JETMILL_MEMORY_BUDGET", value_parser = crate::memory::parse_bytes)]
    pub memory_budget: Option<u64>,
    /// On shutdown, seconds to let running jobs finish before handing them back.
    #[arg(long, env = "JETMILL_DRAIN_GRACE_SECS", default_value_t = 30.0, value_parser = jetmill_natsx::parse_secs)]
    pub drain_grace_secs: f64,
    /// Default failure injection: probability that an attempt fails (0 = off).
    #[arg(long, env = "JETMILL_CHAOS_FAIL_PROBABILITY", default_value_t = 0.0)]
    pub chaos_fail_probability: f64,
    /// Default failure injection: extra delay per attempt, `MS` or `MIN-MAX` milliseconds.
    #[arg(long, env = "JETMILL_CHAOS_DELAY_MS", value_parser = crate::chaos::parse_delay)]
    pub chaos_delay_ms: Option<(u64, u64)>,
    /// Default failure injection: fail by panicking inside the kernel thread.
    #[arg(long, env = "JETMILL_CHAOS_PANIC")]
    pub chaos_panic: bool,
    /// A job is recorded `running`, and its `started` event published, once its kernel
    /// has run this many milliseconds; quicker jobs' records go from pending straight
    /// to done and they store no `started` (a compare-and-set and an event fewer each;
    /// their next event carries `started_at_ms`). 0 records every start.
    #[arg(long, env = "JETMILL_RUNNING_AFTER_MS", default_value_t = 20)]
    pub running_after_ms: u64,
    /// Jobs past their kernel that may still be writing their result, event and ack;
    /// they no longer hold a slot, so a slot serves the next kernel meanwhile.
    #[arg(long, env = "JETMILL_FINISHING_LIMIT", default_value_t = 256)]
    pub finishing_limit: usize,
    /// Extra jobs a pull asks for beyond the free slots while kernels are quick
    /// (the last one took under 2 ms): they wait (at most 500 ms) for a slot instead of
    /// a fetch round trip each. Never used while kernels are slow, so big jobs are not
    /// hoarded; 0 turns it off.
    #[arg(long, env = "JETMILL_PREFETCH", default_value_t = 32)]
    pub prefetch: usize,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off when unset; port 0 picks one).
    #[arg(long, env = "JETMILL_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl WorkerArgs {
    /// Defaults for a worker talking to NATS at `nats_url` (tests, `jetmill dev`).
    ///
    /// `JETMILL_*` environment variables still apply; an invalid one is an error.
    pub fn local(nats_url: &str) -> Result<Self, clap::Error> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            w: WorkerArgs,
        }
        let mut w = P::try_parse_from(["worker"])?.w;
        w.nats = NatsArgs::with_url(nats_url);
        Ok(w)
    }

    /// The worker id: the flag, else `<hostname>-<pid>`.
    pub fn worker_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "worker".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Cores this process may use, read once: `available_parallelism` reads cgroup files
/// on every call, which cost ~9% of a small job's CPU when it was asked per job.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

impl WorkerArgs {
    /// The worker's default chaos settings, `None` when off.
    pub fn chaos(&self) -> Option<jetmill_proto::Chaos> {
        let p = self.chaos_fail_probability.clamp(0.0, 1.0);
        let (lo, hi) = self.chaos_delay_ms.unwrap_or((0, 0));
        let c = jetmill_proto::Chaos {
            fail_ppm: (p * f64::from(jetmill_proto::Chaos::PPM)).round() as u32,
            delay_min_ms: lo,
            delay_max_ms: hi,
            panic: self.chaos_panic,
        };
        c.is_active().then_some(c)
    }
}
