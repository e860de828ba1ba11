//! Things a worker hears besides jobs: cancel broadcasts and JetStream's
//! max-deliveries advisories.

use crate::context::WorkerCtx;
use crate::execute::emit;
use futures::StreamExt;
use jetmill_natsx::Update;
use jetmill_proto::{names, EventType, JobId, JobMessage, JobRecord, JobStatus};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Raise the cancel flag of any job named on `jetmill.cancel.<id>` that runs here.
pub async fn cancels(ctx: Arc<WorkerCtx>, stop: CancellationToken) {
    let mut sub = match ctx.jet.client.subscribe(names::CANCEL_SUBJECTS).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to cancel broadcasts; cancels apply at the next progress check-in");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let id = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<JobId>().ok());
        if let Some(id) = id {
            if ctx.cancel(&id) {
                tracing::info!(job_id = %id, "cancel received; stopping the kernel");
            }
        }
    }
}

/// Queue group shared by all workers, so each advisory is handled once.
const ADVISORY_GROUP: &str = "jetmill-workers";

#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// A job whose last delivery was never acked (its worker died) stays in the
/// stream after `max_deliver`: record it `failed`, publish `failed`, delete it.
pub async fn max_deliveries(ctx: Arc<WorkerCtx>, stop: CancellationToken) {
    let subject = names::max_deliveries_advisory();
    let mut sub = match ctx
        .jet
        .client
        .queue_subscribe(subject, ADVISORY_GROUP.into())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to max-deliveries advisories");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        match serde_json::from_slice::<MaxDeliveries>(&msg.payload) {
            Ok(adv) => give_up(&ctx, adv).await,
            Err(e) => tracing::warn!(error = %e, "unreadable max-deliveries advisory"),
        }
    }
}

async fn give_up(ctx: &WorkerCtx, adv: MaxDeliveries) {
    let stored = match ctx.jet.jobs.get_raw_message(adv.stream_seq).await {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(stream_seq = adv.stream_seq, error = %e, "advisory for a message already gone");
            return;
        }
    };
    let error = format!(
        "gave up after {} deliveries: the worker running the last attempt stopped responding",
        adv.deliveries
    );
    if let Ok(job) = JobMessage::decode(&stored.payload) {
        let attempts = u32::try_from(adv.deliveries).unwrap_or(u32::MAX);
        let now = OffsetDateTime::now_utc();
        let written = ctx
            .jet
            .records
            .update(&job.tenant, &job.id, Some(&JobRecord::pending(&job)), |r| {
                if !r.status.can_become(JobStatus::Failed) {
                    return false;
                }
                r.status = JobStatus::Failed;
                r.error = Some(error.clone());
                r.attempts = r.attempts.max(attempts);
                r.finished_at = Some(now);
                true
            })
            .await;
        match written {
            Ok(Update::Applied(_)) => {
                tracing::warn!(job_id = %job.id, %error, "job failed for good");
                ctx.metrics
                    .jobs
                    .finished(job.spec.kind().as_str(), jetmill_metrics::Outcome::Failed);
                emit(ctx, &job, EventType::Failed, attempts, None, Some(error)).await;
            }
            Ok(_) => {}
            Err(e) => {
                // Leave the message: the next advisory-less check (operator) can still see it.
                tracing::warn!(job_id = %job.id, error = %e, "could not record the given-up job");
                return;
            }
        }
    }
    if let Err(e) = ctx.jet.jobs.delete_message(adv.stream_seq).await {
        tracing::warn!(stream_seq = adv.stream_seq, error = %e, "could not delete the given-up job message");
    }
}
