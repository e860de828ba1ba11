//! A live in-memory index of the `jobs` bucket, so `GET /v1/jobs` does not scan it.
//!
//! **What.** For every live record: its tenant, id, status and kind. Per tenant the ids
//! are kept in a `BTreeMap` (ids are UUIDv7, so id order is submission order), and one
//! more `BTreeMap` keyed by `(id, tenant)` orders every tenant's jobs for admin listings.
//! A page is a range walk down from the cursor that skips ids whose indexed status or
//! kind does not match, then reads only the records it will return.
//!
//! **Why.** [`Records::page`] scans every key of the tenant on each request (a
//! headers-only consumer over the bucket's stream) and, with a status filter, may read
//! every record: at 100k jobs that is seconds per page. The index makes a page cost one
//! stream-info round trip, a walk in memory and `limit` record reads. JetStream has no
//! server-side secondary index (a KV key can only be matched by subject, and the
//! status lives in the value), so the index has to live in the client.
//!
//! **How it stays current.** One task per process follows the bucket's stream
//! (`KV_jobs`, subjects `$KV.jobs.<tenant>.<job_id>`) with an ordered push consumer:
//! `DeliverPolicy::LastPerSubject` delivers each key's current value (the bootstrap),
//! then every later write. Only `status` and `kind` are parsed from a value (a record
//! may carry an inline result of up to 1 MiB); a `KV-Operation: DEL`/`PURGE` marker
//! removes the key. The stream sequence of the last applied message is published on a
//! `tokio::sync::watch`. If the consumer fails, listings fall back to the scan and the
//! task rebuilds the index from scratch with a backoff (100 ms doubling to 30 s).
//!
//! **Consistency.** [`JobIndex::page`] first reads the stream's last sequence (one
//! stream-info round trip) and waits until the index has applied at least that
//! sequence, so every write acknowledged before the request started (by any gateway
//! or worker) is in the index: read-your-writes across gateways. Each returned record
//! is then read from the bucket and checked against the filters again (its status may
//! have moved on since), so a page is always correct per the stored record. When the
//! index cannot catch up within [`IndexOptions::barrier_timeout`] (still bootstrapping,
//! its consumer down, or lagging) the caller gets [`NotReady`] and uses the scan.
//!
//! **Memory.** About 90 bytes per job (two B-tree entries of a 16-byte id, a tenant
//! number and two status/kind bytes, with B-tree node overhead), measured by the
//! listing benchmark (`docs/benchmarks.md`): ~9 MB for 100k jobs, ~90 MB for 1M.
//! Tenant names are stored once.
//!
//! Layout: this file has the handle ([`JobIndex`]) and the barrier; `table` the data
//! structure and the walk; `follow` the task that keeps the table current.

mod follow;
mod table;

pub use table::StatusCounts;
#[doc(hidden)]
pub use table::Table;

use crate::listing::{ListQuery, Page};
use crate::{NatsxError, Records};
use futures::{StreamExt, TryStreamExt};
use jetmill_proto::JobRecord;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use table::{Candidate, Start};
use tokio::sync::watch;

/// Records read concurrently while filling a page.
const FETCH_CONCURRENCY: usize = 32;

/// Tuning of a [`JobIndex`].
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Longest a listing waits for the index to apply every write made before it
    /// started; after that it gets [`NotReady`] (and the gateway scans instead).
    pub barrier_timeout: Duration,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            barrier_timeout: Duration::from_secs(2),
        }
    }
}

/// Where the index task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the bucket's current contents; not used for listings yet.
    Bootstrapping,
    /// Following new writes; listings use it.
    Live,
    /// The consumer failed; waiting to rebuild. Listings scan.
    Down,
}

/// What the index task has done so far (published on a watch channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Where the task is.
    pub phase: Phase,
    /// Every message of the bucket's stream up to this sequence is applied (when live).
    pub applied: u64,
}

/// Why a listing could not be served from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The index is still reading the bucket.
    #[error("the job index is still bootstrapping")]
    Bootstrapping,
    /// The index's consumer failed and it is waiting to rebuild.
    #[error("the job index is down (rebuilding)")]
    Down,
    /// The index did not reach the stream's last sequence in time.
    #[error("the job index is behind (applied {applied}, needed {wanted})")]
    Behind { applied: u64, wanted: u64 },
}

/// Counts for logs, tests and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Where the task is.
    pub phase: Phase,
    /// Last applied stream sequence.
    pub applied: u64,
    /// Live records indexed.
    pub jobs: usize,
    /// Tenants ever seen.
    pub tenants: usize,
}

/// A live index of the `jobs` bucket; cheap to clone, one per process.
///
/// The following task stops when the last clone is dropped.
#[derive(Clone)]
pub struct JobIndex {
    /// The bucket: its stream's last sequence for the barrier, and the records a page returns.
    records: Records,
    /// What the task maintains; read briefly (no await held) to pick a page's candidates.
    table: Arc<RwLock<Table>>,
    /// The task's phase and applied sequence, which the barrier waits on.
    progress: watch::Receiver<Progress>,
    /// How long the barrier may wait.
    options: IndexOptions,
    /// Stops the task when the last handle goes.
    _task: Arc<AbortOnDrop>,
}

