//! One attempt at one job, from delivery to its [`Verdict`].
//!
//! 1. Decode; garbage is terminated (it can never succeed) and logged. A job of a
//!    disabled kind is parked; one over a run limit waits in the queue (`limits`).
//! 2. Read the record (while the kernel starts). The attempt's number comes from the
//!    record (`attempts + 1`; hand-backs do not count), not from the delivery count.
//!    A terminal record (a redelivery after the job finished, a job cancelled while
//!    queued) or one with no attempts left (its worker died on the last one) stops
//!    the kernel; a record that cannot be read hands the job back.
//! 3. Compute on the blocking pool while this task sends in-progress acks,
//!    writes throttled progress and enforces the timeout (by the kernel's
//!    cancel flag, so the kernel really stops); `started` is published meanwhile.
//!    Once the kernel has run for `--running-after-ms` the record is marked
//!    `running` by compare-and-set; quicker jobs skip that write. Tiny kernels
//!    (`Task::is_tiny`) run in place instead of on the blocking pool.
//! 4. Store a large result in the Object Store (the slot is held through it), free
//!    the slot, and hand the verdict to [`settle`](mod@crate::settle), the one place that writes the
//!    record's outcome, publishes the event and acks, naks or terminates.

use crate::chaos::Injected;
use crate::context::{Slot, WorkerCtx};
use crate::settle::{self, emit, settle, Ack, Attempt, AttemptError, Done, Verdict};
use async_nats::jetstream::{AckKind, Message};
use futures::FutureExt;
use jetmill_compute::{ComputeError, Control, Task};
use jetmill_natsx::{results, NatsxError, Update, Version};
use jetmill_proto::{
    names, now_ms, AttemptInfo, EventType, JobMessage, JobRecord, JobSpec, JobStatus, ResultInfo,
    ResultLocation,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tracing::Instrument;

/// A kernel's result: the decimal text and its summary (computed off the async runtime),
/// and a split factorial part's binary partial product (its text then empty).
type Output = (String, ResultInfo, Option<Vec<u8>>);

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
        delivery = delivered,
        attempt = tracing::field::Empty,
        otel.kind = "consumer",
        trace_id = tracing::field::Empty,
        queue_wait_ms = crate::observe::queue_wait(&job).as_millis() as u64,
    );
    crate::observe::adopt_trace(&span, &message);
    if !ctx.kind_enabled(job.spec.kind()) {
        // Disabled by the controller: set the job aside, untouched, until it is enabled.
        // Not an attempt: the job never started here.
        match jetmill_natsx::control::park(&ctx.jet, &message).await {
            Ok(()) => {
                tracing::info!(parent: &span, "kind disabled; job parked until it is enabled")
            }
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, "cannot park a job of a disabled kind; retrying later");
                settle::ack(&message, AckKind::Nak(Some(Duration::from_secs(5)))).await;
            }
        }
        return;
    }
    // The memory budget: a job that does not fit waits (not an attempt); one that no
    // live worker can hold fails now, with the reason, instead of an OOM kill.
    let _memory = match crate::memory::admit(ctx, &job).await {
        crate::memory::Fit::Run(reservation) => reservation,
        crate::memory::Fit::Wait(after) => {
            tracing::info!(parent: &span, wait_ms = after.as_millis() as u64, "the job does not fit this worker's memory budget now; handing it back");
            settle::ack(&message, AckKind::Nak(Some(after))).await;
            return;
        }
        crate::memory::Fit::Never(reason) => {
            tracing::warn!(parent: &span, %reason, "no worker's memory budget can hold this job; failing it");
            let attempt = settle::Attempt::default();
            settle(
                ctx,
                &message,
                &job,
                attempt,
                delivered,
                Verdict::Abort { reason },
            )
            .instrument(span)
            .await;
            return;
        }
    };
    // Cluster-wide run limits: a job that must wait goes back to the queue untouched
    // (not an attempt), before anything is written or computed.
    let places = match crate::limits::admit(ctx, &job, delivered).await {
        crate::limits::Admission::Go(places) => places,
        crate::limits::Admission::Wait(after) => {
            tracing::debug!(parent: &span, wait_ms = after.as_millis() as u64, "run limit reached; the job waits in the queue");
            settle::ack(&message, AckKind::Nak(Some(after))).await;
            return;
        }
        crate::limits::Admission::Unknown(e) => {
            tracing::warn!(parent: &span, error = %e, "cannot check the run limits; handing the job back");
            settle::ack(&message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
            return;
        }
    };
    crate::observe::queue_wait_span(&message, &job, delivered);
    let _running = ctx.register(job.id, cancel.clone());
    let mut slot = slot;
    async {
        // The slot is held through the kernel and a large result's upload.
        let (attempt, verdict) = run(ctx, &message, &job, delivered, cancel).await;
        // The kernel is over: the slot serves the next job, while the finishing room is
        // held until this one is settled (what `--finishing-limit` and a drain count).
        slot.release();
        settle(ctx, &message, &job, attempt, delivered, verdict).await;
        // The record is final (or the job handed back): its places are free again.
        places.release().await;
        drop(slot);
    }
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
    settle::ack(message, AckKind::Term).await;
}

