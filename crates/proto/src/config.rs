//! Runtime configuration (KV `config`) and worker self-reports (KV `workers`).
//!
//! The controller writes the desired state; every worker watches it, applies it
//! live, and reports the KV revision it applied, so the controller knows who did.

use crate::{Chaos, JobKind, RunLimit};
use serde::{Deserialize, Serialize};

/// Key of the configuration every worker applies.
pub const GLOBAL_KEY: &str = "global";

/// Key of one worker's overrides.
pub fn worker_key(worker_id: &str) -> String {
    format!("worker.{}", kv_safe(worker_id))
}

/// Key of a worker's report in the `workers` bucket.
pub fn report_key(worker_id: &str) -> String {
    kv_safe(worker_id)
}

/// Map characters KV keys do not allow to `_`.
pub fn kv_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Desired runtime settings. Every field is optional: in the global key `None`
/// means "the worker's own default"; in a worker key it means "as global".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Stop fetching new jobs (running ones finish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<bool>,
    /// Job slots per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Log filter, e.g. `info,jetmill_worker=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Kinds the gateway refuses and workers do not take (global only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_kinds: Vec<JobKind>,
    /// Default failure injection for jobs without their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<Chaos>,
    /// Cluster-wide run limits per kind and/or tenant (global only; see `limit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<RunLimit>,
}

impl RuntimeConfig {
    /// `self` with the fields `over` sets replaced (a worker's overrides on the global config).
    pub fn merged(&self, over: &RuntimeConfig) -> RuntimeConfig {
        RuntimeConfig {
            frozen: over.frozen.or(self.frozen),
            concurrency: over.concurrency.or(self.concurrency),
            log_level: over.log_level.clone().or_else(|| self.log_level.clone()),
            disabled_kinds: self.disabled_kinds.clone(),
            chaos: over.chaos.or(self.chaos),
            limits: self.limits.clone(),
        }
    }

    /// Whether jobs of `kind` are accepted and run.
    pub fn kind_enabled(&self, kind: JobKind) -> bool {
        !self.disabled_kinds.contains(&kind)
    }
}

/// What a live worker says about itself, refreshed every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerReport {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Unix milliseconds when the worker started.
    pub started_at_ms: i64,
    /// Unix milliseconds of this report.
    pub reported_at_ms: i64,
    pub concurrency: usize,
    pub running: usize,
    pub done: u64,
    pub failed: u64,
    pub frozen: bool,
    /// The highest `config` bucket revision this worker has applied (0: none yet).
    pub config_revision: u64,
    /// Memory its jobs may use at once, bytes (`--memory-budget` or its cgroup limit);
    /// absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_overrides_win_and_kinds_stay_global() {
        let global = RuntimeConfig {
            frozen: Some(true),
            concurrency: Some(4),
            disabled_kinds: vec![JobKind::Sum],
            ..Default::default()
        };
        let over = RuntimeConfig {
            concurrency: Some(1),
            disabled_kinds: vec![JobKind::Factorial],
            ..Default::default()
        };
        let m = global.merged(&over);
        assert_eq!(m.frozen, Some(true));
        assert_eq!(m.concurrency, Some(1));
        assert_eq!(m.disabled_kinds, vec![JobKind::Sum]);
        assert!(!m.kind_enabled(JobKind::Sum) && m.kind_enabled(JobKind::Factorial));
        assert_eq!(worker_key("host.1:2"), "worker.host_1_2");
    }
}
