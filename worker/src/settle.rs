//! How an attempt ends: one [`Verdict`], settled in one place ([`settle`]).
//!
//! The attempt pipeline (`execute`) turns whatever happened into a verdict, from
//! typed errors ([`AttemptError`]); [`settle`] then writes the record, publishes the
//! event, counts the metric and acks, naks or terminates the message, always in that
//! order, so a message is never acked or terminated before its record says so.

use crate::context::WorkerCtx;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{AckKind, Message};
use jetmill_metrics::Outcome;
use jetmill_natsx::{events, NatsxError, Update, Version};
use jetmill_proto::{
    names, now_ms, AttemptInfo, EventType, JobEvent, JobMessage, JobRecord, JobStatus, ResultInfo,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tracing::Instrument;

/// Longest an infrastructure hand-back waits before the job is delivered again.
pub const HAND_BACK_MAX: Duration = Duration::from_secs(30);
/// First delay of an infrastructure hand-back (doubles per delivery).
const HAND_BACK_BASE: Duration = Duration::from_millis(500);
/// Longest a failed attempt waits for its retry.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Why an attempt did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The kernel failed (an error, a panic, injected chaos): the job's fault, retried.
    #[error("{0}")]
    Kernel(String),
    /// The attempt ran past its timeout: retried.
    #[error("timed out after {0:.3} s")]
    TimedOut(f64),
    /// The kernel says the input can never be computed: failed at once, no retry.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The machine could not give the kernel what it needed: retried, not counted.
    #[error("resources: {0}")]
    Resources(String),
    /// The kernel was stopped by its cancel flag (a cancel or a drain).
    #[error("stopped")]
    Stopped,
    /// NATS could not take a write or answer a read (a full store, NATS out of
    /// reach): not the job's fault, it is handed back and does not count.
    #[error(transparent)]
    Infra(Arc<NatsxError>),
}

impl From<NatsxError> for AttemptError {
    fn from(e: NatsxError) -> Self {
        AttemptError::Infra(Arc::new(e))
    }
}

/// What the message and the record become.
pub enum Verdict {
    /// Nothing more will be computed for this delivery; ack it once `Ack` is stored.
    Ack(Ack),
    /// Deliver again after `after`. `counts`: a failed attempt (the record keeps the
    /// error and the count; on the job's last attempt it fails for good instead);
    /// otherwise the attempt is given back uncounted, its error kept in the record.
    Retry {
        after: Duration,
        counts: bool,
        error: AttemptError,
    },
    /// A terminal failure (retrying cannot help): `failed`, then terminate.
    Abort { reason: String },
    /// Not the job's fault (a drain, a full store, NATS out of reach): the record goes
    /// back to `pending` uncounted and the message is nak'ed with `after`.
    HandBack { after: Duration, why: AttemptError },
}

/// Why a delivery is acked.
pub enum Ack {
    /// The kernel's result, to be recorded `done`.
    Done(Box<Done>),
    /// The record was already terminal when this delivery read it (a duplicate).
    Duplicate(Box<JobRecord>),
    /// The kernel was stopped because the record became terminal (a cancel, or another
    /// delivery of the job finished it); the record as read.
    Stopped(Box<JobRecord>),
}

/// A finished attempt's result and what its `done` write starts from.
pub struct Done {
    /// Who ran it.
    pub run: AttemptInfo,
    /// The decimal text when it goes inline in the record.
    pub inline: Option<String>,
    /// Digits, hash, preview and location.
    pub info: ResultInfo,
    /// The version read or written before (the compare-and-set starts there).
    pub known: Option<Version>,
}

impl AttemptError {
    /// The verdict for this error on attempt `attempt`, delivery `delivered`, with
    /// retries starting at `retry_base` (whether it was the last attempt is for
    /// [`settle`] to decide).
    pub fn verdict(self, retry_base: Duration, attempt: u32, delivered: u32) -> Verdict {
        match self {
            AttemptError::Invalid(_) => Verdict::Abort {
                reason: self.to_string(),
            },
            AttemptError::Infra(_) => Verdict::HandBack {
                after: hand_back_delay(delivered),
                why: self,
            },
            AttemptError::Stopped => Verdict::HandBack {
                after: Duration::ZERO,
                why: self,
            },
            AttemptError::Resources(_) => Verdict::Retry {
                after: backoff(retry_base, attempt),
                counts: false,
                error: self,
            },
            AttemptError::Kernel(_) | AttemptError::TimedOut(_) => Verdict::Retry {
                after: backoff(retry_base, attempt),
                counts: true,
                error: self,
            },
        }
    }
}

