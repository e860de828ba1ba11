//! The last minutes of activity: queue depth, jobs finished per second and live
//! workers, sampled by each gateway so the web page can chart a burst arriving and the
//! workers scaling without a metrics server.
//!
//! Every sample reads what is already cluster-wide: the `JOBS` stream's message count,
//! the job index's per-status totals (every gateway's index holds every record, so the
//! "finished" count is the whole system's) and the live worker reports. A gateway keeps
//! [`KEEP`] of history in memory; a restarted gateway starts an empty chart.

use crate::AppState;
use jetmill_natsx::control;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How much history a gateway keeps.
pub const KEEP: Duration = Duration::from_secs(10 * 60);

/// One point of the chart.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// Unix milliseconds of the sample.
    pub at_ms: i64,
    /// Messages in the `JOBS` stream: jobs queued, in flight, or parked.
    pub queue_depth: u64,
    /// Jobs that reached `done`, `failed` or `cancelled` per second since the previous
    /// sample (`null` for the first one).
    pub finished_per_sec: Option<f64>,
    /// Live workers (reports younger than the `workers` bucket's 10 s max age).
    pub workers: u64,
    /// Job slots of the live workers together.
    pub slots: u64,
    /// Jobs the live workers are computing now.
    pub running: u64,
}

/// Answer of `GET /v1/activity`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivityView {
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// Oldest first; at most the last 10 minutes.
    pub samples: Vec<Sample>,
}

/// The sampled history; cheap to clone, one per gateway.
#[derive(Clone)]
pub struct Activity {
    interval: Duration,
    ring: Arc<Mutex<Ring>>,
}

struct Ring {
    samples: VecDeque<Sample>,
    /// Finished count and time of the last sample, for the rate.
    last_finished: Option<(u64, i64)>,
}

impl Activity {
    /// History sampled every `interval` (at least 50 ms).
    pub fn new(interval: Duration) -> Self {
        Activity {
            interval: interval.max(Duration::from_millis(50)),
            ring: Arc::new(Mutex::new(Ring {
                samples: VecDeque::new(),
                last_finished: None,
            })),
        }
    }

    fn capacity(&self) -> usize {
        (KEEP.as_millis() / self.interval.as_millis().max(1)).clamp(2, 12_000) as usize
    }

    /// The samples so far, oldest first.
    pub fn view(&self) -> ActivityView {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ActivityView {
            interval_ms: self.interval.as_millis() as u64,
            samples: ring.samples.iter().cloned().collect(),
        }
    }

    /// Add a sample of `queue_depth`, the `finished` total and the worker `reports`.
    fn push(
        &self,
        at_ms: i64,
        queue_depth: u64,
        finished: u64,
        reports: &[jetmill_proto::WorkerReport],
    ) {
        let cap = self.capacity();
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let finished_per_sec = ring.last_finished.and_then(|(n, t)| {
            let secs = (at_ms - t) as f64 / 1000.0;
            // Deleted records lower the total: never chart a negative rate.
            (secs > 0.0).then(|| finished.saturating_sub(n) as f64 / secs)
        });
        ring.last_finished = Some((finished, at_ms));
        ring.samples.push_back(Sample {
            at_ms,
            queue_depth,
            finished_per_sec,
            workers: reports.len() as u64,
            slots: reports.iter().map(|r| r.concurrency as u64).sum(),
            running: reports.iter().map(|r| r.running as u64).sum(),
        });
        while ring.samples.len() > cap {
            ring.samples.pop_front();
        }
    }

    /// Sample every interval until `shutdown`. A sample whose reads fail is skipped
    /// (the chart shows a gap in time, not a wrong value).
    pub async fn run(self, state: AppState, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Stamp the sample and read the finished count at the tick, before the
            // broker round trips: samples stay an interval apart and the rate divides
            // a count by the time it was counted over.
            let at_ms = jetmill_proto::now_ms();
            let t = state.index().totals_now();
            let jet = state.jet();
            let depth = match jet.jobs.get_info().await {
                Ok(info) => info.state.messages,
                Err(e) => {
                    tracing::debug!(error = %e, "activity sample skipped: JOBS stream info");
                    continue;
                }
            };
            let reports = match control::workers(jet).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "activity sample skipped: worker reports");
                    continue;
                }
            };
            self.push(at_ms, depth, t.done + t.failed + t.cancelled, &reports);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(slots: usize, running: usize) -> jetmill_proto::WorkerReport {
        jetmill_proto::WorkerReport {
            id: "w".into(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            started_at_ms: 0,
            reported_at_ms: 0,
            concurrency: slots,
            running,
            done: 0,
            failed: 0,
            frozen: false,
            config_revision: 0,
            memory_budget: None,
        }
    }

    #[test]
    fn rates_come_from_the_finished_total_and_the_ring_keeps_ten_minutes() {
        let a = Activity::new(Duration::from_secs(60));
        a.push(0, 5, 100, &[report(2, 1), report(4, 4)]);
        a.push(2_000, 3, 110, &[report(2, 2)]);
        // Records deleted: the total went down; the rate is 0, not negative.
        a.push(4_000, 0, 90, &[]);
        let v = a.view();
        let rates: Vec<_> = v.samples.iter().map(|s| s.finished_per_sec).collect();
        assert_eq!(rates, vec![None, Some(5.0), Some(0.0)]);
        assert_eq!(
            (
                v.samples[0].workers,
                v.samples[0].slots,
                v.samples[0].running
            ),
            (2, 6, 5)
        );
        for i in 0..20 {
            a.push(6_000 + i * 1000, 0, 90, &[]);
        }
        // 10 minutes at one sample a minute.
        assert_eq!(a.view().samples.len(), 10);
        assert_eq!(a.view().samples.last().map(|s| s.at_ms), Some(25_000));
    }
}