/// Aborts the index task when the last [`JobIndex`] goes.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl JobIndex {
    /// Start following `records`' bucket in a background task (needs a tokio runtime).
    ///
    /// Returns at once; the index serves listings once it is [`Phase::Live`].
    pub fn start(records: Records, options: IndexOptions) -> JobIndex {
        let table = Arc::new(RwLock::new(Table::default()));
        let (tx, progress) = watch::channel(Progress {
            phase: Phase::Bootstrapping,
            applied: 0,
        });
        let task = tokio::spawn(follow::keep_following(records.clone(), table.clone(), tx));
        JobIndex {
            records,
            table,
            progress,
            options,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        }
    }

    /// Counts and phase, as of now.
    pub fn stats(&self) -> IndexStats {
        let p = *self.progress.borrow();
        let t = read(&self.table);
        IndexStats {
            phase: p.phase,
            applied: p.applied,
            jobs: t.len(),
            tenants: t.tenants(),
        }
    }

    /// A receiver of the task's progress (to wait for [`Phase::Live`]).
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// One page of `q`, newest first, with the same cursor rules as [`Records::page`].
    ///
    /// `Ok(Err(NotReady))` when the index could not apply every write made before this
    /// call within [`IndexOptions::barrier_timeout`]: the caller should scan instead.
    pub async fn page(&self, q: &ListQuery) -> Result<Result<Page, NotReady>, NatsxError> {
        if let Err(e) = self.sync().await? {
            return Ok(Err(e));
        }
        self.page_now(q).await.map(Ok)
    }

    /// Wait until the index holds every write acknowledged before this call.
    pub async fn sync(&self) -> Result<Result<(), NotReady>, NatsxError> {
        if self.progress.borrow().phase == Phase::Down {
            return Ok(Err(NotReady::Down));
        }
        let wanted = self
            .records
            .kv()
            .stream
            .get_info()
            .await
            .map_err(NatsxError::js("read the jobs stream's last sequence"))?
            .state
            .last_sequence;
        let mut rx = self.progress.clone();
        let reached = tokio::time::timeout(
            self.options.barrier_timeout,
            rx.wait_for(|p| {
                p.phase == Phase::Down || (p.phase == Phase::Live && p.applied >= wanted)
            }),
        )
        .await
        .map(|r| r.map(|p| *p));
        Ok(match reached {
            Ok(Ok(p)) if p.phase == Phase::Live => Ok(()),
            // Down, or the task is gone (the sender was dropped).
            Ok(_) => Err(NotReady::Down),
            Err(_) => {
                let p = *rx.borrow();
                match p.phase {
                    Phase::Bootstrapping => Err(NotReady::Bootstrapping),
                    Phase::Down => Err(NotReady::Down),
                    Phase::Live => Err(NotReady::Behind {
                        applied: p.applied,
                        wanted,
                    }),
                }
            }
        })
    }

    /// `tenant`'s records per status, including every write acknowledged before this
    /// call (the same barrier as a listing): what `GET /v1/usage` reports.
    pub async fn counts(&self, tenant: &str) -> Result<Result<StatusCounts, NotReady>, NatsxError> {
        Ok(self
            .sync()
            .await?
            .map(|()| read(&self.table).counts(tenant)))
    }

    /// `tenant`'s records per status as the index holds them now, without the barrier
    /// (a submit's quota check must not cost a round trip). Waits at most the barrier
    /// timeout for a bootstrapping index to go live; an index that is down answers from
    /// the table it last had (approximate, as a quota may be).
    pub async fn counts_now(&self, tenant: &str) -> Result<StatusCounts, NotReady> {
        let mut rx = self.progress.clone();
        let live = tokio::time::timeout(
            self.options.barrier_timeout,
            rx.wait_for(|p| p.phase != Phase::Bootstrapping),
        )
        .await;
        match live {
            Ok(Ok(_)) => Ok(read(&self.table).counts(tenant)),
            Ok(Err(_)) => Err(NotReady::Down),
            Err(_) => Err(NotReady::Bootstrapping),
        }
    }

    /// Every tenant's records per status as the index holds them now (no barrier):
    /// the activity chart's "jobs finished" count.
    pub fn totals_now(&self) -> StatusCounts {
        read(&self.table).totals()
    }

    /// A page from the index as it is now (no barrier).
    async fn page_now(&self, q: &ListQuery) -> Result<Page, NatsxError> {
        let limit = q.limit.max(1);
        let mut jobs: Vec<JobRecord> = Vec::with_capacity(limit);
        let mut from = match q.before {
            Some(id) => Start::Below(id),
            None => Start::Top,
        };
        loop {
            let (batch, more) = read(&self.table).candidates(q, from, limit - jobs.len());
            let Some(last) = batch.last() else {
                return Ok(Page { jobs, next: None });
            };
            from = Start::After(last.id, last.number);
            let records: Vec<Option<JobRecord>> =
                futures::stream::iter(batch)
                    .map(|Candidate { tenant, id, .. }| {
                        let records = self.records.clone();
                        async move {
                            Ok::<_, NatsxError>(records.get(&tenant, &id).await?.map(|(r, _)| r))
                        }
                    })
                    .buffered(FETCH_CONCURRENCY)
                    .try_collect()
                    .await?;
            // A record deleted or changed since the index saw it is skipped: the page
            // holds only what the store says matches.
            jobs.extend(records.into_iter().flatten().filter(|r| q.admits(r)));
            if jobs.len() == limit {
                let next = if more {
                    jobs.last().map(|r| r.id)
                } else {
                    None
                };
                return Ok(Page { jobs, next });
            }
            if !more {
                return Ok(Page { jobs, next: None });
            }
        }
    }
}

fn read(table: &RwLock<Table>) -> RwLockReadGuard<'_, Table> {
    // A panic while holding the lock cannot leave a half-applied change that matters:
    // every record is re-read before it is listed.
    table.read().unwrap_or_else(|e| e.into_inner())
}

fn write(table: &RwLock<Table>) -> RwLockWriteGuard<'_, Table> {
    table.write().unwrap_or_else(|e| e.into_inner())
}
