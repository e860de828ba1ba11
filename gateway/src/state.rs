//! What every handler shares: NATS handles, input limits, auth and options.

use crate::auth::Auth;
use jetmill_metrics::Metrics;
use jetmill_natsx::{Jet, JobIndex};
use jetmill_proto::{Limits, RuntimeConfig};
use std::sync::Arc;
use tokio::sync::watch;

/// Cheap to clone; one per gateway process.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Streams and buckets, provisioned at start.
    jet: Jet,
    /// Size limits applied to every submission.
    limits: Limits,
    /// This gateway's Prometheus metrics.
    metrics: Arc<Metrics>,
    /// Verifiers for bearer tokens (empty: auth off).
    auth: Auth,
    /// The latest runtime config (KV `config`), kept current by a watch.
    config: watch::Receiver<RuntimeConfig>,
    /// Behaviour switches from the command line.
    options: Options,
    /// The in-memory index of the job records: usage and quotas always read it,
    /// listings only when `list_from_index` (`--list-index`).
    index: JobIndex,
    /// Serve `GET /v1/jobs` from `index` (else scan the bucket per page).
    list_from_index: bool,
    /// The SSE fan-out from `EVENTS` (started by `Application::run_until_stopped`).
    feed: crate::feed::Feed,
    /// The last minutes of queue depth, throughput and workers (sampled from start).
    activity: crate::activity::Activity,
}

/// Gateway behaviour chosen at start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Answer identical computations from finished results.
    pub result_cache: bool,
    /// `Retry-After` seconds sent with 503 for a disabled kind.
    pub disabled_retry_after_secs: u64,
    /// Longest `?wait=` a long-poll may hold a request.
    pub max_wait: std::time::Duration,
    /// Most unfinished jobs one tenant may have (`None`: no per-tenant limit).
    pub max_in_flight_per_tenant: Option<u64>,
    /// `Retry-After` seconds sent with 429 when a queue limit is reached.
    pub busy_retry_after_secs: u64,
    /// Time between two samples of the activity chart.
    pub activity_interval: std::time::Duration,
    /// Time between two sweeps of expired workflows and batches (`None`: no sweep).
    pub sweep_interval: Option<std::time::Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            result_cache: true,
            disabled_retry_after_secs: 30,
            max_wait: std::time::Duration::from_secs(60),
            max_in_flight_per_tenant: None,
            busy_retry_after_secs: 5,
            activity_interval: std::time::Duration::from_secs(2),
            sweep_interval: Some(std::time::Duration::from_secs(600)),
        }
    }
}

impl AppState {
    /// Share `jet`, `limits`, `auth`, the followed runtime config, `options` and the
    /// job index (used for listings when `list_from_index`) with the handlers.
    pub fn new(
        jet: Jet,
        limits: Limits,
        auth: Auth,
        config: watch::Receiver<RuntimeConfig>,
        options: Options,
        index: JobIndex,
        list_from_index: bool,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                feed: crate::feed::Feed::new(jet.events.clone()),
                activity: crate::activity::Activity::new(options.activity_interval),
                jet,
                limits,
                auth,
                config,
                options,
                index,
                list_from_index,
                metrics: Arc::new(Metrics::gateway()),
            }),
        }
    }

    /// The runtime config as last seen (a cheap in-memory read).
    pub fn runtime_config(&self) -> RuntimeConfig {
        self.inner.config.borrow().clone()
    }

    /// Start-time behaviour switches.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// NATS handles.
    pub fn jet(&self) -> &Jet {
        &self.inner.jet
    }

    /// The live feeds (SSE) of this gateway.
    pub fn feed(&self) -> &crate::feed::Feed {
        &self.inner.feed
    }

    /// The activity history for the web page's chart.
    pub fn activity(&self) -> &crate::activity::Activity {
        &self.inner.activity
    }

    /// The job records index for listings, if listings use it (`--list-index`).
    pub fn list_index(&self) -> Option<&JobIndex> {
        self.inner.list_from_index.then_some(&self.inner.index)
    }

    /// The job records index (per-tenant counts for usage and quotas).
    pub fn index(&self) -> &JobIndex {
        &self.inner.index
    }

    /// This gateway's Prometheus metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Submission limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

impl AppState {
    /// Bearer token verification.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }
}