/// What the record read at the start says this delivery is.
#[derive(Clone)]
enum Plan {
    /// Compute attempt `attempt` (the budget's `last` one or not), writing from `version`.
    Run {
        version: Version,
        attempt: u32,
        last: bool,
    },
    /// The record is terminal: nothing to compute.
    Finished(JobRecord),
    /// No attempts left: the last one's worker stopped responding (or the limit
    /// was lowered since).
    GiveUp(JobRecord),
    /// The record could not be read: NATS is out of reach or refuses.
    Unknown(Arc<NatsxError>),
}

impl Plan {
    fn of(read: Result<Version, Arc<NatsxError>>, max_attempts: u32) -> Plan {
        match read {
            Err(e) => Plan::Unknown(e),
            Ok(v) if v.record.status.is_terminal() => Plan::Finished(v.record),
            Ok(v) if !v.record.may_attempt(v.record.next_attempt(), max_attempts) => {
                Plan::GiveUp(v.record)
            }
            Ok(v) => Plan::Run {
                attempt: v.record.next_attempt(),
                last: !v
                    .record
                    .may_attempt(v.record.next_attempt() + 1, max_attempts),
                version: v,
            },
        }
    }
}

/// Compute this delivery and decide its verdict (nothing is settled here). Returns
/// the attempt the verdict is about.
async fn run(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    delivered: u32,
    cancel: Arc<AtomicBool>,
) -> (Attempt, Verdict) {
    let kind = job.spec.kind().as_str();
    let _in_flight = ctx
        .metrics
        .jobs
        .started(kind, delivered, crate::observe::queue_wait(job));
    let trace_id = crate::observe::trace_id(message);
    tracing::debug!("job started");
    tracing::debug!(kind, delivery = delivered, "computing");
    let started_at = OffsetDateTime::now_utc();
    let max = settle::max_attempts(ctx, job);
    // The record is read while the kernel already runs: a small job's slot is then
    // held for its kernel alone, not for a round trip first. A record found terminal
    // (a duplicate delivery, a job cancelled while queued) stops the kernel at once.
    let fallback = JobRecord::pending(job);
    let retry = retry_of(message);
    let read = async {
        let v = ctx
            .jet
            .records
            .read_version(&job.tenant, &job.id, Some(&fallback))
            .instrument(tracing::debug_span!("fetch"))
            .await
            .map(|v| v.unwrap_or_else(|| Version::absent(fallback.clone())))
            .map_err(Arc::new)?;
        if v.record.status == JobStatus::Failed && retry > v.record.retries {
            return reopen(ctx, job, v, retry).await.map_err(Arc::new);
        }
        Ok(v)
    };
    // What the read means, once: a job that overtook the gateway's writes (no record
    // yet) gets its `accepted` (same dedup id as the gateway's) before anything else,
    // so the stream tells the story in order.
    let plan = async {
        let plan = Plan::of(read.await, max);
        if let Plan::Run { version, .. } = &plan {
            if !version.stored() {
                emit(ctx, job, EventType::Accepted, 0, None, None, None).await;
            }
        }
        plan
    }
    .boxed()
    .shared();
    // Whether this attempt's `started` is stored: published once the kernel has run
    // `running_after`, with the `running` mark. A quicker attempt publishes none (nobody
    // could watch it run, and an event per job costs the broker a store); its first
    // event carries `started_at_ms` instead, from which the feeds show the `started`.
    let announced = AtomicBool::new(false);
    let computing = async {
        let computing = Instant::now();
        let end = compute(ctx, message, job, cancel.clone(), &announced)
            .instrument(tracing::debug_span!("compute"))
            .await;
        ctx.metrics.jobs.ran(kind, computing.elapsed());
        ctx.kernel_ran(computing.elapsed());
        end
    };
    // Once the read is in: anything but a job to run stops the kernel.
    let announce = async {
        let plan = plan.clone().await;
        match &plan {
            Plan::Run { attempt, .. } => {
                tracing::Span::current().record("attempt", attempt);
            }
            _ => cancel.store(true, Ordering::Relaxed),
        }
        plan
    };
    // A job still computing after `running_after` is recorded running and its
    // `started` published while its kernel goes on; once begun, both are seen through
    // before `done`.
    let marking = AtomicBool::new(false);
    let mark = async {
        tokio::time::sleep(ctx.running_after).await;
        marking.store(true, Ordering::Relaxed);
        match plan.clone().await {
            Plan::Run {
                version, attempt, ..
            } => {
                let run = attempt_info(ctx, attempt, started_at, trace_id.clone());
                let marked = mark_running(ctx, job, &run, version, &cancel).await;
                // Not for a job found finished meanwhile (its kernel is being stopped).
                if !cancel.load(Ordering::Relaxed)
                    && emit(ctx, job, EventType::Started, attempt, None, None, None).await
                {
                    announced.store(true, Ordering::Relaxed);
                }
                marked
            }
            _ => None,
        }
    };
    tokio::pin!(computing, announce, mark);
    let mut plan: Option<Plan> = None;
    let mut marked: Option<Option<Version>> = None;
    let end = loop {
        tokio::select! {
            end = &mut computing => break end,
            p = &mut announce, if plan.is_none() => plan = Some(p),
            v = &mut mark, if marked.is_none() => marked = Some(v),
        }
    };
    let plan = match plan {
        Some(p) => p,
        None => announce.await,
    };
    if marked.is_none() && marking.load(Ordering::Relaxed) {
        marked = Some(mark.await);
    }
    let unannounced = (!announced.load(Ordering::Relaxed))
        .then(|| (started_at.unix_timestamp_nanos() / 1_000_000) as i64);
    let just = |number| Attempt {
        number,
        ..Attempt::default()
    };
    let (version, attempt, last) = match plan {
        Plan::Run {
            version,
            attempt,
            last,
        } => (version, attempt, last),
        Plan::Finished(record) => {
            return (
                just(record.attempts),
                Verdict::Ack(Ack::Duplicate(Box::new(record))),
            )
        }
        Plan::GiveUp(record) => {
            let reason = if record.status == JobStatus::Running {
                format!(
                    "gave up after {} deliveries: the worker running the last attempt stopped responding",
                    record.attempts
                )
            } else {
                format!("no attempts left ({} of {max} used)", record.attempts)
            };
            return (just(record.attempts), Verdict::Abort { reason });
        }
        Plan::Unknown(e) => {
            // Nothing was written for this attempt: attempt 0 undoes nothing.
            let why = AttemptError::Infra(e);
            return (just(0), why.verdict(ctx.retry_base, 0, delivered));
        }
    };
    // What the `done` write starts from: the running mark's version, else the read.
    // Backoff grows with the attempts since the latest retry, not all of them.
    let nth = attempt.saturating_sub(version.record.attempts_before_retry);
    let known = match marked {
        None => Some(version),
        Some(v) => v,
    };
    let verdict = match end {
        Ok((decimal, info, binary)) => match store(ctx, job, info, decimal, binary).await {
            Ok((inline, info)) => Verdict::Ack(Ack::Done(Box::new(Done {
                run: attempt_info(ctx, attempt, started_at, trace_id.clone()),
                inline,
                info,
                known,
            }))),
            Err(e) => AttemptError::from(e).verdict(ctx.retry_base, nth, delivered),
        },
        Err(AttemptError::Stopped) => stopped(ctx, job, delivered).await,
        Err(e) => e.verdict(ctx.retry_base, nth, delivered),
    };
    let attempt = Attempt {
        number: attempt,
        last,
        unannounced,
    };
    (attempt, verdict)
}