/// Delay before the next attempt: `retry_base * 2^(attempt-1)`, at most 60 s.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(RETRY_MAX)
}

/// Delay of an infrastructure hand-back on delivery `delivered`: 0.5 s doubling per
/// delivery, at most [`HAND_BACK_MAX`], so a full store is not hammered.
pub fn hand_back_delay(delivered: u32) -> Duration {
    let factor = 2u32.saturating_pow(delivered.saturating_sub(1).min(16));
    HAND_BACK_BASE.saturating_mul(factor).min(HAND_BACK_MAX)
}

/// The attempt limit of `job`: its own `max_attempts`, capped by the worker's.
pub fn max_attempts(ctx: &WorkerCtx, job: &JobMessage) -> u32 {
    job.max_attempts
        .unwrap_or(ctx.max_attempts)
        .clamp(1, ctx.max_attempts)
}

/// Which attempt a verdict is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt {
    /// Its number: 1 for the first, and on across an operator's retries (hand-backs
    /// do not count).
    pub number: u32,
    /// The job's attempt budget ends with it: a failure fails the job for good.
    pub last: bool,
    /// When it began, if it published no `started` (its event then carries the time,
    /// see `JobEvent::started_at_ms`).
    pub unannounced: Option<i64>,
}

/// Settle one delivery: the record write the verdict needs, then its event and
/// metric, then ack/nak/term. A record write that fails hands the job back (nak with
/// a growing delay): nothing is acked or terminated before its record is stored.
pub async fn settle(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    attempt: Attempt,
    delivered: u32,
    verdict: Verdict,
) {
    let Attempt {
        number: attempt,
        last,
        unannounced,
    } = attempt;
    let kind = job.spec.kind().as_str();
    match verdict {
        Verdict::Ack(Ack::Done(done)) => {
            if let Err(e) = finish(ctx, message, job, attempt, delivered, *done, unannounced).await
            {
                let after = hand_back_delay(delivered);
                hand_back(ctx, message, job, attempt, after, e.into()).await;
            }
        }
        Verdict::Ack(Ack::Duplicate(record)) => {
            tracing::info!(
                status = record.status.as_str(),
                "job already finished; acknowledging the duplicate delivery"
            );
            if ensure_terminal_event(ctx, job, &record).await {
                ack(message, AckKind::Ack).await;
            } else {
                event_not_stored(message, record.status, delivered).await;
            }
        }
        Verdict::Ack(Ack::Stopped(record)) => {
            let status = record.status;
            if status == JobStatus::Cancelled {
                ctx.metrics.jobs.finished(kind, Outcome::Cancelled);
            }
            tracing::info!(
                status = status.as_str(),
                "kernel stopped; the job is finished"
            );
            // Whoever finished it may have failed to store its event (and handed its own
            // delivery back, which this terminate removes): make sure it is there.
            if ensure_terminal_event(ctx, job, &record).await {
                ack(message, AckKind::Term).await;
            } else {
                event_not_stored(message, status, delivered).await;
            }
        }
        Verdict::Retry {
            error,
            counts: true,
            ..
        } if last => {
            let error = error.to_string();
            fail(ctx, message, job, attempt, delivered, error, unannounced).await
        }
        Verdict::Retry {
            after,
            counts,
            error,
        } => {
            ctx.failed.fetch_add(1, Ordering::Relaxed);
            let error = error.to_string();
            // Not counted: the record keeps the error but not this attempt.
            let counted = if counts {
                attempt
            } else {
                attempt.saturating_sub(1)
            };
            let at = OffsetDateTime::now_utc();
            let written = ctx
                .jet
                .records
                .update(&job.tenant, &job.id, Some(&JobRecord::pending(job)), |r| {
                    let worker = Some(ctx.worker_id.as_str());
                    let ok = r.mark_failed_attempt(counted, worker, error.clone(), false, at);
                    r.attempts = r.attempts.min(counted);
                    ok.is_ok()
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record the failed attempt");
            }
            tracing::warn!(%error, retry_in_ms = after.as_millis() as u64, counts, "attempt failed; will retry");
            ctx.metrics.jobs.retried(kind);
            let started = unannounced;
            emit(
                ctx,
                job,
                EventType::Retried,
                attempt,
                None,
                Some(error),
                started,
            )
            .await;
            ack(message, AckKind::Nak(Some(after))).await;
        }
        Verdict::Abort { reason } => {
            fail(ctx, message, job, attempt, delivered, reason, unannounced).await
        }
        Verdict::HandBack { after, why } => hand_back(ctx, message, job, attempt, after, why).await,
    }
}

/// Record `done` (compare-and-set from the version the attempt knows), publish
/// `done`, then ack. `Err` when the record could not be written: nothing was acked.
/// A `done` event the stream did not take (a leader election, NATS out of reach)
/// leaves the message unacked: it is handed back, and its next delivery finds the
/// record `done` and publishes the event (see [`ensure_terminal_event`]).
async fn finish(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    attempt: u32,
    delivered: u32,
    done: Done,
    unannounced: Option<i64>,
) -> Result<(), NatsxError> {
    let Done {
        run,
        inline,
        info,
        known,
    } = done;
    let finished_at = OffsetDateTime::now_utc();
    let (written, _) = ctx
        .jet
        .records
        .update_from(
            &job.tenant,
            &job.id,
            known,
            Some(&JobRecord::pending(job)),
            |r| {
                // Cloned, not taken: the closure runs again after a conflicting write.
                r.mark_done(&run, finished_at, inline.clone(), info.clone())
                    .is_ok()
            },
        )
        .instrument(tracing::debug_span!("result write"))
        .await?;
    match written {
        Update::Applied(_) | Update::Missing => {
            ctx.done.fetch_add(1, Ordering::Relaxed);
            ctx.metrics
                .jobs
                .finished(job.spec.kind().as_str(), Outcome::Done);
            let stored = emit(
                ctx,
                job,
                EventType::Done,
                attempt,
                Some(1.0),
                None,
                unannounced,
            )
            .await;
            tracing::info!(digits = info.digits, inline = inline.is_some(), "job done");
            if stored && crate::workflow::advance(ctx, job, JobStatus::Done).await {
                ack_done(message).await;
            } else {
                event_not_stored(message, JobStatus::Done, delivered).await;
            }
        }
        Update::Unchanged(r) => {
            tracing::info!(
                status = r.status.as_str(),
                "job was finished elsewhere; dropping this result"
            );
            // The delivery that finished it may not have stored its event (a leader
            // election): this ack removes the message, so check before it.
            if ensure_terminal_event(ctx, job, &r).await {
                ack(message, AckKind::Ack).await;
            } else {
                event_not_stored(message, r.status, delivered).await;
            }
        }
    }
    Ok(())
}

/// Give the job back uncounted: the record to `pending` (best effort: if NATS cannot
/// take it, the next delivery still sees this attempt uncounted unless it had been
/// recorded running), then nak with `after`.
async fn hand_back(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    attempt: u32,
    after: Duration,
    why: AttemptError,
) {
    let written = ctx
        .jet
        .records
        .update(&job.tenant, &job.id, None, |r| r.hand_back(attempt).is_ok())
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not put the record back to pending; if it shows this attempt running, the attempt stays counted");
    }
    match &why {
        AttemptError::Stopped => tracing::info!("job handed back to the queue"),
        why => tracing::warn!(
            error = %why,
            retry_in_ms = after.as_millis() as u64,
            "NATS could not take this attempt's reads or writes; handing the job back (not counted as an attempt)"
        ),
    }
    let delay = (!after.is_zero()).then_some(after);
    ack(message, AckKind::Nak(delay)).await;
}

