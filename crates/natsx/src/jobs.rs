//! The job message as published on `JOBS`: its headers, shared by the gateway's submits
//! and the workers' firings of recurring schedules; the gateway's submit, retry and
//! cancel writes of a job.

use crate::{Jet, NatsxError};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use jetmill_proto::{names, now_ms, EventType, JobEvent, JobId, JobMessage, JobStatus};
use time::OffsetDateTime;

/// The headers of `msg` on `JOBS`: `Nats-Msg-Id` (the job id: publish dedup) and the
/// readable `Jetmill-*` ones `nats stream view` shows.
pub fn headers(msg: &JobMessage) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let id = msg.id.to_string();
    headers.insert("Nats-Msg-Id", id.as_str());
    headers.insert(names::HDR_JOB_ID, id.as_str());
    headers.insert(names::HDR_KIND, msg.spec.kind().as_str());
    headers.insert(names::HDR_TENANT, msg.tenant.as_str());
    headers.insert(names::HDR_SCHEMA, msg.schema().to_string().as_str());
    if let Some(batch) = &msg.batch {
        headers.insert(names::HDR_BATCH_ID, batch.to_string().as_str());
    }
    if let Some(schedule) = &msg.schedule {
        headers.insert(names::HDR_SCHEDULE_ID, schedule.to_string().as_str());
    }
    headers.insert(names::HDR_CONTENT_TYPE, names::CONTENT_TYPE_POSTCARD);
    headers
}

/// Publish `msg` to `JOBS` (a delayed job: its schedule on `SCHEDULES`) and await the
/// PubAck: **the commit** of a submit.
#[tracing::instrument(name = "publish", level = "debug", skip_all, fields(otel.kind = "producer", job_id = %msg.id))]
pub async fn publish(js: &Context, msg: &JobMessage) -> Result<(), NatsxError> {
    acked(send(js, msg, None).await?).await
}

/// Publish a dead letter's kept `msg` again as its retry number `retry` ([`send`] with
/// `Some(retry)`) and await the PubAck: the commit of a retry.
pub async fn publish_retry(js: &Context, msg: &JobMessage, retry: u32) -> Result<(), NatsxError> {
    acked(send(js, msg, Some(retry)).await?).await
}

/// Await the PubAck of a job [`send`] sent; a refusal keeps the server's JetStream
/// error as its `source()` (queue full, store full).
pub async fn acked(ack: PublishAckFuture) -> Result<(), NatsxError> {
    ack.await.map_err(NatsxError::js("publish job"))?;
    Ok(())
}

/// Send `msg` to `JOBS` without waiting for its PubAck (the returned future is the ack,
/// see [`acked`]), so a batch can send every job before awaiting any ack. With `retry`
/// it is the operator's retry number `retry` of a dead letter: its own dedup id
/// (`<id>.retry.<n>`) and the `Jetmill-Retry` header.
pub async fn send(
    js: &Context,
    msg: &JobMessage,
    retry: Option<u32>,
) -> Result<PublishAckFuture, NatsxError> {
    let payload = msg.encode().map_err(|e| NatsxError::Corrupt {
        what: "job message".into(),
        detail: e.to_string(),
    })?;
    let mut headers = headers(msg);
    if let Some(n) = retry {
        headers.insert("Nats-Msg-Id", format!("{}.retry.{n}", msg.id).as_str());
        headers.insert(names::HDR_RETRY, n.to_string().as_str());
    }
    crate::trace::inject_current(&mut headers);
    let mut subject = names::job_subject(msg.priority, msg.spec.kind());
    if let Some(at) = msg.run_at_ms.filter(|_| msg.scheduled_after(now_ms())) {
        // A delayed job: its schedule on SCHEDULES, which the broker turns into the job
        // message on `jobs.due.` at `at` (keeping these headers but Nats-Msg-Id); a
        // worker then moves it to `subject` on JOBS.
        let at = jetmill_proto::record::ms_to_time(at)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| NatsxError::Corrupt {
                what: "job start time".into(),
                detail: e.to_string(),
            })?;
        headers.insert(names::HDR_SCHEDULE, format!("@at {at}").as_str());
        headers.insert(
            names::HDR_SCHEDULE_TARGET,
            names::due_subject(msg.priority, msg.spec.kind()).as_str(),
        );
        subject = names::schedule_subject(&msg.id);
    }
    js.publish_with_headers(subject, headers, payload.into())
        .await
        .map_err(NatsxError::js("publish job"))
}

/// Cancel job `id` of `tenant`: a delayed job's schedule is purged, the record becomes
/// `cancelled` by compare-and-set (`Unchanged` if it had ended, `Missing` if none), then
/// the `cancelled` event and the broadcast to its worker follow (best effort: the
/// worker also sees the record on its next check-in).
pub async fn cancel(jet: &Jet, tenant: &str, id: &JobId) -> Result<crate::Update, NatsxError> {
    let id = *id;
    if let Some((record, _)) = jet.records.get(tenant, &id).await? {
        if record.status == JobStatus::Scheduled {
            unschedule(jet, &id).await?;
        }
    }
    let now = OffsetDateTime::now_utc();
    let updated = jet
        .records
        .update(tenant, &id, None, |r| r.cancel(now).is_ok())
        .await?;
    let crate::Update::Applied(record) = &updated else {
        return Ok(updated);
    };
    let event = JobEvent {
        job_id: id,
        tenant: record.tenant.clone(),
        event: EventType::Cancelled,
        at_ms: now_ms(),
        attempt: record.attempts,
        worker: None,
        progress: None,
        error: None,
        started_at_ms: None,
    };
    if let Err(e) = crate::events::publish(&jet.js, &event).await {
        tracing::warn!(job_id = %id, error = %e, "could not publish cancelled event");
    }
    if let Err(e) = broadcast_cancel(jet, &id).await {
        tracing::warn!(job_id = %id, error = %e, "could not broadcast the cancel");
    }
    tracing::info!(job_id = %id, "job cancelled");
    Ok(updated)
}

/// Tell the worker running job `id` to raise its kernel's cancel flag now (core NATS
/// `jetmill.cancel.<id>`, fire and forget: a worker that misses it sees the record on
/// its next check-in).
pub async fn broadcast_cancel(jet: &Jet, id: &JobId) -> Result<(), NatsxError> {
    jet.client
        .publish(names::cancel_subject(id), bytes::Bytes::new())
        .await
        .map_err(NatsxError::js("broadcast a cancel"))
}

/// Remove a delayed job's schedule from `SCHEDULES` (nothing to remove once it fired:
/// the worker then drops the job for its cancelled record).
pub async fn unschedule(jet: &Jet, id: &JobId) -> Result<(), NatsxError> {
    purge_schedule(jet, id)
        .await
        .map_err(NatsxError::js("purge the job's schedule"))
}

/// Purge `jobs.sched.<id>` from `SCHEDULES`: a delayed job's schedule, or a recurring
/// schedule's clock.
pub(crate) async fn purge_schedule(
    jet: &Jet,
    id: &JobId,
) -> Result<(), async_nats::jetstream::stream::PurgeError> {
    jet.schedules
        .purge()
        .filter(names::schedule_subject(id))
        .await?;
    Ok(())
}