/// The operator retry this delivery is (its `Jetmill-Retry` header), 0 for none.
fn retry_of(message: &Message) -> u32 {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(names::HDR_RETRY))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0)
}

/// This delivery is an operator's retry of a dead letter that is still `failed`: its
/// gateway published it and then stopped (or has not written yet). Reopen the record
/// as the gateway does, `accepted` first (the same event id as the gateway's).
async fn reopen(
    ctx: &WorkerCtx,
    job: &JobMessage,
    read: Version,
    retry: u32,
) -> Result<Version, NatsxError> {
    let attempts = read.record.attempts;
    emit(ctx, job, EventType::Accepted, attempts, None, None, None).await;
    let (_, version) = ctx
        .jet
        .records
        .update_from(&job.tenant, &job.id, Some(read), None, |r| {
            r.reopen(retry).is_ok()
        })
        .await?;
    // Purged meanwhile: run it as the job it is, recreating its record.
    Ok(version.unwrap_or_else(|| Version::absent(JobRecord::pending(job))))
}

/// What the record shows of this worker's attempt while running and once done.
fn attempt_info(
    ctx: &WorkerCtx,
    attempt: u32,
    started_at: OffsetDateTime,
    trace_id: Option<String>,
) -> AttemptInfo {
    AttemptInfo {
        worker: ctx.worker_id.clone(),
        attempt,
        started_at,
        trace_id,
    }
}

