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

use crate::listing::{ListQuery, Page};
use crate::{NatsxError, Records};
use async_nats::jetstream::consumer::push::OrderedErrorKind;
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use futures::{StreamExt, TryStreamExt};
use jetmill_proto::{JobId, JobKind, JobRecord, JobStatus};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Records read concurrently while filling a page.
const FETCH_CONCURRENCY: usize = 32;
/// Messages applied under one write lock.
const APPLY_BATCH: usize = 512;
/// First wait before a failed index is rebuilt; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between rebuilds.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that stayed live this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

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
    records: Records,
    table: Arc<RwLock<Table>>,
    progress: watch::Receiver<Progress>,
    options: IndexOptions,
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
        let task = tokio::spawn(keep_following(records.clone(), table.clone(), tx));
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
            jobs: t.all.len(),
            tenants: t.names.len(),
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

/// Where a walk down the ids starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// The newest job.
    Top,
    /// Below this id (a client's cursor).
    Below(JobId),
    /// Below this `(id, tenant number)` (the last candidate of a previous batch).
    After(JobId, u32),
}

/// A job whose indexed fields admit a query: the record to read.
#[derive(Debug, Clone)]
struct Candidate {
    tenant: Arc<str>,
    id: JobId,
    /// The tenant's number (the position in the all-tenants order).
    number: u32,
}

/// Indexed fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta(Option<(JobStatus, JobKind)>);

impl Meta {
    /// Whether a record with these fields may match `q` (a value that did not parse
    /// may: its read then reports it as corrupt, as the scan would).
    fn admits(self, q: &ListQuery) -> bool {
        match self.0 {
            None => true,
            Some((s, k)) => q.status.is_none_or(|x| x == s) && q.kind.is_none_or(|x| x == k),
        }
    }
}

/// The index itself: what the task writes and listings read.
///
/// Public only so the benchmark can measure its memory; not part of the API.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Table {
    /// Tenant names by number.
    names: Vec<Arc<str>>,
    /// Tenant numbers by name.
    numbers: HashMap<Arc<str>, u32>,
    /// Per tenant number: its jobs by id.
    tenants: Vec<BTreeMap<JobId, Meta>>,
    /// Every tenant's jobs, by id then tenant number (the same id under two tenants is
    /// two jobs, as it is in the bucket).
    all: BTreeMap<(JobId, u32), Meta>,
}

impl Table {
    /// Index a record (the benchmark's entry point; the task uses [`Table::apply`]).
    #[doc(hidden)]
    pub fn insert(&mut self, tenant: &str, id: JobId, status: JobStatus, kind: JobKind) {
        self.put(tenant, id, Meta(Some((status, kind))));
    }

    /// Live records indexed.
    #[doc(hidden)]
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether nothing is indexed.
    #[doc(hidden)]
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn put(&mut self, tenant: &str, id: JobId, meta: Meta) {
        let n = match self.numbers.get(tenant) {
            Some(n) => *n,
            None => {
                let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                let name: Arc<str> = tenant.into();
                self.names.push(name.clone());
                self.numbers.insert(name, n);
                self.tenants.push(BTreeMap::new());
                n
            }
        };
        if let Some(jobs) = self.tenants.get_mut(n as usize) {
            jobs.insert(id, meta);
            self.all.insert((id, n), meta);
        }
    }

    fn remove(&mut self, tenant: &str, id: JobId) {
        if let Some(&n) = self.numbers.get(tenant) {
            if let Some(jobs) = self.tenants.get_mut(n as usize) {
                jobs.remove(&id);
            }
            self.all.remove(&(id, n));
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Put { tenant, id, meta } => self.put(&tenant, id, meta),
            Change::Remove { tenant, id } => self.remove(&tenant, id),
            Change::Skip => {}
        }
    }