/// A terminal failure: record `failed`, publish `failed`, then terminate. If the
/// record cannot be stored the job is handed back instead (it fails on a later
/// delivery, once NATS takes writes again).
async fn fail(
    ctx: &WorkerCtx,
    message: &Message,
    job: &JobMessage,
    attempt: u32,
    delivered: u32,
    error: String,
    unannounced: Option<i64>,
) {
    ctx.failed.fetch_add(1, Ordering::Relaxed);
    let at = OffsetDateTime::now_utc();
    let written = ctx
        .jet
        .records
        .update(&job.tenant, &job.id, Some(&JobRecord::pending(job)), |r| {
            let worker = Some(ctx.worker_id.as_str());
            let failed = r.mark_failed_attempt(attempt, worker, error.clone(), true, at);
            // What a retry of this dead letter publishes again.
            if failed.is_ok() {
                r.message = job.encode().ok().map(hex::encode);
            }
            failed.is_ok()
        })
        .await;
    match written {
        Ok(Update::Applied(_)) => {
            tracing::warn!(%error, attempts = attempt, "job failed for good");
            ctx.metrics
                .jobs
                .finished(job.spec.kind().as_str(), Outcome::Failed);
            let started = unannounced;
            if emit(
                ctx,
                job,
                EventType::Failed,
                attempt,
                None,
                Some(error),
                started,
            )
            .await
                && crate::workflow::advance(ctx, job, JobStatus::Failed).await
            {
                ack(message, AckKind::Term).await;
            } else {
                event_not_stored(message, JobStatus::Failed, delivered).await;
            }
        }
        Ok(Update::Unchanged(r)) => {
            tracing::info!(status = r.status.as_str(), "job was finished elsewhere");
            if ensure_terminal_event(ctx, job, &r).await {
                ack(message, AckKind::Term).await;
            } else {
                event_not_stored(message, r.status, delivered).await;
            }
        }
        Ok(Update::Missing) => ack(message, AckKind::Term).await,
        Err(e) => {
            let after = hand_back_delay(delivered);
            tracing::warn!(%error, store_error = %e, retry_in_ms = after.as_millis() as u64,
                "job failed, but its record cannot be stored; handing it back");
            ack(message, AckKind::Nak(Some(after))).await;
        }
    }
}