/// Where the result goes: inline in the record when small (the slot is freed at
/// once), else into the Object Store (with the slot held through the upload).
async fn store(
    ctx: &WorkerCtx,
    job: &JobMessage,
    mut info: ResultInfo,
    decimal: String,
    binary: Option<Vec<u8>>,
) -> Result<(Option<String>, ResultInfo), NatsxError> {
    // The object expires with the record: after the job's retention.
    let ttl = job
        .retention_secs
        .map(std::time::Duration::from_secs)
        .unwrap_or(ctx.jet.settings.retention);
    if let Some(bytes) = binary {
        // A split factorial's part: always an object (the combine reads it), binary.
        info.location = results::put_object(
            &ctx.jet.results,
            &ctx.jet.js,
            names::RESULTS_BUCKET,
            names::part_object(&job.id),
            &bytes,
            ttl,
        )
        .instrument(tracing::debug_span!("store part"))
        .await?;
        return Ok((None, info));
    }
    if decimal.len() <= ctx.inline_limit {
        return Ok((Some(decimal), info));
    }
    info.location = results::put_large(
        &ctx.jet.results,
        &ctx.jet.js,
        names::RESULTS_BUCKET,
        &job.id,
        &decimal,
        ttl,
    )
    .instrument(tracing::debug_span!("store object"))
    .await?;
    Ok((None, info))
}

/// The kernel was stopped by its cancel flag: a record that became terminal (a
/// cancel) ends the delivery; otherwise it was a drain, which hands the job back
/// at once.
async fn stopped(ctx: &WorkerCtx, job: &JobMessage, delivered: u32) -> Verdict {
    match ctx.jet.records.get(&job.tenant, &job.id).await {
        Ok(Some((r, _))) if r.status.is_terminal() => Verdict::Ack(Ack::Stopped(Box::new(r))),
        Ok(_) => AttemptError::Stopped.verdict(ctx.retry_base, 0, delivered),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the record of a stopped job");
            AttemptError::Stopped.verdict(ctx.retry_base, 0, delivered)
        }
    }
}

/// Record `running`. Returns the version written (`None` if the
/// write failed: the `done` write then reads afresh). A record found terminal (the
/// job was cancelled meanwhile) stops the kernel.
async fn mark_running(
    ctx: &WorkerCtx,
    job: &JobMessage,
    run: &AttemptInfo,
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
            |r| r.mark_running(run).is_ok(),
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

/// The kernel's task for a spec that needs nothing read first (see `workflow::task_of`).
pub(crate) fn to_task(spec: &JobSpec) -> Task {
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
        JobSpec::FactorialPart { n, part, of } => Task::FactorialPart {
            n: *n,
            part: *part,
            of: *of,
        },
        // Its parts are read first (`workflow::task_of`); none read is an invalid job.
        JobSpec::FactorialCombine { n, .. } => Task::FactorialCombine {
            n: *n,
            parts: Vec::new(),
        },
    }
}