    /// Up to `n` candidates whose indexed fields admit `q`, newest
    /// first from `from`, and whether more follow.
    fn candidates(&self, q: &ListQuery, from: Start, n: usize) -> (Vec<Candidate>, bool) {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut more = false;
        let mut take = |id: JobId, t: u32, meta: Meta| {
            if !meta.admits(q) {
                return true;
            }
            if out.len() == n {
                more = true;
                return false;
            }
            if let Some(name) = self.names.get(t as usize) {
                out.push(Candidate {
                    tenant: name.clone(),
                    id,
                    number: t,
                });
            }
            true
        };
        match &q.tenant {
            Some(tenant) => {
                let Some(&t) = self.numbers.get(tenant.as_str()) else {
                    return (out, false);
                };
                let Some(jobs) = self.tenants.get(t as usize) else {
                    return (out, false);
                };
                let upper = match from {
                    Start::Top => Bound::Unbounded,
                    Start::Below(id) | Start::After(id, _) => Bound::Excluded(id),
                };
                for (id, meta) in jobs.range((Bound::Unbounded, upper)).rev() {
                    if !take(*id, t, *meta) {
                        break;
                    }
                }
            }
            None => {
                let upper = match from {
                    Start::Top => Bound::Unbounded,
                    // Every tenant's job with this id is at or above (id, 0).
                    Start::Below(id) => Bound::Excluded((id, 0)),
                    Start::After(id, t) => Bound::Excluded((id, t)),
                };
                for ((id, t), meta) in self.all.range((Bound::Unbounded, upper)).rev() {
                    if !take(*id, *t, *meta) {
                        break;
                    }
                }
            }
        }
        (out, more)
    }
}

/// What one message of the bucket's stream does to the index.
#[derive(Debug)]
enum Change {
    Put {
        tenant: String,
        id: JobId,
        meta: Meta,
    },
    Remove {
        tenant: String,
        id: JobId,
    },
    /// Not a job record key (nothing to index).
    Skip,
}

/// The two fields the index needs; serde skips the rest of the record.
#[derive(serde::Deserialize)]
struct Indexed {
    status: JobStatus,
    kind: JobKind,
}

/// Turn one stream message into a change (no locks held: values may be large).
fn change_of(prefix: &str, msg: &async_nats::Message) -> Change {
    let Some((tenant, id)) = msg
        .subject
        .strip_prefix(prefix)
        .and_then(|key| key.split_once('.'))
    else {
        return Change::Skip;
    };
    let Ok(id) = id.parse::<JobId>() else {
        tracing::debug!(subject = %msg.subject, "job index: key is not <tenant>.<job id>; skipped");
        return Change::Skip;
    };
    let tenant = tenant.to_string();
    let removed = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| op.as_str() != "PUT");
    if removed {
        return Change::Remove { tenant, id };
    }
    let meta = match serde_json::from_slice::<Indexed>(&msg.payload) {
        Ok(v) => Meta(Some((v.status, v.kind))),
        Err(e) => {
            tracing::warn!(subject = %msg.subject, error = %e, "job index: record does not parse; listed unfiltered");
            Meta(None)
        }
    };
    Change::Put { tenant, id, meta }
}

fn read(table: &RwLock<Table>) -> RwLockReadGuard<'_, Table> {
    // A panic while holding the lock cannot leave a half-applied change that matters:
    // every record is re-read before it is listed.
    table.read().unwrap_or_else(|e| e.into_inner())
}

fn write(table: &RwLock<Table>) -> RwLockWriteGuard<'_, Table> {
    table.write().unwrap_or_else(|e| e.into_inner())
}