/// A terminal record whose event the stream did not take: hand the message back
/// (nak with the hand-back delay) instead of settling it, so the event is published by
/// a later delivery (which finds the record terminal) rather than lost.
async fn event_not_stored(message: &Message, status: JobStatus, delivered: u32) {
    let after = hand_back_delay(delivered);
    tracing::warn!(
        status = status.as_str(),
        retry_in_ms = after.as_millis() as u64,
        "the record is final but its event is not stored; handing the job back so a later delivery publishes it"
    );
    ack(message, AckKind::Nak(Some(after))).await;
}

/// A worker that crashed (or whose event publish failed, e.g. in a leader election)
/// between writing a terminal record and storing its event leaves the job unacked; on
/// redelivery, publish the missing event (only if the stream does not have it; its
/// `Nats-Msg-Id` dedups a retry of one that landed). `false` when the event could not
/// be checked or stored: the caller must not settle the message then.
///
/// A workflow step's workflow is advanced here too (see `workflow::advance`).
async fn ensure_terminal_event(ctx: &WorkerCtx, job: &JobMessage, record: &JobRecord) -> bool {
    terminal_event(ctx, job, record).await
        && (!record.status.is_terminal() || crate::workflow::advance(ctx, job, record.status).await)
}

async fn terminal_event(ctx: &WorkerCtx, job: &JobMessage, record: &JobRecord) -> bool {
    let event = match record.status {
        JobStatus::Done => EventType::Done,
        JobStatus::Failed => EventType::Failed,
        JobStatus::Cancelled => EventType::Cancelled,
        JobStatus::Pending | JobStatus::Scheduled | JobStatus::Running => return true,
    };
    let subject = names::event_subject(&job.id, event);
    let stored = match ctx
        .jet
        .events
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        // The stream's last event of this type must be this record's: a dead letter
        // that was retried and failed again has the first run's `failed` there too.
        Ok(m) => stored_for(&m.payload, record),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => false,
        Err(e) => {
            tracing::warn!(error = %e, "could not check for the terminal event");
            return false;
        }
    };
    if stored {
        return true;
    }
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
        // The attempt's `started`, if it had none, is not repeated here: a lost
        // terminal event is rare, and its start is in the record.
        None,
    )
    .await
}

/// Whether the stored event `payload` reports `record`'s current terminal state: its
/// attempt is the record's latest (an unreadable payload counts as stored, as before).
fn stored_for(payload: &[u8], record: &JobRecord) -> bool {
    serde_json::from_slice::<JobEvent>(payload).map_or(true, |e| e.attempt >= record.attempts)
}