/// Run the kernel on the blocking pool; meanwhile keep the message alive,
/// report progress and enforce the timeout.
async fn compute(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    cancel: Arc<AtomicBool>,
    announced: &AtomicBool,
) -> Result<Output, AttemptError> {
    let task = crate::workflow::task_of(ctx, job).await?;
    let chaos = job.chaos.or(ctx.chaos());
    if task.is_tiny() && !chaos.is_some_and(|c| c.is_active()) {
        return tiny(&task, &cancel);
    }
    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
    let threads = ctx.thread_budget();
    let (p, c) = (progress.clone(), cancel.clone());
    let parent = tracing::Span::current();
    let mut kernel = tokio::task::spawn_blocking(move || {
        let _span = tracing::debug_span!(parent: &parent, "kernel", threads).entered();
        if let Some(chaos) = chaos.filter(|c| c.is_active()) {
            match crate::chaos::before_kernel(&chaos, &c) {
                Ok(()) => {}
                Err(Injected::Cancelled) => return Err(AttemptError::Stopped),
                Err(Injected::Failed(text)) => return Err(AttemptError::Kernel(text)),
            }
        }
        let report = move |f: f64| p.store(f.to_bits(), Ordering::Relaxed);
        let ctl = Control::new(&c, &report, threads);
        let out = jetmill_compute::run(&task, &ctl).map_err(kernel_error)?;
        // Hash and preview here, off the async runtime (tens of MB for big results).
        Ok(summarized(out))
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
                    Ok(Ok(out)) => Ok(out),
                    Ok(Err(_)) if timed_out => Err(AttemptError::TimedOut(timeout.as_secs_f64())),
                    Ok(Err(_)) if cancel.load(Ordering::Relaxed) => Err(AttemptError::Stopped),
                    Ok(Err(e)) => Err(e),
                    Err(join) => Err(AttemptError::Kernel(panic_text(join))),
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
                // Progress events follow the attempt's `started` (the record's progress
                // is written either way).
                let event = announced.load(Ordering::Relaxed);
                if let Some(status) = check_in(ctx, job, step, event).await {
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
fn tiny(task: &Task, cancel: &AtomicBool) -> Result<Output, AttemptError> {
    let _span = tracing::debug_span!("kernel", threads = 1).entered();
    let report = |_: f64| {};
    let ctl = Control::new(cancel, &report, 1);
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jetmill_compute::run(task, &ctl)
    }));
    match ran {
        Ok(Ok(out)) => Ok(summarized(out)),
        Ok(Err(_)) if cancel.load(Ordering::Relaxed) => Err(AttemptError::Stopped),
        Ok(Err(e)) => Err(kernel_error(e)),
        Err(payload) => Err(AttemptError::Kernel(panic_payload_text(payload.as_ref()))),
    }
}

/// A kernel's output with its summary.
fn summarized(out: jetmill_compute::Output) -> Output {
    match out.binary {
        Some(bytes) => {
            let info = results::summarize_binary(&bytes, ResultLocation::Inline);
            (out.decimal, info, Some(bytes))
        }
        None => {
            let info = results::summarize(&out.decimal, ResultLocation::Inline);
            (out.decimal, info, None)
        }
    }
}

/// A kernel's own error, typed by what it means for the job.
fn kernel_error(e: ComputeError) -> AttemptError {
    match e {
        ComputeError::Cancelled => AttemptError::Stopped,
        ComputeError::InvalidInput(text) => AttemptError::Invalid(text),
        ComputeError::Resources(text) => AttemptError::Resources(text),
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
    progress: Option<f64>,
    event: bool,
) -> Option<JobStatus> {
    let written = ctx
        .jet
        .records
        .update(&job.tenant, &job.id, None, |r| {
            progress.is_some_and(|f| r.advance(f))
        })
        .await;
    match written {
        Ok(Update::Applied(r)) => {
            if let Some(f) = progress.filter(|_| event) {
                emit(
                    ctx,
                    job,
                    EventType::Progress,
                    r.attempts,
                    Some(f),
                    None,
                    None,
                )
                .await;
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
