//! One attempt at one job, from delivery to ack.
//!
//! 1. Decode; garbage is terminated (it can never succeed) and logged.
//! 2. Mark the record `running` by compare-and-set; if it is already terminal
//!    (a redelivery after the job finished), just ack: completion happens once.
//! 3. Compute on the blocking pool while this task sends in-progress acks,
//!    writes throttled progress and enforces the timeout (by the kernel's
//!    cancel flag, so the kernel really stops).
//! 4. Store the result (inline or Object Store), mark `done`, publish `done`,
//!    and only then ack (double ack, so we know it landed).
//! 5. On failure: nak with exponential backoff, or after the last attempt mark
//!    `failed`, publish `failed` and terminate the message.

use crate::chaos::Injected;
use crate::context::WorkerCtx;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{AckKind, Message};
use jetmill_compute::{ComputeError, Control, Task};
use jetmill_metrics::Outcome;
use jetmill_natsx::{events, results, Update};
use jetmill_proto::{
    names, now_ms, EventType, JobEvent, JobMessage, JobRecord, JobSpec, JobStatus, ResultInfo,
    ResultLocation,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tracing::Instrument;

/// How a kernel run ended.
enum KernelEnd {
    /// The decimal text and its summary (computed off the async runtime).
    Finished(String, ResultInfo),
    /// The kernel returned an error, panicked, or timed out: a failed attempt.
    Failed(String),
    /// Stopped by a cancel (drain or user request), not by the timeout.
    Stopped,
}

/// Run one delivery of a job to its end (ack, nak or term).
pub async fn attempt(ctx: &Arc<WorkerCtx>, message: Message, cancel: Arc<AtomicBool>) {
    let delivered = message
        .info()
        .map(|i| i.delivered)
        .unwrap_or(1)
        .clamp(1, i64::from(u32::MAX)) as u32;
    let job = match JobMessage::decode(&message.payload) {
        Ok(job) => job,
        Err(e) => return poisoned(ctx, &message, e.to_string()).await,
    };
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = %job.spec.kind(),
        attempt = delivered,
        otel.kind = "consumer",
        trace_id = tracing::field::Empty,
        queue_wait_ms = crate::observe::queue_wait(&job).as_millis() as u64,
    );
    crate::observe::adopt_trace(&span, &message);
    if !ctx.kind_enabled(job.spec.kind()) {
        // Disabled by the controller: set the job aside, untouched, until it is enabled.
        match jetmill_natsx::control::park(&ctx.jet, &message).await {
            Ok(()) => {
                tracing::info!(parent: &span, "kind disabled; job parked until it is enabled")
            }
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, "cannot park a job of a disabled kind; retrying later");
                ack(&message, AckKind::Nak(Some(Duration::from_secs(5)))).await;
            }
        }
        return;
    }
    crate::observe::queue_wait_span(&message, &job, delivered);
    let _running = ctx.register(job.id, cancel.clone());
    run(ctx, message, job, delivered, cancel)
        .instrument(span)
        .await
}

