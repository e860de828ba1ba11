//! The run-limit gate: before a job's kernel starts, take its place and its start
//! under every limit that covers it, cluster-wide, in KV `limits`.
//!
//! A job that must wait is handed back with a delay (not an attempt): it stays queued,
//! in order with nothing, and never fails for it. Under a rate the delay is the time
//! to its start; under a full `max_running` it grows with the job's deliveries (0.2 s
//! doubling to 2 s, jittered), since nobody can say when a place frees. A scope found
//! full or too soon is remembered briefly, so the jobs of a long backlog are handed
//! back without a KV read each. Places are leases the worker renews every
//! [`RENEW_EVERY`]; a worker that died frees them within [`LEASE`]. Jobs no limit
//! covers pay nothing: the gate is a scan of the (usually empty) configured list.

use crate::context::WorkerCtx;
use jetmill_natsx::{limits, NatsxError};
use jetmill_proto::limit::{LEASE, RENEW_EVERY};
use jetmill_proto::{Decision, JobMessage, RunLimit};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a scope found full is taken as full without asking again.
const FULL_MEMORY: Duration = Duration::from_millis(100);

/// The configured limits and the places this worker holds.
#[derive(Default)]
pub struct Gate {
    limits: RwLock<Arc<Vec<RunLimit>>>,
    /// Scope key -> ids of this worker's jobs holding a place there (renewed).
    held: Mutex<HashMap<String, HashSet<String>>>,
    /// Scope key -> until when it is known full or too soon, and the rate's interval
    /// (ms) when too soon.
    closed: Mutex<HashMap<String, (Instant, Option<f64>)>>,
    /// What this worker last read or wrote at each scope key (saves a read per change).
    known: limits::Known,
}

/// What the gate says about one delivery.
pub enum Admission {
    /// Run it; the places are given back when this is dropped.
    Go(Places),
    /// Hand it back for this long.
    Wait(Duration),
    /// KV `limits` could not be read or written.
    Unknown(NatsxError),
}

/// The places one job holds; dropping gives them back (also after a panic).
pub struct Places {
    ctx: Option<Arc<WorkerCtx>>,
    job: String,
    keys: Vec<String>,
}

impl Places {
    fn none() -> Places {
        Places {
            ctx: None,
            job: String::new(),
            keys: Vec::new(),
        }
    }
}

impl Places {
    /// Give the places back now (the attempt's end waits for it, so a draining worker
    /// frees its places before it exits).
    pub async fn release(mut self) {
        if let Some((ctx, keys, job)) = self.take() {
            give_back(&ctx, &keys, &job).await;
        }
    }

    /// Take the places out of `self` (once) and stop renewing them.
    fn take(&mut self) -> Option<(Arc<WorkerCtx>, Vec<String>, String)> {
        let ctx = self.ctx.take()?;
        let keys = std::mem::take(&mut self.keys);
        let job = std::mem::take(&mut self.job);
        ctx.gate.forget(&keys, &job);
        Some((ctx, keys, job))
    }
}

/// Dropped without [`Places::release`] (the attempt panicked): given back on a task.
impl Drop for Places {
    fn drop(&mut self) {
        let Some((ctx, keys, job)) = self.take() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { give_back(&ctx, &keys, &job).await });
        }
    }
}

/// Release `job`'s places at `keys`; one that cannot be released lapses within [`LEASE`].
async fn give_back(ctx: &WorkerCtx, keys: &[String], job: &str) {
    for key in keys {
        match limits::release(&ctx.jet.limits, &ctx.gate.known, key, job).await {
            Ok(()) => ctx.gate.reopen(key),
            Err(e) => {
                tracing::warn!(key, job, error = %e, "cannot give back a run-limit place; it lapses within {LEASE:?}")
            }
        }
    }
}

impl Gate {
    /// Apply the configured limits (the controller's `jetmill limits`).
    pub fn set(&self, limits: Vec<RunLimit>) {
        if let Ok(mut l) = self.limits.write() {
            if **l != limits {
                *l = Arc::new(limits);
                // What was full under the old limits may not be under the new ones.
                if let Ok(mut c) = self.closed.lock() {
                    c.clear();
                }
            }
        }
    }

