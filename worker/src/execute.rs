//! One attempt at one job, from delivery to ack.
//!
//! 1. Decode; garbage is terminated (it can never succeed) and logged.
//! 2. Read the record (while the kernel starts); if it is already terminal (a
//!    redelivery after the job finished, or a job cancelled while queued), stop the
//!    kernel and just ack: completion happens once.
//! 3. Compute on the blocking pool while this task sends in-progress acks,
//!    writes throttled progress and enforces the timeout (by the kernel's
//!    cancel flag, so the kernel really stops); `started` is published meanwhile.
//!    Once the kernel has run for `--running-after-ms` the record is marked
//!    `running` by compare-and-set; quicker jobs skip that write. Tiny kernels
//!    (`Task::is_tiny`) run in place instead of on the blocking pool.
//! 4. Free the slot, store the result (inline or Object Store), mark `done` by
//!    compare-and-set against the revision read or written in 2-3 (no second read
//!    unless someone wrote meanwhile), publish `done`, and only then ack (a
//!    lost ack means one more delivery, which finds `done` and just acks).
//! 5. On failure: nak with exponential backoff, or after the last attempt mark
//!    `failed`, publish `failed` and terminate the message.

use crate::chaos::Injected;
use crate::context::Slot;
use crate::context::WorkerCtx;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{AckKind, Message};
use futures::FutureExt;
use jetmill_compute::{ComputeError, Control, Task};
use jetmill_metrics::Outcome;
use jetmill_natsx::{events, results, Update, Version};
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
pub async fn attempt(ctx: &Arc<WorkerCtx>, message: Message, cancel: Arc<AtomicBool>, slot: Slot) {
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
    run(ctx, message, job, delivered, cancel, slot)
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
    mut slot: Slot,
) {
    let kind = job.spec.kind().as_str();
    let _in_flight = ctx
        .metrics
        .jobs
        .started(kind, attempt, crate::observe::queue_wait(&job));
    let trace_id = crate::observe::trace_id(&message);
    tracing::info!("job started");
    tracing::debug!(kind = job.spec.kind().as_str(), attempt, "computing");
    let started_at = OffsetDateTime::now_utc();
    let running = Running {
        worker: &ctx.worker_id,
        attempt,
        started_at,
        trace_id,
    };
    // The record is read while the kernel already runs: a small job's slot is then
    // held for its kernel alone, not for a round trip first. A record found terminal
    // (a duplicate delivery, a job cancelled while queued) stops the kernel at once.
    let fallback = JobRecord::pending(&job);
    let read = async {
        match ctx
            .jet
            .records
            .read_version(&job.tenant, &job.id, Some(&fallback))
            .instrument(tracing::info_span!("fetch"))
            .await
        {
            Ok(v) => Some(v.unwrap_or_else(|| Version::absent(fallback.clone()))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the job record; the result write will read again");
                None
            }
        }
    }
    .boxed()
    .shared();
    let live = |v: &Version| v.record.status.can_become(JobStatus::Running);
    let computing = async {
        let computing = Instant::now();
        let end = compute(ctx, &message, &job, attempt, cancel.clone())
            .instrument(tracing::info_span!("compute"))
            .await;
        ctx.metrics.jobs.ran(kind, computing.elapsed());
        ctx.kernel_ran(computing.elapsed());
        end
    };
    // Once the read is in: a terminal record stops the kernel; a live one gets its
    // `started` published (while the kernel runs), always stored before `done`.
    let announce = async {
        let v = read.clone().await;
        match &v {
            Some(v) if !live(v) => cancel.store(true, Ordering::Relaxed),
            Some(v) if !v.stored() => {
                // This delivery overtook the gateway's writes: `accepted` (same dedup id
                // as the gateway's) goes first, so the stream tells the story in order.
                emit(ctx, &job, EventType::Accepted, 0, None, None).await;
                emit(ctx, &job, EventType::Started, attempt, None, None).await;
            }
            _ => emit(ctx, &job, EventType::Started, attempt, None, None).await,
        }
        v
    };
    // A job still computing after `running_after` is recorded running while its
    // kernel goes on; once begun, that write is seen through before `done`.
    let marking = std::sync::atomic::AtomicBool::new(false);
    let mark = async {
        tokio::time::sleep(ctx.running_after).await;
        marking.store(true, Ordering::Relaxed);
        match read.clone().await {
            Some(v) if live(&v) => mark_running(ctx, &job, &running, v, &cancel).await,
            _ => None,
        }
    };
    tokio::pin!(computing, announce, mark);
    let mut version: Option<Option<Version>> = None;
    let mut marked: Option<Option<Version>> = None;
    let end = loop {
        tokio::select! {
            end = &mut computing => break end,
            v = &mut announce, if version.is_none() => version = Some(v),
            v = &mut mark, if marked.is_none() => marked = Some(v),
        }
    };
    let version = match version {
        Some(v) => v,
        None => announce.await,
    };
    if marked.is_none() && marking.load(Ordering::Relaxed) {
        marked = Some(mark.await);
    }
    if let Some(v) = version.as_ref().filter(|v| !live(v)) {
        tracing::info!(
            status = v.record.status.as_str(),
            "job already finished; acknowledging the duplicate delivery"
        );
        ensure_terminal_event(ctx, &job, &v.record).await;
        ack(&message, AckKind::Ack).await;
        return;
    }
    // What the `done` write starts from: the running mark's version, else the read.
    let known = match marked {
        None => version,
        Some(v) => v,
    };
    match end {
        KernelEnd::Finished(decimal, info) => {
            finish(
                ctx, &message, &job, &running, decimal, info, known, &mut slot,
            )
            .await
        }
        KernelEnd::Failed(error) => fail(ctx, &message, &job, attempt, error).await,
        KernelEnd::Stopped => stopped(ctx, &message, &job).await,
    }
}

