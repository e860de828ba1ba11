//! Gateway configuration from flags and `JETMILL_*` environment variables.

use crate::auth::AuthArgs;
use jetmill_natsx::{NatsArgs, QueueArgs};
use jetmill_proto::Limits;
use std::net::SocketAddr;

/// Everything the gateway can be told at start.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "JETMILL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "JETMILL_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Seconds before a request is abandoned with 408.
    #[arg(long, env = "JETMILL_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Answer a computation that already finished from its result, without queueing
    /// work (`--result-cache false` turns it off; clients can send `Cache-Control: no-cache`).
    #[arg(long, env = "JETMILL_RESULT_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub result_cache: bool,
    /// Serve `GET /v1/jobs` from the in-memory index of the job records that follows the
    /// `jobs` bucket (`--list-index false`: scan the bucket on every request instead; the
    /// index still runs, since usage and quotas are counted from it).
    #[arg(long, env = "JETMILL_LIST_INDEX", default_value_t = true, action = clap::ArgAction::Set)]
    pub list_index: bool,
    /// Seconds a listing waits for the index to apply every write made before it; a
    /// listing that waited this long (or finds the index down) scans the bucket instead.
    #[arg(long, env = "JETMILL_LIST_INDEX_WAIT_SECS", default_value_t = 2.0, value_parser = jetmill_natsx::parse_secs)]
    pub list_index_wait_secs: f64,
    /// `Retry-After` seconds sent with the 503 for a kind the operator disabled.
    #[arg(long, env = "JETMILL_DISABLED_RETRY_AFTER_SECS", default_value_t = 30)]
    pub disabled_retry_after_secs: u64,
    /// Milliseconds between two samples of the activity chart (`GET /v1/activity`:
    /// queue depth, jobs finished per second, live workers; 10 minutes are kept).
    #[arg(long, env = "JETMILL_ACTIVITY_INTERVAL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub activity_interval_ms: u64,
    /// Seconds between two sweeps that remove workflows and batches whose jobs all
    /// finished and expired (`--retention`); 0 turns the sweep off. Every gateway sweeps;
    /// a second one finds nothing left.
    #[arg(long, env = "JETMILL_SWEEP_INTERVAL_SECS", default_value_t = 600)]
    pub sweep_interval_secs: u64,
    /// Longest `GET /v1/jobs/{id}?wait=` long-poll, in seconds (longer waits are cut to it).
    #[arg(long, env = "JETMILL_MAX_WAIT_SECS", default_value_t = 60)]
    pub max_wait_secs: u64,
    /// Most unfinished (queued or running) jobs per tenant; 0 means no limit. Counted from
    /// the gateway's index of the job records (see `GET /v1/usage`), so a burst through
    /// several gateways can overshoot it by the records not yet applied (milliseconds).
    /// The overall limit is `--max-queued`.
    #[arg(long, env = "JETMILL_MAX_IN_FLIGHT_PER_TENANT", default_value_t = 0)]
    pub max_in_flight_per_tenant: u64,
    /// `Retry-After` seconds sent with a 429 (queue or tenant limit reached).
    #[arg(long, env = "JETMILL_BUSY_RETRY_AFTER_SECS", default_value_t = 5)]
    pub busy_retry_after_secs: u64,
    /// Largest n accepted for factorial.
    #[arg(long, env = "JETMILL_MAX_FACTORIAL_N", default_value_t = Limits::default().max_factorial_n)]
    pub max_factorial_n: u64,
    /// Largest n accepted for exact fibonacci.
    #[arg(long, env = "JETMILL_MAX_FIBONACCI_N", default_value_t = Limits::default().max_fibonacci_n)]
    pub max_fibonacci_n: u64,
}

impl GatewayArgs {
    /// Defaults for a gateway on `listen` talking to NATS at `nats_url` (tests, `jetmill dev`).
    ///
    /// `JETMILL_*` environment variables still apply; an invalid one is an error.
    pub fn local(nats_url: &str, listen: SocketAddr) -> Result<Self, clap::Error> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            g: GatewayArgs,
        }
        let mut g = P::try_parse_from(["gateway"])?.g;
        g.listen = listen;
        g.nats = NatsArgs::with_url(nats_url);
        Ok(g)
    }

    /// Behaviour switches from these flags.
    pub fn options(&self) -> crate::state::Options {
        crate::state::Options {
            result_cache: self.result_cache,
            disabled_retry_after_secs: self.disabled_retry_after_secs,
            max_wait: std::time::Duration::from_secs(self.max_wait_secs),
            max_in_flight_per_tenant: (self.max_in_flight_per_tenant > 0)
                .then_some(self.max_in_flight_per_tenant),
            busy_retry_after_secs: self.busy_retry_after_secs,
            activity_interval: std::time::Duration::from_millis(self.activity_interval_ms),
            sweep_interval: (self.sweep_interval_secs > 0)
                .then(|| std::time::Duration::from_secs(self.sweep_interval_secs)),
        }
    }

    /// The job index's settings from these flags.
    pub fn index_options(&self) -> jetmill_natsx::IndexOptions {
        let default = jetmill_natsx::IndexOptions::default();
        jetmill_natsx::IndexOptions {
            barrier_timeout: std::time::Duration::try_from_secs_f64(self.list_index_wait_secs)
                .unwrap_or(default.barrier_timeout),
        }
    }

    /// Input limits from these flags.
    pub fn limits(&self) -> Limits {
        Limits {
            max_factorial_n: self.max_factorial_n,
            max_fibonacci_n: self.max_fibonacci_n,
            ..Limits::default()
        }
    }
}
