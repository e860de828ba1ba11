//! The autoscaler's own metrics: what it wants, what runs, what it saw, what it did.
//!
//! Labelled by `service` (a swarm service name, or `local` for the local-process
//! backend) so one autoscaler can scale several services.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set `{service}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// The scaled service (`local` for the local-process backend).
    pub service: String,
}

/// Label set `{service, direction, reason}` of a decision.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The scaled service.
    pub service: String,
    /// `up`, `down` or `hold`.
    pub direction: String,
    /// Why (a small fixed set: `load`, `low_load`, `cooldown`, `stabilizing`, ...).
    pub reason: String,
}

/// Gauges and counters of the autoscaler.
#[derive(Default)]
pub struct AutoscaleMetrics {
    desired: Family<ServiceLabel, Gauge>,
    actual: Family<ServiceLabel, Gauge>,
    depth: Gauge,
    running: Gauge,
    slots: Gauge,
    decisions: Family<DecisionLabels, Counter>,
}

impl AutoscaleMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "jetmill_autoscale_desired_workers",
            "Workers the autoscaler last asked for, per service",
            self.desired.clone(),
        );
        r.register(
            "jetmill_autoscale_actual_workers",
            "Workers running (swarm: running tasks; local: live child processes), per service",
            self.actual.clone(),
        );
        r.register(
            "jetmill_autoscale_queue_depth",
            "Queue depth the autoscaler last read: the workers consumer's num_pending + num_ack_pending",
            self.depth.clone(),
        );
        r.register(
            "jetmill_autoscale_running_jobs",
            "Jobs running, summed over the live worker reports",
            self.running.clone(),
        );
        r.register(
            "jetmill_autoscale_slots",
            "Job slots, summed over the live worker reports",
            self.slots.clone(),
        );
        r.register(
            "jetmill_autoscale_decisions",
            "Decisions made, per service, direction (up, down, hold) and reason",
            self.decisions.clone(),
        );
    }

    /// Record what was read from NATS at one tick.
    pub fn observe(&self, depth: u64, running: u64, slots: u64) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.depth.set(g(depth));
        self.running.set(g(running));
        self.slots.set(g(slots));
    }

    /// Record one decision for `service`: desired and actual workers, and its count.
    pub fn decision(
        &self,
        service: &str,
        desired: u32,
        actual: u32,
        direction: &str,
        reason: &str,
    ) {
        let label = ServiceLabel {
            service: service.to_string(),
        };
        self.desired.get_or_create(&label).set(i64::from(desired));
        self.actual.get_or_create(&label).set(i64::from(actual));
        self.decisions
            .get_or_create(&DecisionLabels {
                service: service.to_string(),
                direction: direction.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Update the running count of `service` alone (between decisions).
    pub fn actual(&self, service: &str, actual: u32) {
        self.actual
            .get_or_create(&ServiceLabel {
                service: service.to_string(),
            })
            .set(i64::from(actual));
    }

    /// Forget a service that is no longer scaled (its labels were removed).
    pub fn forget(&self, service: &str) {
        let label = ServiceLabel {
            service: service.to_string(),
        };
        self.desired.remove(&label);
        self.actual.remove(&label);
    }
}
