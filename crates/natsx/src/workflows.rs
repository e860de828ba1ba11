//! Workflows in KV `workflows`: the stored workflow (written once), one gate per step
//! with dependencies and one halt, all changed by create or compare-and-set only; and
//! the two moves that drive a workflow without a coordinator:
//!
//! - [`start`]: publish a step's job (its id is the `Nats-Msg-Id`, so a repeat within
//!   the `JOBS` duplicate window is dropped by the broker) unless its record exists
//!   already (records are written only once the job was published), then create its
//!   `pending` record. Safe to repeat.
//! - [`advance`]: what a worker does once a step's record is terminal, before it acks
//!   the step's message: mark the step in each dependent's gate; the write that marks a
//!   gate's last dependency also sets `started`, and its writer starts the step. A
//!   worker that dies in between never acked, so the step's message is delivered
//!   again, the redelivery finds its marks made and starts what its marks completed
//!   (again: [`start`] is idempotent). A failed step under fail-fast writes the halt
//!   and cancels the running steps.

use crate::{jobs, Jet, NatsxError, Update};
use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use jetmill_proto::{
    names, now_ms, unix_ms, EventType, FailurePolicy, Halt, JobEvent, JobId, JobRecord, JobStatus,
    StepGate, WorkflowRecord, WorkflowStatus,
};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// Steps started or cancelled at once by one call.
const CONCURRENCY: usize = 32;

/// Store a new workflow; `false` if one with its id exists already.
pub async fn create(jet: &Jet, wf: &WorkflowRecord) -> Result<bool, NatsxError> {
    let key = names::workflow_key(&wf.tenant, &wf.id);
    match jet.workflows.create(&key, wf.to_json().into()).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(NatsxError::js("store workflow")(e)),
    }
}

async fn read<T: DeserializeOwned>(jet: &Jet, key: String) -> Result<Option<(T, u64)>, NatsxError> {
    let entry = jet
        .workflows
        .entry(key.clone())
        .await
        .map_err(NatsxError::js("read workflow"))?;
    match entry {
        Some(e) if e.operation == Operation::Put => serde_json::from_slice(&e.value)
            .map(|v| Some((v, e.revision)))
            .map_err(|err| NatsxError::Corrupt {
                what: format!("workflow key {key}"),
                detail: err.to_string(),
            }),
        _ => Ok(None),
    }
}

/// The stored workflow `id` of `tenant`, if it exists.
pub async fn get(
    jet: &Jet,
    tenant: &str,
    id: &JobId,
) -> Result<Option<WorkflowRecord>, NatsxError> {
    Ok(read(jet, names::workflow_key(tenant, id))
        .await?
        .map(|(w, _)| w))
}

/// Why the workflow stopped early, if it did.
pub async fn halt(jet: &Jet, tenant: &str, id: &JobId) -> Result<Option<Halt>, NatsxError> {
    Ok(read(jet, names::workflow_halt_key(tenant, id))
        .await?
        .map(|(h, _)| h))
}

/// Stop the workflow with `halt`; `false` if it was halted already (the first halt
/// stays: a cancel after a failure leaves it failed, and the other way round).
pub async fn set_halt(jet: &Jet, wf: &WorkflowRecord, halt: &Halt) -> Result<bool, NatsxError> {
    let key = names::workflow_halt_key(&wf.tenant, &wf.id);
    let value = serde_json::to_vec(halt).unwrap_or_default();
    match jet.workflows.create(&key, value.into()).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(NatsxError::js("halt workflow")(e)),
    }
}

/// Start step `step`: publish its job unless its record exists, then create the record.
/// A workflow halted meanwhile has the step cancelled again at once. Safe to repeat.
pub async fn start(jet: &Jet, wf: &WorkflowRecord, step: u32) -> Result<(), NatsxError> {
    let Some(def) = wf.steps.get(step as usize) else {
        return Ok(());
    };
    let job = &def.job;
    if halt(jet, &wf.tenant, &wf.id).await?.is_some() {
        return Ok(());
    }
    if jet.records.get(&wf.tenant, &job.id).await?.is_some() {
        // Published before (a record is written only after its job was).
        return Ok(());
    }
    jobs::publish(&jet.js, job).await?;
    committed(jet, job).await?;
    // A halt written while this was publishing: its sweep may have missed this record.
    if halt(jet, &wf.tenant, &wf.id).await?.is_some() {
        jobs::cancel(jet, &wf.tenant, &job.id).await?;
    }
    tracing::debug!(workflow = %wf.id, step = %def.name, job_id = %job.id, "workflow step started");
    Ok(())
}

