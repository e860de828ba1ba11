//! [`WorkerCtx`]: what every actor of one worker shares.

use crate::config::{cores, WorkerArgs};
use jetmill_metrics::Metrics;
use jetmill_natsx::Jet;
use jetmill_proto::{Chaos, JobId, JobKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Shared by the fetcher and every job's task in one worker process.
pub struct WorkerCtx {
    /// NATS handles.
    pub jet: Jet,
    /// Shown in records, events and reports.
    pub worker_id: String,
    /// Results up to this size stay inline in the record.
    pub inline_limit: usize,
    /// Per-attempt timeout when the job sets none.
    pub default_timeout: Duration,
    /// First retry delay (doubles per attempt).
    pub retry_base: Duration,
    /// Attempts a job gets at most (`--max-deliver`; a job's `max_attempts` may lower
    /// it). Counted in the record, not by JetStream: hand-backs do not count.
    pub max_attempts: u32,
    /// Free job slots; a job holds one from delivery to the end of its kernel
    /// (or of its result upload, for results too big for the record).
    pub slots: Arc<Semaphore>,
    /// Room for jobs in flight after their slot (writing result, event, ack).
    pub finishing: Arc<Semaphore>,
    /// Capacity of `finishing`.
    finishing_limit: usize,
    /// See `WorkerArgs::running_after_ms`.
    pub running_after: Duration,
    /// See `WorkerArgs::prefetch`.
    pub prefetch: usize,
    /// How long the last kernel ran, in microseconds (`u64::MAX` before the first).
    last_kernel_us: AtomicU64,
    /// Configured slot count (changed live by the controller).
    concurrency: AtomicUsize,
    /// Slots held by jobs now (see [`Slot`]).
    busy: Arc<AtomicUsize>,
    /// The worker's own concurrency (flag or cores), used when the config sets none.
    pub default_concurrency: usize,
    /// Frozen: the pull loop stops asking for jobs (running ones finish).
    pub frozen: watch::Sender<bool>,
    /// True while the pull loop has no pull request open (not started yet, or frozen).
    pub parked: watch::Sender<bool>,
    /// The highest config revision applied.
    pub config_revision: AtomicU64,
    /// Changes the log filter live.
    pub log: jetmill_runtime::LogHandle,
    /// Unix milliseconds when this worker started.
    pub started_at_ms: i64,
    /// The worker's own chaos flags (used when the config sets none).
    pub default_chaos: Option<Chaos>,
    /// Kinds the controller disabled: their jobs are parked, not run.
    pub disabled_kinds: RwLock<Vec<JobKind>>,
    /// Cluster-wide run limits and the places this worker's jobs hold.
    pub gate: crate::limits::Gate,
    /// Failure injection for jobs that do not set their own (normally `None`).
    pub chaos: RwLock<Option<Chaos>>,
    /// Cancel flags of running jobs, for drain and cancel broadcasts.
    running: Mutex<HashMap<JobId, Arc<AtomicBool>>>,
    /// Jobs finished (done) by this worker.
    pub done: AtomicU64,
    /// Attempts that failed on this worker.
    pub failed: AtomicU64,
    /// Prometheus metrics of this worker.
    pub metrics: Arc<Metrics>,
    /// Workflows whose steps ran here lately (stored once, never changed).
    pub workflows: crate::workflow::Cache,
    /// Workflow gate marks of this worker, written together per gate.
    pub gates: jetmill_natsx::workflows::Gates,
    /// Memory the jobs of this worker may use at once (see `memory`); `None`: no limit.
    pub memory_budget: Option<u64>,
    /// Estimated peak memory of the jobs running now.
    pub reserved: AtomicU64,
}

impl WorkerCtx {
    /// Build the context from the worker's flags.
    pub fn new(jet: Jet, args: &WorkerArgs, log: jetmill_runtime::LogHandle) -> Self {
        let concurrency = args.concurrency.unwrap_or_else(cores).max(1);
        WorkerCtx {
            jet,
            worker_id: args.worker_id(),
            inline_limit: args.inline_limit,
            default_timeout: Duration::from_secs_f64(args.default_timeout_secs.max(0.001)),
            retry_base: Duration::from_millis(args.retry_base_ms),
            max_attempts: u32::try_from(args.queue.max_deliver.max(1)).unwrap_or(u32::MAX),
            slots: Arc::new(Semaphore::new(concurrency)),
            finishing: Arc::new(Semaphore::new(args.finishing_limit.max(1))),
            finishing_limit: args.finishing_limit.max(1),
            running_after: Duration::from_millis(args.running_after_ms),
            prefetch: args.prefetch,
            last_kernel_us: AtomicU64::new(u64::MAX),
            concurrency: AtomicUsize::new(concurrency),
            busy: Arc::new(AtomicUsize::new(0)),
            default_concurrency: concurrency,
            frozen: watch::Sender::new(false),
            // No pull request is open until the pull loop starts.
            parked: watch::Sender::new(true),
            config_revision: AtomicU64::new(0),
            log,
            started_at_ms: jetmill_proto::now_ms(),
            default_chaos: args.chaos(),
            chaos: RwLock::new(args.chaos()),
            disabled_kinds: RwLock::new(Vec::new()),
            gate: crate::limits::Gate::default(),
            running: Mutex::new(HashMap::new()),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            metrics: Arc::new(Metrics::worker()),
            workflows: crate::workflow::Cache::default(),
            gates: Default::default(),
            memory_budget: crate::memory::budget(args.memory_budget),
            reserved: AtomicU64::new(0),
        }
    }

    /// Configured slot count.
    pub fn concurrency(&self) -> usize {
        self.concurrency.load(Ordering::Relaxed)
    }

    /// Grow or shrink the slots live. Shrinking takes slots as running jobs free them.
    pub fn set_concurrency(&self, n: usize) {
        let n = n.max(1);
        let old = self.concurrency.swap(n, Ordering::Relaxed);
        if n > old {
            self.slots.add_permits(n - old);
        } else if n < old {
            let slots = self.slots.clone();
            let take = u32::try_from(old - n).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = slots.acquire_many_owned(take).await {
                    p.forget();
                }
            });
        }
    }

    /// Turn a pulled permit into a job's slot, unless the worker is already at its
    /// (possibly just lowered) concurrency: a shrink takes effect at once, even while
    /// a pull request asked for more jobs before it.
    ///
    /// `finish` is the job's room in the finishing phase, kept after the slot is released.
    pub fn take_slot(
        &self,
        permit: OwnedSemaphorePermit,
        finish: OwnedSemaphorePermit,
    ) -> Option<Slot> {
        if self.busy.load(Ordering::Relaxed) >= self.concurrency() {
            return None;
        }
        self.busy.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            held: Some((permit, self.busy.clone())),
            _finishing: finish,
        })
    }

    /// Note how long a kernel ran (decides whether pulls prefetch).
    pub fn kernel_ran(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.last_kernel_us.store(us, Ordering::Relaxed);
    }

    /// Jobs a pull may ask for beyond its free slots: `prefetch` while kernels are
    /// quick (the last took under 2 ms), else none.
    pub fn extra_pull(&self) -> usize {
        if self.last_kernel_us.load(Ordering::Relaxed) < 2_000 {
            self.prefetch
        } else {
            0
        }
    }

    /// Whether jobs of `kind` may run (not disabled by the controller).
    pub fn kind_enabled(&self, kind: JobKind) -> bool {
        self.disabled_kinds
            .read()
            .map(|d| !d.contains(&kind))
            .unwrap_or(true)
    }

    /// The chaos default for jobs without their own.
    pub fn chaos(&self) -> Option<Chaos> {
        self.chaos.read().ok().and_then(|c| *c)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Threads a job starting now may use: all cores when it runs alone, fewer when
    /// other slots are taken (jobs only finishing their writes do not count).
    pub fn thread_budget(&self) -> usize {
        (cores() / self.busy.load(Ordering::Relaxed).max(1)).max(1)
    }

    /// Register a running job's cancel flag; the job counts as running until the guard drops.
    pub fn register(self: &Arc<Self>, id: JobId, cancel: Arc<AtomicBool>) -> Registration {
        if let Ok(mut m) = self.running.lock() {
            m.insert(id, cancel);
        }
        Registration {
            ctx: self.clone(),
            id,
        }
    }

    /// Raise the cancel flag of `id` if it runs here; `true` if it did.
    pub fn cancel(&self, id: &JobId) -> bool {
        match self.running.lock().ok().and_then(|m| m.get(id).cloned()) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Stop every running kernel; their attempts hand the jobs back to the queue.
    pub fn abandon_all(&self) {
        if let Ok(m) = self.running.lock() {
            for flag in m.values() {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Wait until no job runs or finishes (all slots and finishing room free), up to
    /// `timeout`; `true` if idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.concurrency()).unwrap_or(u32::MAX);
        let finishing = u32::try_from(self.finishing_limit).unwrap_or(u32::MAX);
        let idle = async {
            let slots = self.slots.acquire_many(all).await;
            let finishing = self.finishing.acquire_many(finishing).await;
            slots.is_ok() && finishing.is_ok()
        };
        tokio::time::timeout(timeout, idle).await.unwrap_or(false)
    }
}

/// One job's place in the worker: a slot until [`Slot::release`] (the kernel is over),
/// and room among the finishing jobs until dropped (the attempt is over).
pub struct Slot {
    held: Option<(OwnedSemaphorePermit, Arc<AtomicUsize>)>,
    _finishing: OwnedSemaphorePermit,
}

impl Slot {
    /// Free the slot for the next job; the rest of the attempt is I/O.
    pub fn release(&mut self) {
        if let Some((permit, busy)) = self.held.take() {
            busy.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

/// Removes a job from the running set when dropped (whatever way its attempt ends).
pub struct Registration {
    ctx: Arc<WorkerCtx>,
    id: JobId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.ctx.running.lock() {
            m.remove(&self.id);
        }
    }
}