/// Publish a lifecycle event of `job`; `true` once the stream stored it. A failure is
/// logged: non-terminal events are best effort, terminal ones are checked by the caller.
pub(crate) async fn emit(
    ctx: &WorkerCtx,
    job: &JobMessage,
    event: EventType,
    attempt: u32,
    progress: Option<f64>,
    error: Option<String>,
    started_at_ms: Option<i64>,
) -> bool {
    let ev = JobEvent {
        job_id: job.id,
        tenant: job.tenant.clone(),
        event,
        at_ms: now_ms(),
        attempt,
        worker: Some(ctx.worker_id.clone()),
        progress,
        error,
        started_at_ms,
    };
    let span = tracing::debug_span!(
        "event",
        otel.name = format!("event {}", event.as_str()),
        otel.kind = "producer"
    );
    match events::publish(&ctx.jet.js, &ev).instrument(span).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(event = event.as_str(), error = %e, "could not publish event");
            false
        }
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

/// Acknowledge and wait (boundedly) for the server to confirm, so we know whether
/// it landed. Unconfirmed, JetStream redelivers after `ack_wait`.
pub(crate) async fn ack(message: &Message, kind: AckKind) {
    match tokio::time::timeout(ACK_CONFIRM, message.double_ack_with(kind)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "acknowledgement not confirmed; the job may be delivered again (completion stays idempotent)"),
        Err(_) => tracing::warn!("acknowledgement not confirmed in time; the job may be delivered again (completion stays idempotent)"),
    }
}

/// How long an ack, nak or term waits for the server's confirmation.
const ACK_CONFIRM: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::{backoff, hand_back_delay, AttemptError, Verdict, HAND_BACK_MAX};
    use jetmill_natsx::NatsxError;
    use std::time::Duration;

    const BASE: Duration = Duration::from_millis(100);

    #[test]
    fn a_terminal_event_of_an_earlier_run_does_not_stand_for_the_latest_one() {
        use jetmill_proto::{EventType, JobEvent, JobRecord, JobStatus};
        let record = |attempts| {
            let mut r: JobRecord = serde_json::from_value(serde_json::json!({
                "id": "01a207e4-e83b-72f9-ab26-1de816ec8030", "tenant": "public",
                "kind": "factorial", "input": 5, "status": "failed", "progress": 0.0,
                "attempts": attempts, "submitted_at": "2026-12-01T00:00:00Z"}))
            .expect("record");
            r.status = JobStatus::Failed;
            r
        };
        let event = |attempt| {
            serde_json::to_vec(&JobEvent {
                job_id: record(1).id,
                tenant: "public".into(),
                event: EventType::Failed,
                at_ms: 1,
                attempt,
                worker: None,
                progress: None,
                error: Some("boom".into()),
                started_at_ms: None,
            })
            .expect("json")
        };
        assert!(super::stored_for(&event(3), &record(3)));
        assert!(
            !super::stored_for(&event(3), &record(6)),
            "the first run's failed is not the retried run's"
        );
        assert!(super::stored_for(b"not json", &record(6)));
    }

    #[test]
    fn each_error_has_its_verdict() {
        let v = |e: AttemptError| e.verdict(BASE, 2, 3);
        assert!(matches!(
            v(AttemptError::Kernel("boom".into())),
            Verdict::Retry { counts: true, after, .. } if after == Duration::from_millis(200)
        ));
        assert!(matches!(
            v(AttemptError::TimedOut(1.0)),
            Verdict::Retry { counts: true, .. }
        ));
        assert!(matches!(
            v(AttemptError::Resources("no thread".into())),
            Verdict::Retry { counts: false, .. }
        ));
        assert!(
            matches!(v(AttemptError::Invalid("not a number".into())), Verdict::Abort { reason } if reason == "invalid input: not a number"),
            "an input the kernel cannot compute is never retried"
        );
        assert!(matches!(
            v(AttemptError::Stopped),
            Verdict::HandBack { after, .. } if after.is_zero()
        ));
        let full = NatsxError::Corrupt {
            what: "x".into(),
            detail: "insufficient resources".into(),
        };
        assert!(
            matches!(v(full.into()), Verdict::HandBack { after, .. } if after == hand_back_delay(3)),
            "a NATS fault is handed back with the delivery's delay"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, 4), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), Duration::from_secs(60));
    }

    #[test]
    fn hand_backs_wait_longer_each_delivery_up_to_the_cap() {
        assert_eq!(hand_back_delay(1), Duration::from_millis(500));
        assert_eq!(hand_back_delay(2), Duration::from_secs(1));
        assert_eq!(hand_back_delay(5), Duration::from_secs(8));
        assert_eq!(hand_back_delay(7), HAND_BACK_MAX);
        assert_eq!(hand_back_delay(u32::MAX), HAND_BACK_MAX);
    }
}