/// Start every step without dependencies: what a submit does once it stored the
/// workflow. Nothing of a new workflow exists yet, so its jobs are sent pipelined (every
/// publish before any ack is awaited, as a batch is) without the checks [`start`] makes;
/// a cancel that raced the submit is honoured by one halt read at the end. A repeat is
/// harmless (publish dedup by job id, records created once).
pub async fn start_roots(jet: &Jet, wf: &WorkflowRecord) -> Result<(), NatsxError> {
    let roots: Vec<&jetmill_proto::JobMessage> = wf.roots().map(|(_, s)| &s.job).collect();
    let mut acks = Vec::with_capacity(roots.len());
    for job in &roots {
        acks.push(jobs::send(&jet.js, job, None).await?);
    }
    futures::future::try_join_all(acks.into_iter().map(jobs::acked)).await?;
    for chunk in roots.chunks(CONCURRENCY * 2) {
        futures::future::try_join_all(chunk.iter().map(|job| committed(jet, job))).await?;
    }
    if halt(jet, &wf.tenant, &wf.id).await?.is_some() {
        cancel_steps(jet, wf).await?;
    }
    Ok(())
}

/// A published step's `accepted` event (deduplicated by its id), then its record.
async fn committed(jet: &Jet, job: &jetmill_proto::JobMessage) -> Result<(), NatsxError> {
    let accepted = JobEvent {
        job_id: job.id,
        tenant: job.tenant.clone(),
        event: EventType::Accepted,
        at_ms: now_ms(),
        attempt: 0,
        worker: None,
        progress: None,
        error: None,
        started_at_ms: None,
    };
    if let Err(e) = crate::events::publish(&jet.js, &accepted).await {
        tracing::warn!(job_id = %job.id, error = %e, "could not publish a step's accepted event");
    }
    jet.records
        .create(&JobRecord::accepted(job, now_ms()))
        .await?;
    Ok(())
}

/// What marking one dependency in a gate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marked {
    /// This write marked the last dependency: the caller starts the step.
    Completed,
    /// The mark was there already and the gate is complete: the caller may be the
    /// redelivery of the one that completed it, so it starts the step again.
    Repeated,
    /// Other dependencies are still running.
    Waiting,
}

/// One process's marks of the same gate, written together: a fan-in of a thousand
/// steps finishing on one worker is a few compare-and-sets, not a thousand that keep
/// failing on each other (group commit). Shared by every advance of the process.
#[derive(Default)]
pub struct Gates {
    queues: std::sync::Mutex<HashMap<String, Arc<Queue>>>,
}

/// A queued mark: the dependency's slot in the gate, and where its outcome goes.
type QueuedMark = (usize, oneshot::Sender<Result<Marked, String>>);

/// Marks waiting for a gate's writer.
#[derive(Default)]
struct Queue {
    writer: tokio::sync::Mutex<()>,
    marks: std::sync::Mutex<Vec<QueuedMark>>,
}

/// Gate queues kept at most (an idle one is dropped when there are more).
const QUEUES: usize = 4096;

impl Gates {
    fn queue(&self, key: &str) -> Arc<Queue> {
        let Ok(mut queues) = self.queues.lock() else {
            return Arc::new(Queue::default());
        };
        if queues.len() >= QUEUES {
            queues.retain(|_, q| Arc::strong_count(q) > 1);
        }
        queues.entry(key.to_string()).or_default().clone()
    }
}

/// Mark dependency `slot` (position in the step's `depends_on`) of `step` as ended,
/// together with the other marks of this gate queued in this process meanwhile.
async fn mark(
    jet: &Jet,
    gates: &Gates,
    wf: &WorkflowRecord,
    step: u32,
    slot: usize,
    needed: usize,
) -> Result<Marked, NatsxError> {
    let key = names::workflow_gate_key(&wf.tenant, &wf.id, step);
    let queue = gates.queue(&key);
    let (tx, mut rx) = oneshot::channel();
    if let Ok(mut marks) = queue.marks.lock() {
        marks.push((slot, tx));
    }
    let unwritten = |e: String| NatsxError::JetStream {
        op: "write workflow gate",
        source: e.into(),
    };
    {
        let _writer = queue.writer.lock().await;
        // The writer before may have written this mark already.
        if let Ok(done) = rx.try_recv() {
            return done.map_err(unwritten);
        }
        let batch: Vec<_> = queue
            .marks
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        let outcome = write_marks(jet, &key, &batch, needed).await;
        for ((_, reply), result) in batch.into_iter().zip(outcome) {
            let _ = reply.send(result);
        }
    }
    match rx.await {
        Ok(done) => done.map_err(unwritten),
        Err(_) => Err(unwritten("the gate writer stopped".into())),
    }
}