/// A message that can never be decoded: record why, terminate it, carry on.
async fn poisoned(ctx: &WorkerCtx, message: &Message, reason: String) {
    let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
    tracing::warn!(subject = %message.subject, stream_seq = seq, error = %reason, "terminating a job message that cannot be decoded");
    let event = serde_json::json!({
        "type": "poison",
        "subject": message.subject.as_str(),
        "stream_seq": seq,
        "error": reason,
        "worker": ctx.worker_id,
        "at_ms": now_ms(),
    });
    let published = ctx
        .jet
        .js
        .publish(names::poison_event_subject(seq), event.to_string().into())
        .await;
    match published {
        Ok(ack) => {
            if let Err(e) = ack.await {
                tracing::warn!(error = %e, "could not record the poison event");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not record the poison event"),
    }
    ack(message, AckKind::Term).await;
}

async fn run(
    ctx: &WorkerCtx,
    message: Message,
    job: JobMessage,
    attempt: u32,
    cancel: Arc<AtomicBool>,
) {
    let kind = job.spec.kind().as_str();
    let _in_flight = ctx
        .metrics
        .jobs
        .started(kind, attempt, crate::observe::queue_wait(&job));
    let trace_id = crate::observe::trace_id(&message);
    let records = &ctx.jet.records;
    let fallback = JobRecord::pending(&job);
    let started_at = OffsetDateTime::now_utc();
    let marked = records
        .update(&job.tenant, &job.id, Some(&fallback), |r| {
            if !r.status.can_become(JobStatus::Running) {
                return false;
            }
            r.status = JobStatus::Running;
            r.attempts = r.attempts.max(attempt);
            r.worker = Some(ctx.worker_id.clone());
            r.started_at = Some(started_at);
            r.progress = 0.0;
            r.trace_id = r.trace_id.take().or_else(|| trace_id.clone());
            true
        })
        .instrument(tracing::info_span!("fetch"))
        .await;
    match marked {
        Ok(Update::Applied(_)) | Ok(Update::Missing) => {}
        Ok(Update::Unchanged(r)) => {
            tracing::info!(
                status = r.status.as_str(),
                "job already finished; acknowledging the duplicate delivery"
            );
            ensure_terminal_event(ctx, &job, &r).await;
            ack(&message, AckKind::Ack).await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot mark the job running; handing it back");
            ack(&message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
            return;
        }
    }
    tracing::info!("job started");
    tracing::debug!(kind = job.spec.kind().as_str(), attempt, "computing");
    // The `started` event's PubAck is awaited while the kernel runs (one round trip
    // fewer per small job); it is published first, so it still precedes `done`.
    let timed_compute = async {
        let computing = Instant::now();
        let end = compute(ctx, &message, &job, attempt, cancel)
            .instrument(tracing::info_span!("compute"))
            .await;
        ctx.metrics.jobs.ran(kind, computing.elapsed());
        end
    };
    let (_, end) = tokio::join!(
        emit(ctx, &job, EventType::Started, attempt, None, None),
        timed_compute
    );
    match end {
        KernelEnd::Finished(decimal, info) => {
            finish(ctx, &message, &job, attempt, decimal, info).await
        }
        KernelEnd::Failed(error) => fail(ctx, &message, &job, attempt, error).await,
        KernelEnd::Stopped => stopped(ctx, &message, &job).await,
    }
}

/// A worker that crashed between writing a terminal record and publishing its
/// event leaves the job unacked; on redelivery, publish the missing event
/// (only if the stream does not have it, so there is never a second one).
async fn ensure_terminal_event(ctx: &WorkerCtx, job: &JobMessage, record: &JobRecord) {
    let event = match record.status {
        JobStatus::Done => EventType::Done,
        JobStatus::Failed => EventType::Failed,
        JobStatus::Cancelled => EventType::Cancelled,
        JobStatus::Pending | JobStatus::Running => return,
    };
    let subject = names::event_subject(&job.id, event);
    match ctx
        .jet
        .events
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(_) => {}
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
            tracing::warn!(
                event = event.as_str(),
                "terminal event was missing; publishing it"
            );
            let progress = (event == EventType::Done).then_some(1.0);
            emit(
                ctx,
                job,
                event,
                record.attempts,
                progress,
                record.error.clone(),
            )
            .await;
        }
        Err(e) => tracing::warn!(error = %e, "could not check for the terminal event"),
    }
}

fn to_task(spec: &JobSpec) -> Task {
    match spec {
        JobSpec::Factorial { n } => Task::Factorial { n: *n },
        JobSpec::Fibonacci { n, modulus: None } => Task::Fibonacci { n: *n },
        JobSpec::Fibonacci {
            n,
            modulus: Some(m),
        } => Task::FibonacciMod { n: *n, modulus: *m },
        JobSpec::Sum { terms } => Task::Sum {
            terms: terms.clone(),
        },
    }
}

/// Run the kernel on the blocking pool; meanwhile keep the message alive,
/// report progress and enforce the timeout.
async fn compute(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    attempt: u32,
    cancel: Arc<AtomicBool>,
) -> KernelEnd {
    let task = to_task(&job.spec);
    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
    let threads = ctx.thread_budget();
    let chaos = job.chaos.or(ctx.chaos());
    let (p, c) = (progress.clone(), cancel.clone());
    let parent = tracing::Span::current();
    let mut kernel = tokio::task::spawn_blocking(move || {
        let _span = tracing::info_span!(parent: &parent, "kernel", threads).entered();
        if let Some(chaos) = chaos.filter(|c| c.is_active()) {
            match crate::chaos::before_kernel(&chaos, &c) {
                Ok(()) => {}
                Err(Injected::Cancelled) => return Err(ComputeError::Cancelled.to_string()),
                Err(Injected::Failed(text)) => return Err(text),
            }
        }
        let report = move |f: f64| p.store(f.to_bits(), Ordering::Relaxed);
        let ctl = Control::new(&c, &report, threads);
        let out = jetmill_compute::run(&task, &ctl).map_err(|e| e.to_string())?;
        // Hash and preview here, off the async runtime (tens of MB for big results).
        let info = results::summarize(&out.decimal, ResultLocation::Inline);
        Ok((out.decimal, info))
    });

    let timeout = job
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(ctx.default_timeout);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let tick = (ctx.jet.settings.ack_wait / 3)
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    let mut timed_out = false;
    let mut reported = 0.0f64;
    loop {
        tokio::select! {
            joined = &mut kernel => {
                return match joined {
                    Ok(Ok((decimal, info))) => KernelEnd::Finished(decimal, info),
                    Ok(Err(_)) if timed_out => {
                        KernelEnd::Failed(format!("timed out after {:.3} s", timeout.as_secs_f64()))
                    }
                    Ok(Err(_)) if cancel.load(Ordering::Relaxed) => KernelEnd::Stopped,
                    Ok(Err(e)) => KernelEnd::Failed(e),
                    Err(join) => KernelEnd::Failed(panic_text(join)),
                };
            }
            _ = &mut deadline, if !timed_out => {
                tracing::warn!(timeout_secs = timeout.as_secs_f64(), "attempt timed out; stopping the kernel");
                timed_out = true;
                cancel.store(true, Ordering::Relaxed);
            }
            _ = ticker.tick() => {
                // Tell JetStream we are alive so the job is not redelivered while we work.
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "in-progress ack failed");
                }
                let now = f64::from_bits(progress.load(Ordering::Relaxed));
                let step = (now >= reported + 0.01 && now < 1.0).then_some(now);
                if let Some(f) = step {
                    reported = f;
                }
                if let Some(status) = check_in(ctx, job, attempt, step).await {
                    if status.is_terminal() && !cancel.swap(true, Ordering::Relaxed) {
                        tracing::info!(status = status.as_str(), "job was finished elsewhere (cancelled?); stopping the kernel");
                    }
                }
            }
        }
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("kernel panicked: {text}")
        }
        Err(_) => "kernel task was cancelled".into(),
    }
}