    fn current(&self) -> Arc<Vec<RunLimit>> {
        self.limits
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// How long a delivery waits when `key` is known closed (`None`: ask KV).
    fn closed_for(&self, key: &str, delivered: u32) -> Option<Duration> {
        let closed = self.closed.lock().ok()?;
        let (until, rate) = *closed.get(key)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(match rate {
            Some(interval_ms) => left + spread(interval_ms),
            None => full_wait(delivered),
        })
    }

    fn close(&self, key: &str, for_: Duration, rate: Option<f64>) {
        if let Ok(mut c) = self.closed.lock() {
            c.insert(key.to_string(), (Instant::now() + for_, rate));
        }
    }

    fn reopen(&self, key: &str) {
        if let Ok(mut c) = self.closed.lock() {
            c.remove(key);
        }
    }

    fn hold(&self, key: &str, job: &str) {
        if let Ok(mut h) = self.held.lock() {
            h.entry(key.to_string())
                .or_default()
                .insert(job.to_string());
        }
    }

    fn forget(&self, keys: &[String], job: &str) {
        if let Ok(mut h) = self.held.lock() {
            for key in keys {
                if let Some(jobs) = h.get_mut(key) {
                    jobs.remove(job);
                    if jobs.is_empty() {
                        h.remove(key);
                    }
                }
            }
        }
    }

    fn held(&self) -> Vec<(String, Vec<String>)> {
        self.held
            .lock()
            .map(|h| {
                h.iter()
                    .map(|(k, jobs)| (k.clone(), jobs.iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How long a job waits for a place under a full `max_running`, by its delivery count.
fn full_wait(delivered: u32) -> Duration {
    let base = 200u64 << delivered.saturating_sub(1).min(4);
    let ms = base.min(2000);
    Duration::from_millis(fastrand::u64(ms / 2..=ms))
}

/// A random part of a rate's interval (at most 1 s): the jobs waiting for a start
/// come back spread over it, not all at its beginning.
fn spread(interval_ms: f64) -> Duration {
    Duration::from_secs_f64(fastrand::f64() * interval_ms.clamp(1.0, 1000.0) / 1000.0)
}

/// Take `job`'s places under every limit that covers it, in key order; if one must
/// wait, the places already taken are given back (a start already spent under a rate
/// stays spent: limits err toward fewer starts, never more).
pub async fn admit(ctx: &Arc<WorkerCtx>, job: &JobMessage, delivered: u32) -> Admission {
    let configured = ctx.gate.current();
    if configured.is_empty() {
        return Admission::Go(Places::none());
    }
    let kind = job.spec.kind();
    let mut covering: Vec<(String, &RunLimit)> = configured
        .iter()
        .filter_map(|l| l.key_for(kind, &job.tenant).map(|k| (k, l)))
        .collect();
    if covering.is_empty() {
        return Admission::Go(Places::none());
    }
    covering.sort_by(|a, b| a.0.cmp(&b.0));
    // A scope known closed: wait without asking.
    for (key, _) in &covering {
        if let Some(wait) = ctx.gate.closed_for(key, delivered) {
            return Admission::Wait(wait);
        }
    }
    let id = job.id.to_string();
    let mut places = Places {
        ctx: Some(ctx.clone()),
        job: id.clone(),
        keys: Vec::new(),
    };
    for (key, limit) in &covering {
        match limits::admit(
            &ctx.jet.limits,
            &ctx.gate.known,
            key,
            limit,
            &id,
            &ctx.worker_id,
        )
        .await
        {
            Ok(Decision::Admit) => {
                if limit.max_running.is_some() {
                    ctx.gate.hold(key, &id);
                    places.keys.push(key.clone());
                }
            }
            Ok(Decision::Full) => {
                ctx.gate.close(key, FULL_MEMORY, None);
                return Admission::Wait(full_wait(delivered));
            }
            Ok(Decision::TooSoon { wait_ms }) => {
                let wait = Duration::from_secs_f64(wait_ms.max(1.0) / 1000.0);
                let interval = limit.rate.map(|r| r.interval_ms()).unwrap_or(1.0);
                ctx.gate.close(key, wait, Some(interval));
                return Admission::Wait(wait + spread(interval));
            }
            Err(e) => return Admission::Unknown(e),
        }
    }
    Admission::Go(places)
}

/// Renew this worker's places every [`RENEW_EVERY`] until `stop`.
pub async fn renew(ctx: Arc<WorkerCtx>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (key, jobs) in ctx.gate.held() {
            if let Err(e) = limits::renew(
                &ctx.jet.limits,
                &ctx.gate.known,
                &key,
                &ctx.worker_id,
                &jobs,
            )
            .await
            {
                tracing::warn!(key, error = %e, "cannot renew run-limit places; they lapse within {LEASE:?} unless the next renewal succeeds");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_place_grow_and_stay_bounded() {
        for d in 1..20 {
            let w = full_wait(d);
            assert!(
                w >= Duration::from_millis(100) && w <= Duration::from_secs(2),
                "{d}: {w:?}"
            );
        }
        assert!(full_wait(1) <= Duration::from_millis(200));
        assert!(full_wait(10) >= Duration::from_secs(1));
    }
}
