//! Job metrics: submitted, finished by outcome, retries, redeliveries, dead letters,
//! queue wait and run time, in-flight jobs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Label set `{kind}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Job kind (`factorial`, `fibonacci`, `sum`): a handful of values.
    pub kind: &'static str,
}

/// Label set `{kind, outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Job kind.
    pub kind: &'static str,
    /// How the job ended ([`Outcome::as_str`]).
    pub outcome: &'static str,
}

/// How a job ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished with a result.
    Done,
    /// Failed on its last attempt (dead-lettered).
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn queue_wait_buckets() -> Histogram {
    // 5 ms .. ~22 min, x4 per bucket.
    Histogram::new(exponential_buckets(0.005, 4.0, 10))
}

fn run_buckets() -> Histogram {
    // 1 ms .. ~70 min, x4 per bucket.
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

/// Job counters and histograms. Cheap to update from any task.
pub struct JobMetrics {
    submitted: Family<KindLabel, Counter>,
    finished: Family<OutcomeLabels, Counter>,
    retries: Family<KindLabel, Counter>,
    redeliveries: Family<KindLabel, Counter>,
    dead_lettered: Family<KindLabel, Counter>,
    queue_wait: HistogramFamily<KindLabel>,
    run_duration: HistogramFamily<KindLabel>,
    in_flight: Gauge,
}

impl Default for JobMetrics {
    fn default() -> Self {
        JobMetrics {
            submitted: Family::default(),
            finished: Family::default(),
            retries: Family::default(),
            redeliveries: Family::default(),
            dead_lettered: Family::default(),
            queue_wait: Family::new_with_constructor(queue_wait_buckets),
            run_duration: Family::new_with_constructor(run_buckets),
            in_flight: Gauge::default(),
        }
    }
}

impl JobMetrics {
    /// Register what the gateway counts.
    pub(crate) fn register_gateway(&self, r: &mut Registry) {
        r.register(
            "jetmill_jobs_submitted",
            "Jobs accepted (committed to JetStream) by the gateway",
            self.submitted.clone(),
        );
    }

    /// Register what a worker counts.
    pub(crate) fn register_worker(&self, r: &mut Registry) {
        r.register(
            "jetmill_jobs_finished",
            "Jobs that reached a final state on this worker, by outcome (done, failed, cancelled)",
            self.finished.clone(),
        );
        r.register(
            "jetmill_job_retries",
            "Failed attempts that will be retried",
            self.retries.clone(),
        );
        r.register(
            "jetmill_job_redeliveries",
            "Deliveries of a job after its first (retries, expired ack waits, hand-backs)",
            self.redeliveries.clone(),
        );
        r.register(
            "jetmill_jobs_dead_lettered",
            "Jobs failed for good after their last attempt (message terminated)",
            self.dead_lettered.clone(),
        );
        r.register(
            "jetmill_job_queue_wait_seconds",
            "Time from submission to the start of an attempt",
            self.queue_wait.clone(),
        );
        r.register(
            "jetmill_job_run_duration_seconds",
            "Time an attempt spent computing (kernel run, whatever its end)",
            self.run_duration.clone(),
        );
        r.register(
            "jetmill_jobs_in_flight",
            "Jobs this worker is running now",
            self.in_flight.clone(),
        );
    }

    /// A job of `kind` was accepted.
    pub fn submitted(&self, kind: &'static str) {
        self.submitted.get_or_create(&KindLabel { kind }).inc();
    }

    /// A job of `kind` ended for good with `outcome`.
    pub fn finished(&self, kind: &'static str, outcome: Outcome) {
        let labels = OutcomeLabels {
            kind,
            outcome: outcome.as_str(),
        };
        self.finished.get_or_create(&labels).inc();
        if outcome == Outcome::Failed {
            self.dead_lettered.get_or_create(&KindLabel { kind }).inc();
        }
    }

    /// A failed attempt of `kind` will be retried.
    pub fn retried(&self, kind: &'static str) {
        self.retries.get_or_create(&KindLabel { kind }).inc();
    }

    /// An attempt started: record its queue wait, and count it as a redelivery
    /// when it is not the first delivery. Returns a guard that counts it in flight.
    pub fn started(&self, kind: &'static str, delivery: u32, waited: Duration) -> InFlight {
        let labels = KindLabel { kind };
        if delivery > 1 {
            self.redeliveries.get_or_create(&labels).inc();
        }
        self.queue_wait
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// An attempt of `kind` computed for `took`.
    pub fn ran(&self, kind: &'static str, took: Duration) {
        self.run_duration
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }
}

/// Counts one attempt in `jetmill_jobs_in_flight` until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