/// Each tick: write progress if it advanced (and publish it), and return the record's
/// status so a job cancelled through the API stops even if the broadcast was missed.
async fn check_in(
    ctx: &WorkerCtx,
    job: &JobMessage,
    attempt: u32,
    progress: Option<f64>,
) -> Option<JobStatus> {
    let written = ctx
        .jet
        .records
        .update(&job.tenant, &job.id, None, |r| match progress {
            Some(f) if r.status == JobStatus::Running && r.progress < f => {
                r.progress = f;
                true
            }
            _ => false,
        })
        .await;
    match written {
        Ok(Update::Applied(r)) => {
            if let Some(f) = progress {
                emit(ctx, job, EventType::Progress, attempt, Some(f), None).await;
            }
            Some(r.status)
        }
        Ok(Update::Unchanged(r)) => Some(r.status),
        Ok(Update::Missing) => None,
        Err(e) => {
            tracing::debug!(error = %e, "progress check-in failed");
            None
        }
    }
}

async fn finish(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    attempt: u32,
    decimal: String,
    mut info: ResultInfo,
) {
    let inline = decimal.len() <= ctx.inline_limit;
    if !inline {
        match results::put_large(&ctx.jet.results, names::RESULTS_BUCKET, &job.id, &decimal)
            .instrument(tracing::info_span!("store object"))
            .await
        {
            Ok(location) => info.location = location,
            Err(e) => {
                return fail(
                    ctx,
                    message,
                    job,
                    attempt,
                    format!("could not store the result: {e}"),
                )
                .await
            }
        }
    }
    let finished_at = OffsetDateTime::now_utc();
    let mut result = inline.then_some(decimal);
    let written = ctx
        .jet
        .records
        .update(&job.tenant, &job.id, Some(&JobRecord::pending(job)), |r| {
            if !r.status.can_become(JobStatus::Done) {
                return false;
            }
            r.status = JobStatus::Done;
            r.progress = 1.0;
            r.error = None;
            r.worker = Some(ctx.worker_id.clone());
            r.finished_at = Some(finished_at);
            r.result = result.take().or_else(|| r.result.take());
            r.result_info = Some(info.clone());
            true
        })
        .instrument(tracing::info_span!("result write"))
        .await;
    match written {
        Ok(Update::Applied(_)) | Ok(Update::Missing) => {
            ctx.done.fetch_add(1, Ordering::Relaxed);
            ctx.metrics
                .jobs
                .finished(job.spec.kind().as_str(), Outcome::Done);
            emit(ctx, job, EventType::Done, attempt, Some(1.0), None).await;
            tracing::info!(digits = info.digits, inline, "job done");
            ack(message, AckKind::Ack).await;
        }
        Ok(Update::Unchanged(r)) => {
            tracing::info!(
                status = r.status.as_str(),
                "job was finished elsewhere; dropping this result"
            );
            ack(message, AckKind::Ack).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record the result; retrying the job");
            ack(message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}

/// Delay before the next attempt: `retry_base * 2^(attempt-1)`, at most 60 s.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(Duration::from_secs(60))
}

async fn fail(ctx: &WorkerCtx, message: &Message, job: &JobMessage, attempt: u32, error: String) {
    ctx.failed.fetch_add(1, Ordering::Relaxed);
    let max_deliver = u32::try_from(ctx.jet.settings.max_deliver)
        .unwrap_or(u32::MAX)
        .max(1);
    let max_attempts = job
        .max_attempts
        .unwrap_or(max_deliver)
        .clamp(1, max_deliver);
    let last = attempt >= max_attempts;
    let next = if last {
        JobStatus::Failed
    } else {
        JobStatus::Pending
    };
    let finished_at = OffsetDateTime::now_utc();
    let written = ctx
        .jet
        .records
        .update(&job.tenant, &job.id, Some(&JobRecord::pending(job)), |r| {
            if !r.status.can_become(next) {
                return false;
            }
            r.status = next;
            r.error = Some(error.clone());
            r.attempts = r.attempts.max(attempt);
            if last {
                r.finished_at = Some(finished_at);
            }
            true
        })
        .await;
    if let Err(e) = &written {
        tracing::warn!(error = %e, "could not record the failed attempt");
    }
    if last {
        tracing::warn!(%error, attempts = attempt, "job failed for good");
        ctx.metrics
            .jobs
            .finished(job.spec.kind().as_str(), Outcome::Failed);
        emit(ctx, job, EventType::Failed, attempt, None, Some(error)).await;
        ack(message, AckKind::Term).await;
    } else {
        let delay = backoff(ctx.retry_base, attempt);
        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "attempt failed; will retry");
        ctx.metrics.jobs.retried(job.spec.kind().as_str());
        emit(ctx, job, EventType::Retried, attempt, None, Some(error)).await;
        ack(message, AckKind::Nak(Some(delay))).await;
    }
}

/// The kernel was stopped by a cancel flag: a drain hands the job back at once.
async fn stopped(ctx: &WorkerCtx, message: &Message, job: &JobMessage) {
    let current = ctx.jet.records.get(&job.tenant, &job.id).await;
    if let Ok(Some((r, _))) = &current {
        if r.status.is_terminal() {
            if r.status == JobStatus::Cancelled {
                ctx.metrics
                    .jobs
                    .finished(job.spec.kind().as_str(), Outcome::Cancelled);
            }
            ack(message, AckKind::Term).await;
            return;
        }
    }
    let _ = ctx
        .jet
        .records
        .update(&job.tenant, &job.id, None, |r| {
            if !r.status.can_become(JobStatus::Pending) {
                return false;
            }
            r.status = JobStatus::Pending;
            r.progress = 0.0;
            true
        })
        .await;
    tracing::info!("job handed back to the queue");
    ack(message, AckKind::Nak(None)).await;
}

pub(crate) async fn emit(
    ctx: &WorkerCtx,
    job: &JobMessage,
    event: EventType,
    attempt: u32,
    progress: Option<f64>,
    error: Option<String>,
) {
    let ev = JobEvent {
        job_id: job.id,
        tenant: job.tenant.clone(),
        event,
        at_ms: now_ms(),
        attempt,
        worker: Some(ctx.worker_id.clone()),
        progress,
        error,
    };
    let span = tracing::info_span!(
        "event",
        otel.name = format!("event {}", event.as_str()),
        otel.kind = "producer"
    );
    if let Err(e) = events::publish(&ctx.jet.js, &ev).instrument(span).await {
        tracing::warn!(event = event.as_str(), error = %e, "could not publish event");
    }
}

/// Acknowledge and wait for the server to confirm, so we know whether it landed.
async fn ack(message: &Message, kind: AckKind) {
    if let Err(e) = message.double_ack_with(kind).await {
        tracing::warn!(error = %e, "acknowledgement not confirmed; the job may be delivered again (completion stays idempotent)");
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, 4), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), Duration::from_secs(60));
    }
}