/// Write `marks` into the gate `key` by compare-and-set; one result per mark (the one
/// whose write completes the gate gets [`Marked::Completed`]).
async fn write_marks(
    jet: &Jet,
    key: &str,
    marks: &[QueuedMark],
    needed: usize,
) -> Vec<Result<Marked, String>> {
    loop {
        let found: Result<Option<(StepGate, u64)>, NatsxError> = read(jet, key.to_string()).await;
        let (mut gate, revision) = match found {
            Ok(found) => found.unwrap_or_default(),
            Err(e) => return marks.iter().map(|_| Err(e.to_string())).collect(),
        };
        let fresh: Vec<bool> = marks.iter().map(|(slot, _)| gate.mark(*slot)).collect();
        let complete = gate.count() >= needed;
        let completes = complete && !gate.started;
        let result = |i: usize| -> Marked {
            match (fresh[i], complete) {
                (_, false) => Marked::Waiting,
                // The first fresh mark of the write that completes the gate starts it.
                (true, true) if completes && Some(i) == fresh.iter().position(|f| *f) => {
                    Marked::Completed
                }
                (true, true) => Marked::Waiting,
                (false, true) => Marked::Repeated,
            }
        };
        if !fresh.iter().any(|f| *f) {
            return (0..marks.len()).map(|i| Ok(result(i))).collect();
        }
        if completes {
            gate.started = true;
        }
        let value: bytes::Bytes = serde_json::to_vec(&gate).unwrap_or_default().into();
        let written = if revision == 0 {
            jet.workflows
                .create(key, value)
                .await
                .map(|_| ())
                .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string()))
        } else {
            jet.workflows
                .update(key, value, revision)
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.kind() == UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
        };
        match written {
            Ok(()) => return (0..marks.len()).map(|i| Ok(result(i))).collect(),
            // Another process wrote the gate meanwhile: read it again.
            Err((true, _)) => continue,
            Err((false, e)) => return marks.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// Step `step` ended `status` (its record says so): start the dependents it
/// completes; under fail-fast a failed or cancelled step halts the workflow and
/// cancels its running steps. Call before acking the step's message; safe to repeat.
pub async fn advance(
    jet: &Jet,
    gates: &Gates,
    wf: &WorkflowRecord,
    step: u32,
    status: JobStatus,
) -> Result<(), NatsxError> {
    let Some(def) = wf.steps.get(step as usize) else {
        return Ok(());
    };
    if status != JobStatus::Done {
        if wf.on_failure == FailurePolicy::FailFast {
            let halt = Halt {
                status: WorkflowStatus::Failed,
                step: Some(def.name.clone()),
                at: OffsetDateTime::now_utc(),
            };
            if set_halt(jet, wf, &halt).await? {
                tracing::info!(workflow = %wf.id, step = %def.name, "workflow step ended {}; stopping the workflow (fail fast)", status.as_str());
                cancel_steps(jet, wf).await?;
            }
        }
        // Its dependents never start: their gates stay short of this mark.
        return Ok(());
    }
    let dependents = &wf.dependents()[step as usize];
    let mut ready = Vec::new();
    for &d in dependents {
        let Some(next) = wf.steps.get(d as usize) else {
            continue;
        };
        let Some(slot) = next.depends_on.iter().position(|&x| x == step) else {
            continue;
        };
        match mark(jet, gates, wf, d, slot, next.depends_on.len()).await? {
            Marked::Completed | Marked::Repeated => ready.push(d),
            Marked::Waiting => {}
        }
    }
    start_all(jet, wf, &ready).await
}

/// [`start`] each of `steps`, [`CONCURRENCY`] at a time.
async fn start_all(jet: &Jet, wf: &WorkflowRecord, steps: &[u32]) -> Result<(), NatsxError> {
    for chunk in steps.chunks(CONCURRENCY) {
        futures::future::try_join_all(chunk.iter().map(|&i| start(jet, wf, i))).await?;
    }
    Ok(())
}

/// Cancel every step whose job is queued or running (after a halt).
pub async fn cancel_steps(jet: &Jet, wf: &WorkflowRecord) -> Result<usize, NatsxError> {
    let mut cancelled = 0;
    for chunk in wf.steps.chunks(CONCURRENCY) {
        let done = futures::future::try_join_all(
            chunk
                .iter()
                .map(|s| cancel_step(jet, &wf.tenant, &s.job.id)),
        )
        .await?;
        cancelled += done.into_iter().filter(|c| *c).count();
    }
    Ok(cancelled)
}

/// Cancel one step's job if it is queued or running; `true` if this call did.
async fn cancel_step(jet: &Jet, tenant: &str, id: &JobId) -> Result<bool, NatsxError> {
    match jet.records.get(tenant, id).await? {
        Some((r, _)) if !r.status.is_terminal() => Ok(matches!(
            jobs::cancel(jet, tenant, id).await?,
            Update::Applied(_)
        )),
        _ => Ok(false),
    }
}

/// Cancel the workflow: halt it (`cancelled`), then cancel its running steps; steps
/// not started never start. Returns how many steps this call cancelled, or `None`
/// when it had been halted already (by a cancel or a fail-fast).
pub async fn cancel(jet: &Jet, wf: &WorkflowRecord) -> Result<Option<usize>, NatsxError> {
    let halt = Halt {
        status: WorkflowStatus::Cancelled,
        step: None,
        at: OffsetDateTime::now_utc(),
    };
    if !set_halt(jet, wf, &halt).await? {
        return Ok(None);
    }
    Ok(Some(cancel_steps(jet, wf).await?))
}

/// Whether step `step` of `wf`, if it has no record, surely never started: a step starts
/// after its workflow was stored, so until the step's retention has passed since then a
/// missing record cannot be one that finished and expired
/// ([`Records::absence_means_unrecorded`](crate::Records::absence_means_unrecorded)).
/// Past that, nothing may start it on a reader's behalf: that could run it twice.
pub fn may_be_unstarted(jet: &Jet, wf: &WorkflowRecord, step: u32) -> bool {
    wf.steps.get(step as usize).is_some_and(|s| {
        jet.records
            .absence_means_unrecorded(unix_ms(wf.created_at), s.job.retention_secs)
    })
}

/// Whether `wf` is gone with its steps: none of them has a record (`jobs`, as
/// [`step_jobs`] reads them) and each one's retention has passed since it was stored.
pub fn expired<T>(jet: &Jet, wf: &WorkflowRecord, jobs: &[Option<T>]) -> bool {
    jobs.iter().all(Option::is_none)
        && (0..wf.steps.len())
            .all(|i| u32::try_from(i).is_ok_and(|i| !may_be_unstarted(jet, wf, i)))
}

/// Remove every key of `wf` (the workflow, its gates, its halt) from the bucket's
/// stream: a purge by subject, so no delete marker stays behind. The workflow's own key
/// goes last, so a sweep cut short is finished by the next.
pub async fn remove(jet: &Jet, wf: &WorkflowRecord) -> Result<(), NatsxError> {
    let key = names::workflow_key(&wf.tenant, &wf.id);
    let prefix = &jet.workflows.prefix;
    for subject in [format!("{prefix}{key}.>"), format!("{prefix}{key}")] {
        jet.workflows
            .stream
            .purge()
            .filter(subject)
            .await
            .map_err(NatsxError::js("remove workflow"))?;
    }
    Ok(())
}

/// Each step's job status and progress now (`None`: no record yet).
pub async fn step_jobs(
    jet: &Jet,
    wf: &WorkflowRecord,
) -> Result<Vec<Option<(JobStatus, f64, u64)>>, NatsxError> {
    let mut out = Vec::with_capacity(wf.steps.len());
    for chunk in wf.steps.chunks(64) {
        let read = futures::future::try_join_all(chunk.iter().map(|s| async move {
            Ok::<_, NatsxError>(
                jet.records
                    .get(&wf.tenant, &s.job.id)
                    .await?
                    .map(|(r, rev)| (r.status, r.progress, rev)),
            )
        }))
        .await?;
        out.extend(read);
    }
    Ok(out)
}
