//! A worker's part in workflows: after a step's record is terminal (and before its
//! message is acked) it advances the workflow (`natsx::workflows::advance`), and a
//! step whose input names other steps' results gets them read before its kernel runs.

use crate::context::WorkerCtx;
use crate::settle::AttemptError;
use jetmill_compute::Task;
use jetmill_natsx::{results, workflows, NatsxError};
use jetmill_proto::{
    workflow::result_refs, JobId, JobMessage, JobSpec, JobStatus, ResultLocation, WorkflowRecord,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Results read at once for one step.
const READS: usize = 64;
/// Workflows kept in memory at once (they never change once stored).
const CACHED: usize = 256;

/// Recently used workflows by id.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<JobId, Arc<WorkflowRecord>>>);

impl Cache {
    fn get(&self, id: &JobId) -> Option<Arc<WorkflowRecord>> {
        self.0.lock().ok()?.get(id).cloned()
    }

    fn put(&self, wf: Arc<WorkflowRecord>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CACHED {
                map.clear();
            }
            map.insert(wf.id, wf);
        }
    }
}

/// The workflow `id` of `tenant` (cached), `None` if it is not stored.
async fn workflow(
    ctx: &WorkerCtx,
    tenant: &str,
    id: &JobId,
) -> Result<Option<Arc<WorkflowRecord>>, NatsxError> {
    if let Some(wf) = ctx.workflows.get(id) {
        return Ok(Some(wf));
    }
    let Some(wf) = workflows::get(&ctx.jet, tenant, id).await? else {
        return Ok(None);
    };
    let wf = Arc::new(wf);
    ctx.workflows.put(wf.clone());
    Ok(Some(wf))
}

/// `job` ended `status` (its record says so): if it is a workflow step, advance the
/// workflow. `false` when NATS could not take it: the caller must not settle the
/// message then, so a later delivery advances it.
pub async fn advance(ctx: &WorkerCtx, job: &JobMessage, status: JobStatus) -> bool {
    let Some(step) = &job.workflow else {
        return true;
    };
    let result = async {
        let Some(wf) = workflow(ctx, &job.tenant, &step.workflow).await? else {
            tracing::warn!(workflow = %step.workflow, "the step's workflow is not stored (deleted?); nothing to advance");
            return Ok(());
        };
        workflows::advance(&ctx.jet, &ctx.gates, &wf, step.step, status).await
    }
    .await;
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(workflow = %step.workflow, step = %step.name, error = %e,
                "cannot advance the workflow; handing the step back so a later delivery does");
            false
        }
    }
}

/// The kernel's task for `job`: a sum's `@<job id>` terms (results of other steps)
/// are read first. A referenced job that is not `done` fails the step (no retry helps).
pub async fn task_of(ctx: &WorkerCtx, job: &JobMessage) -> Result<Task, AttemptError> {
    if let JobSpec::FactorialCombine { n, parts } = &job.spec {
        return combine_task(ctx, &job.tenant, *n, parts).await;
    }
    let JobSpec::Sum { terms } = &job.spec else {
        return Ok(crate::execute::to_task(&job.spec));
    };
    let refs = result_refs(terms);
    if refs.iter().all(Option::is_none) {
        return Ok(crate::execute::to_task(&job.spec));
    }
    // Read 64 results at a time (a fan-in may name a thousand).
    let mut out = Vec::with_capacity(terms.len());
    let pairs: Vec<(&String, Option<JobId>)> = terms.iter().zip(refs).collect();
    for chunk in pairs.chunks(READS) {
        let read = futures::future::try_join_all(chunk.iter().map(|(term, id)| async move {
            match id {
                None => Ok((*term).clone()),
                Some(id) => result_text(ctx, &job.tenant, id).await,
            }
        }))
        .await?;
        out.extend(read);
    }
    Ok(Task::Sum { terms: out })
}

/// A split factorial's combine: every part's binary partial product, read from the
/// Object Store (a few at a time) and decoded.
async fn combine_task(
    ctx: &WorkerCtx,
    tenant: &str,
    n: u64,
    parts: &[JobId],
) -> Result<Task, AttemptError> {
    let mut out = Vec::with_capacity(parts.len());
    for chunk in parts.chunks(4) {
        let read =
            futures::future::try_join_all(chunk.iter().map(|id| part_of(ctx, tenant, id))).await?;
        out.extend(read);
    }
    Ok(Task::FactorialCombine { n, parts: out })
}

/// The partial product job `id` (a `done` part) stored.
async fn part_of(
    ctx: &WorkerCtx,
    tenant: &str,
    id: &JobId,
) -> Result<jetmill_compute::factorial::Partial, AttemptError> {
    let record = done_record(ctx, tenant, id).await?;
    let name = record.step.clone().unwrap_or_else(|| id.to_string());
    let Some((ResultLocation::Object { name: object, .. }, bytes)) =
        record.result_info.map(|i| (i.location, i.bytes))
    else {
        return Err(AttemptError::Invalid(format!(
            "step {name} is done but its partial product is gone (expired?)"
        )));
    };
    let bytes = results::read_bytes(&ctx.jet.results, &object, bytes as usize).await?;
    jetmill_compute::factorial::Partial::from_bytes(&bytes)
        .map_err(|e| AttemptError::Invalid(format!("step {name}'s partial product: {e}")))
}

/// The record of job `id`, which must be `done`.
async fn done_record(
    ctx: &WorkerCtx,
    tenant: &str,
    id: &JobId,
) -> Result<jetmill_proto::JobRecord, AttemptError> {
    let Some((record, _)) = ctx.jet.records.get(tenant, id).await? else {
        return Err(AttemptError::Invalid(format!(
            "the result of job {id} is referenced, but that job does not exist"
        )));
    };
    if record.status != JobStatus::Done {
        let name = record.step.clone().unwrap_or_else(|| id.to_string());
        return Err(AttemptError::Invalid(format!(
            "the result of step {name} is referenced, but it is {}",
            record.status.as_str()
        )));
    }
    Ok(record)
}

/// The decimal result of job `id`, which must be `done`.
async fn result_text(ctx: &WorkerCtx, tenant: &str, id: &JobId) -> Result<String, AttemptError> {
    let record = done_record(ctx, tenant, id).await?;
    let name = record.step.clone().unwrap_or_else(|| id.to_string());
    if let Some(text) = record.result {
        return Ok(text);
    }
    match record.result_info.map(|i| (i.location, i.bytes)) {
        Some((ResultLocation::Object { name: object, .. }, bytes)) => {
            Ok(results::read_text(&ctx.jet.results, &object, bytes as usize).await?)
        }
        _ => Err(AttemptError::Invalid(format!(
            "step {name} is done but its result is gone (expired?)"
        ))),
    }
}
