//! Prometheus metrics of jetmill, in the OpenMetrics text format.
//!
//! One [`Metrics`] per process (never a global), built for its role:
//! [`Metrics::gateway`] (submissions, HTTP, queue gauges read from JetStream at
//! scrape time) or [`Metrics::worker`] (attempts, outcomes, durations, in-flight).
//!
//! - [`jobs`]: job counters and histograms, labelled by kind (and outcome).
//! - [`http`]: request counts and latencies by route template, method and status,
//!   and the axum middleware that records them.
//! - [`queue`]: queue depth and pending acks per consumer, read from JetStream.
//! - [`list`]: listing pages by source (the gateway's index, or a bucket scan).
//! - [`store`]: JetStream storage used, its limit, and whether writes are refused.
//! - [`autoscale`]: the autoscaler's desired/actual workers, inputs and decisions.
//! - [`serve`](mod@serve): encoding and the worker's small `/metrics` listener.
//!
//! Labels are bounded: a job kind, an outcome, a route template, a method, a status,
//! a stream or consumer name. Never a job id.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: typed label
//! sets, no global registry (so tests can run several instances in one process).

pub mod autoscale;
pub mod http;
pub mod jobs;
pub mod list;
pub mod queue;
pub mod serve;
pub mod store;

pub use jobs::{JobMetrics, Outcome};
pub use list::{ListMetrics, ListSource};
pub use serve::{encode, serve, CONTENT_TYPE};

use prometheus_client::registry::Registry;

/// The metrics of one process and the registry that exposes them.
pub struct Metrics {
    /// What `/metrics` encodes: only the families this role registered.
    registry: Registry,
    /// Job counters and histograms.
    pub jobs: JobMetrics,
    /// HTTP request metrics (gateway).
    pub http: http::HttpMetrics,
    /// Queue gauges read from JetStream (gateway).
    pub queue: queue::QueueGauges,
    /// Listing pages by source (gateway).
    pub list: list::ListMetrics,
    /// JetStream storage use and fullness (gateway).
    pub store: store::StoreGauges,
    /// Desired/actual workers and decisions (autoscaler).
    pub autoscale: autoscale::AutoscaleMetrics,
}

impl Metrics {
    /// The gateway's metrics: submissions, HTTP requests, queue gauges.
    pub fn gateway() -> Self {
        let mut m = Self::unregistered();
        m.jobs.register_gateway(&mut m.registry);
        m.http.register(&mut m.registry);
        m.queue.register(&mut m.registry);
        m.list.register(&mut m.registry);
        m.store.register(&mut m.registry);
        m
    }

    /// A worker's metrics: attempts, outcomes, durations, in-flight jobs.
    pub fn worker() -> Self {
        let mut m = Self::unregistered();
        m.jobs.register_worker(&mut m.registry);
        m
    }

    /// The autoscaler's metrics: desired and actual workers, its inputs, its decisions.
    pub fn autoscaler() -> Self {
        let mut m = Self::unregistered();
        m.autoscale.register(&mut m.registry);
        m
    }

    fn unregistered() -> Self {
        Metrics {
            registry: Registry::default(),
            jobs: JobMetrics::default(),
            http: http::HttpMetrics::default(),
            queue: queue::QueueGauges::default(),
            list: list::ListMetrics::default(),
            store: store::StoreGauges::default(),
            autoscale: autoscale::AutoscaleMetrics::default(),
        }
    }

    /// The registry (for encoding).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