/// Follow the bucket forever: build, serve, and rebuild after a failure.
async fn keep_following(records: Records, table: Arc<RwLock<Table>>, tx: watch::Sender<Progress>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        tx.send_modify(|p| p.phase = Phase::Bootstrapping);
        let mut live_since = None;
        let err = follow(&records, &table, &tx, &mut live_since).await;
        tx.send_modify(|p| p.phase = Phase::Down);
        if live_since.is_some_and(|t: Instant| t.elapsed() >= HEALTHY_RUN) {
            backoff = MIN_BACKOFF;
        }
        tracing::warn!(
            error = %err,
            retry_in_ms = backoff.as_millis() as u64,
            "job index stopped; listings scan the bucket until it is rebuilt"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Bootstrap a fresh table, swap it in, then apply writes until the consumer fails.
async fn follow(
    records: &Records,
    table: &RwLock<Table>,
    tx: &watch::Sender<Progress>,
    live_since: &mut Option<Instant>,
) -> NatsxError {
    match follow_inner(records, table, tx, live_since).await {
        Ok(()) => NatsxError::JetStream {
            op: "follow the jobs bucket",
            source: "the consumer's message stream ended".into(),
        },
        Err(e) => e,
    }
}

async fn follow_inner(
    records: &Records,
    table: &RwLock<Table>,
    tx: &watch::Sender<Progress>,
    live_since: &mut Option<Instant>,
) -> Result<(), NatsxError> {
    const OP: &str = "follow the jobs bucket";
    let started = Instant::now();
    let kv = records.kv();
    // Everything up to here is in the bootstrap (the consumer is created after it).
    let floor = kv
        .stream
        .get_info()
        .await
        .map_err(NatsxError::js(OP))?
        .state
        .last_sequence;
    let consumer = kv
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: records.client.new_inbox(),
            description: Some("jetmill gateway job index".into()),
            filter_subject: format!("{}>", kv.prefix),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(NatsxError::js(OP))?;
    let mut caught_up = consumer.cached_info().num_pending == 0;
    let mut messages = consumer
        .messages()
        .await
        .map_err(NatsxError::js(OP))?
        .ready_chunks(APPLY_BATCH);
    let prefix = kv.prefix.clone();

    // Bootstrap into a private table: listings keep their old view (or scan) meanwhile.
    let mut fresh = Table::default();
    let mut applied = 0;
    while !caught_up {
        let Some(batch) = messages.next().await else {
            return Ok(());
        };
        for msg in batch {
            let Some(msg) = usable(msg)? else { continue };
            let info = msg.info().map_err(|e| NatsxError::Corrupt {
                what: "jobs stream message metadata".into(),
                detail: e.to_string(),
            })?;
            applied = info.stream_sequence;
            caught_up |= info.pending == 0;
            fresh.apply(change_of(&prefix, &msg));
        }
    }
    let jobs = fresh.len();
    *write(table) = fresh;
    tx.send_replace(Progress {
        phase: Phase::Live,
        applied: applied.max(floor),
    });
    *live_since = Some(Instant::now());
    tracing::info!(
        jobs,
        bootstrap_ms = started.elapsed().as_millis() as u64,
        "job index live"
    );

    while let Some(batch) = messages.next().await {
        let mut changes = Vec::with_capacity(batch.len());
        let mut last = None;
        for msg in batch {
            let Some(msg) = usable(msg)? else { continue };
            let info = msg.info().map_err(|e| NatsxError::Corrupt {
                what: "jobs stream message metadata".into(),
                detail: e.to_string(),
            })?;
            last = Some(info.stream_sequence);
            changes.push(change_of(&prefix, &msg));
        }
        {
            let mut t = write(table);
            for c in changes {
                t.apply(c);
            }
        }
        if let Some(seq) = last {
            tx.send_modify(|p| p.applied = p.applied.max(seq));
        }
    }
    Ok(())
}

/// A delivered message, `None` for a hiccup the ordered consumer repairs itself (it
/// recreates itself after the last delivered sequence), or the error that ends this run.
fn usable(
    msg: Result<async_nats::jetstream::Message, push::OrderedError>,
) -> Result<Option<async_nats::jetstream::Message>, NatsxError> {
    match msg {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == OrderedErrorKind::MissingHeartbeat => {
            tracing::debug!(error = %e, "job index consumer missed a heartbeat; it resumes by itself");
            Ok(None)
        }
        Err(e) => Err(NatsxError::js("follow the jobs bucket")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> JobId {
        JobId::new()
    }

    fn q(
        tenant: Option<&str>,
        status: Option<JobStatus>,
        before: Option<JobId>,
        limit: usize,
    ) -> ListQuery {
        ListQuery {
            tenant: tenant.map(str::to_string),
            status,
            kind: None,
            before,
            limit,
        }
    }

    fn ids(c: &(Vec<Candidate>, bool)) -> Vec<JobId> {
        c.0.iter().map(|c| c.id).collect()
    }

    #[test]
    fn candidates_walk_down_from_the_cursor_per_tenant_and_across_tenants() {
        let mut t = Table::default();
        let a: Vec<JobId> = (0..5).map(|_| id()).collect();
        let b: Vec<JobId> = (0..3).map(|_| id()).collect();
        for (i, x) in a.iter().enumerate() {
            let s = if i % 2 == 0 {
                JobStatus::Done
            } else {
                JobStatus::Pending
            };
            t.insert("a", *x, s, JobKind::Factorial);
        }
        for x in &b {
            t.insert("b", *x, JobStatus::Pending, JobKind::Sum);
        }
        let newest_a: Vec<JobId> = a.iter().rev().copied().collect();
        let c = t.candidates(&q(Some("a"), None, None, 2), Start::Top, 2);
        assert_eq!((ids(&c), c.1), (newest_a[..2].to_vec(), true));
        let c = t.candidates(&q(Some("a"), None, None, 10), Start::Below(a[2]), 10);
        assert_eq!((ids(&c), c.1), (vec![a[1], a[0]], false));
        let c = t.candidates(
            &q(Some("a"), Some(JobStatus::Done), None, 10),
            Start::Top,
            10,
        );
        assert_eq!(ids(&c), vec![a[4], a[2], a[0]]);
        let c = t.candidates(&q(Some("nobody"), None, None, 10), Start::Top, 10);
        assert!(c.0.is_empty() && !c.1);

        let mut every: Vec<JobId> = a.iter().chain(&b).copied().collect();
        every.sort_unstable_by(|x, y| y.cmp(x));
        let c = t.candidates(&q(None, None, None, 100), Start::Top, 100);
        assert_eq!((ids(&c), c.1), (every.clone(), false));
        let c = t.candidates(
            &q(None, Some(JobStatus::Pending), None, 100),
            Start::Top,
            100,
        );
        assert_eq!(c.0.len(), 2 + 3);

        // Exactly `n` matches left: no "more".
        let c = t.candidates(&q(Some("b"), None, None, 3), Start::Top, 3);
        assert_eq!((c.0.len(), c.1), (3, false));
    }

    #[test]
    fn removals_and_status_changes_update_both_orders() {
        let mut t = Table::default();
        let x = id();
        let y = id();
        t.insert("a", x, JobStatus::Pending, JobKind::Factorial);
        t.insert("a", y, JobStatus::Pending, JobKind::Factorial);
        t.insert("a", x, JobStatus::Done, JobKind::Factorial);
        let done = q(Some("a"), Some(JobStatus::Done), None, 10);
        assert_eq!(ids(&t.candidates(&done, Start::Top, 10)), vec![x]);
        let done_all = q(None, Some(JobStatus::Done), None, 10);
        assert_eq!(ids(&t.candidates(&done_all, Start::Top, 10)), vec![x]);
        t.apply(Change::Remove {
            tenant: "a".into(),
            id: x,
        });
        assert!(t.candidates(&done, Start::Top, 10).0.is_empty());
        assert!(t.candidates(&done_all, Start::Top, 10).0.is_empty());
        assert_eq!(t.len(), 1);
        // Removing an unknown key is a no-op.
        t.apply(Change::Remove {
            tenant: "zz".into(),
            id: y,
        });
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_unparsable_value_stays_a_candidate_for_every_filter() {
        let mut t = Table::default();
        let x = id();
        t.put("a", x, Meta(None));
        let c = t.candidates(
            &q(Some("a"), Some(JobStatus::Running), None, 10),
            Start::Top,
            10,
        );
        assert_eq!(ids(&c), vec![x]);
    }

    #[test]
    fn messages_become_changes_from_the_key_the_operation_and_two_fields() {
        let prefix = "$KV.jobs.";
        let x = id();
        let mut record = serde_json::json!({
            "id": x, "tenant": "acme", "kind": "sum", "status": "running",
            "result": "9".repeat(100_000), "unknown_future_field": [1, 2, 3]
        });
        let put = async_nats::Message {
            subject: format!("$KV.jobs.acme.{x}").into(),
            reply: None,
            payload: serde_json::to_vec(&record).expect("json").into(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        match change_of(prefix, &put) {
            Change::Put { tenant, id, meta } => {
                assert_eq!((tenant.as_str(), id), ("acme", x));
                assert_eq!(meta, Meta(Some((JobStatus::Running, JobKind::Sum))));
            }
            other => panic!("expected a put, got {other:?}"),
        }
        record["status"] = serde_json::json!("exploded");
        let bad = async_nats::Message {
            payload: serde_json::to_vec(&record).expect("json").into(),
            ..put.clone()
        };
        assert!(matches!(
            change_of(prefix, &bad),
            Change::Put {
                meta: Meta(None),
                ..
            }
        ));
        for op in ["DEL", "PURGE"] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("KV-Operation", op);
            let del = async_nats::Message {
                headers: Some(headers),
                payload: Default::default(),
                ..put.clone()
            };
            assert!(
                matches!(change_of(prefix, &del), Change::Remove { id, .. } if id == x),
                "{op}"
            );
        }
        let odd = async_nats::Message {
            subject: "$KV.jobs.acme.not-a-uuid".into(),
            ..put.clone()
        };
        assert!(matches!(change_of(prefix, &odd), Change::Skip));
    }
}