/// What this attempt writes into the record when it shows as running or done.
struct Running<'a> {
    worker: &'a str,
    attempt: u32,
    started_at: OffsetDateTime,
    trace_id: Option<String>,
}

impl Running<'_> {
    fn apply(&self, r: &mut JobRecord) {
        r.attempts = r.attempts.max(self.attempt);
        r.worker = Some(self.worker.to_string());
        r.started_at = Some(self.started_at);
        r.trace_id = r.trace_id.take().or_else(|| self.trace_id.clone());
    }
}

/// Record `running`. Returns the version written (`None` if the
/// write failed: the `done` write then reads afresh). A record found terminal (the
/// job was cancelled meanwhile) stops the kernel.
async fn mark_running(
    ctx: &WorkerCtx,
    job: &JobMessage,
    running: &Running<'_>,
    version: Version,
    cancel: &AtomicBool,
) -> Option<Version> {
    let marked = ctx
        .jet
        .records
        .update_from(
            &job.tenant,
            &job.id,
            Some(version),
            Some(&JobRecord::pending(job)),
            |r| {
                if !r.status.can_become(JobStatus::Running) {
                    return false;
                }
                r.status = JobStatus::Running;
                r.progress = 0.0;
                running.apply(r);
                true
            },
        )
        .await;
    match marked {
        Ok((Update::Applied(_), v)) => v,
        Ok((Update::Unchanged(r), v)) => {
            if r.status.is_terminal() && !cancel.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    status = r.status.as_str(),
                    "job was finished elsewhere (cancelled?); stopping the kernel"
                );
            }
            v
        }
        Ok((Update::Missing, v)) => v,
        Err(e) => {
            tracing::warn!(error = %e, "could not mark the job running; carrying on");
            None
        }
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
    let chaos = job.chaos.or(ctx.chaos());
    if task.is_tiny() && !chaos.is_some_and(|c| c.is_active()) {
        return tiny(&task, &cancel);
    }
    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
    let threads = ctx.thread_budget();
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

/// Run a tiny kernel (well under a millisecond, see `Task::is_tiny`) right here: a
/// hand-off to the blocking pool and back costs more than the kernel itself.
fn tiny(task: &Task, cancel: &AtomicBool) -> KernelEnd {
    let _span = tracing::info_span!("kernel", threads = 1).entered();
    let report = |_: f64| {};
    let ctl = Control::new(cancel, &report, 1);
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jetmill_compute::run(task, &ctl)
    }));
    match ran {
        Ok(Ok(out)) => {
            let info = results::summarize(&out.decimal, ResultLocation::Inline);
            KernelEnd::Finished(out.decimal, info)
        }
        Ok(Err(_)) if cancel.load(Ordering::Relaxed) => KernelEnd::Stopped,
        Ok(Err(e)) => KernelEnd::Failed(e.to_string()),
        Err(payload) => KernelEnd::Failed(panic_payload_text(payload.as_ref())),
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => panic_payload_text(payload.as_ref()),
        Err(_) => "kernel task was cancelled".into(),
    }
}

fn panic_payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("kernel panicked: {text}")
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

#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    running: &Running<'_>,
    decimal: String,
    mut info: ResultInfo,
    known: Option<Version>,
    slot: &mut Slot,
) {
    let attempt = running.attempt;
    let inline = decimal.len() <= ctx.inline_limit;
    if inline {
        // The kernel is over and the result is small: the slot serves the next job
        // while this one writes (finishing room bounds how many do).
        slot.release();
    } else {
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
    slot.release();
    let result = inline.then_some(decimal);
    let written = ctx
        .jet
        .records
        .update_from(
            &job.tenant,
            &job.id,
            known,
            Some(&JobRecord::pending(job)),
            |r| {
                if !r.status.can_become(JobStatus::Done) {
                    return false;
                }
                r.status = JobStatus::Done;
                r.progress = 1.0;
                r.error = None;
                running.apply(r);
                r.finished_at = Some(finished_at);
                // Cloned, not taken: `decide` runs again after a conflicting write.
                if result.is_some() {
                    r.result = result.clone();
                }
                r.result_info = Some(info.clone());
                true
            },
        )
        .instrument(tracing::info_span!("result write"))
        .await
        .map(|(update, _)| update);
    match written {
        Ok(Update::Applied(_)) | Ok(Update::Missing) => {
            ctx.done.fetch_add(1, Ordering::Relaxed);
            ctx.metrics
                .jobs
                .finished(job.spec.kind().as_str(), Outcome::Done);
            emit(ctx, job, EventType::Done, attempt, Some(1.0), None).await;
            tracing::info!(digits = info.digits, inline, "job done");
            ack_done(message).await;
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

/// Acknowledge a job whose `done` record and event are stored, without waiting for
/// the server's confirmation: if the ack is lost the job is delivered again after
/// `ack_wait`, and that delivery finds the record `done` and only acks (no second
/// result, no second event). Saves a reply per job on the hot path.
async fn ack_done(message: &Message) {
    if let Err(e) = message.ack().await {
        tracing::warn!(error = %e, "could not send the ack; the job will be delivered again and acked then");
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
