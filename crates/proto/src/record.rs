//! The job record: JSON in the `jobs` KV bucket, readable with `nats kv get`.
//!
//! Status only moves forward (see [`JobStatus::can_become`]); writers use the
//! KV revision (compare-and-set) so a late `running` never overwrites `done`. The one
//! way back is an operator's retry of a dead letter (a `failed` job), which opens a
//! new generation of attempts ([`JobRecord::reopen`]).
//! Every status change a writer makes is a method on [`JobRecord`]
//! (`mark_running`, `mark_done`, `mark_failed_attempt`, `hand_back`, `cancel`,
//! `reopen`), so the state machine lives here and nowhere else.

use crate::{JobId, JobKind, JobMessage};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted and queued.
    Pending,
    /// Accepted to run later (`run_at`/`delay`): the broker queues it at `run_at`.
    Scheduled,
    /// A worker is computing it (possibly a retry).
    Running,
    /// Finished with a result.
    Done,
    /// Gave up: the error says why.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobStatus {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// A finished job never changes status again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Whether a record in `self` may be moved to `next`: never out of a terminal
    /// state, and never back to `scheduled`. `running -> pending` is a job waiting for
    /// its retry (or handed back by a draining worker); `running -> running` is a
    /// redelivery.
    pub fn can_become(self, next: JobStatus) -> bool {
        match self {
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled => false,
            JobStatus::Pending | JobStatus::Scheduled => {
                !matches!(next, JobStatus::Pending | JobStatus::Scheduled)
            }
            JobStatus::Running => next != JobStatus::Scheduled,
        }
    }
}

/// A status change the state machine refuses: the record stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot become {to}", from = from.as_str(), to = to.as_str())]
pub struct Transition {
    /// The record's status.
    pub from: JobStatus,
    /// The status that was asked for.
    pub to: JobStatus,
}

impl Transition {
    fn check(from: JobStatus, to: JobStatus) -> Result<(), Transition> {
        if from.can_become(to) {
            Ok(())
        } else {
            Err(Transition { from, to })
        }
    }
}

/// How many failed attempts a record keeps in `failures` (the oldest go first).
pub const FAILURES_KEPT: usize = 32;

/// One failed attempt, as a record's error trail keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptFailure {
    /// The attempt's number.
    pub attempt: u32,
    /// The worker that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// What went wrong.
    pub error: String,
    /// When it failed.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Who runs an attempt, as the record shows it while running and once done.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptInfo {
    /// The worker's id.
    pub worker: String,
    /// The attempt's number (1 for the first; hand-backs do not count).
    pub attempt: u32,
    /// When the attempt started.
    pub started_at: OffsetDateTime,
    /// The submission's trace id, if the record has none yet.
    pub trace_id: Option<String>,
}

impl std::str::FromStr for JobStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [
            JobStatus::Pending,
            JobStatus::Scheduled,
            JobStatus::Running,
            JobStatus::Done,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or(())
    }
}

/// Where the full decimal text of a result is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "store", rename_all = "snake_case")]
pub enum ResultLocation {
    /// In the record's `result` field.
    Inline,
    /// In the Object Store.
    Object { bucket: String, name: String },
}

/// Facts about a result, present whatever its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultInfo {
    /// Number of decimal digits (without a sign).
    pub digits: u64,
    /// Size of the decimal text in bytes (with a sign, if any).
    pub bytes: u64,
    /// Hex SHA-256 of the decimal text, so a download can be verified.
    pub sha256: String,
    /// First digits of the decimal text (up to 50).
    pub head: String,
    /// Last digits of the decimal text (up to 50).
    pub tail: String,
    /// Where the full text lives.
    pub location: ResultLocation,
}

/// The state of one job, as clients and operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRecord {
    pub id: JobId,
    pub tenant: String,
    pub kind: JobKind,
    /// The input as submitted (normalized).
    pub input: serde_json::Value,
    /// Extra parameters (e.g. `{"modulus": m}`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    pub status: JobStatus,
    /// Fraction done, 0 to 1.
    pub progress: f64,
    /// Attempts started so far.
    pub attempts: u32,
    /// The worker that ran (or runs) the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The last attempt's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    /// When a delayed job (`run_at`/`delay` on submit) is due to start.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub run_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<OffsetDateTime>,
    /// The decimal result when it is small enough to keep inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Size, hash, preview and location of the result once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_info: Option<ResultInfo>,
    /// The result was reused from an identical earlier job; nothing was computed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// The OpenTelemetry trace id of the submission (32 hex digits), when it was traced;
    /// look the trace up in Jaeger or any OTLP backend. Older records have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The batch (`POST /v1/jobs/batch`) the job was submitted in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<JobId>,
    /// The recurring schedule (`POST /v1/schedules`) whose firing made this job, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<JobId>,
    /// The workflow (`POST /v1/workflows`) this job is a step of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<JobId>,
    /// The step's name in that workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// How long this job is kept once finished, seconds (its `retention`); absent: the
    /// deployment's `--retention`. The broker then expires the record and its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
    /// Every failed attempt, oldest first (at most [`FAILURES_KEPT`]): the error trail
    /// of a dead letter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<AttemptFailure>,
    /// Times an operator retried the job after it failed (`POST /v1/jobs/{id}/retry`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Attempts made before the latest retry: the attempt limit counts the ones after.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts_before_retry: u32,
    /// On a `failed` record: the job message (hex of its wire form) that a retry
    /// publishes again, so the retried job runs exactly as submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub message: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Unix milliseconds to a timestamp (clamped to the epoch on nonsense).
pub fn ms_to_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl JobRecord {
    /// The record of a freshly published job: `scheduled` when it is due later than
    /// `now_ms`, else `pending`.
    pub fn accepted(msg: &JobMessage, now_ms: i64) -> Self {
        let mut record = JobRecord::pending(msg);
        if msg.scheduled_after(now_ms) {
            record.status = JobStatus::Scheduled;
        }
        record
    }

    /// The `pending` record of a freshly published job (`run_at` kept if it has one).
    pub fn pending(msg: &JobMessage) -> Self {
        JobRecord {
            id: msg.id,
            tenant: msg.tenant.clone(),
            kind: msg.spec.kind(),
            input: msg.spec.input_json(),
            params: msg.spec.params_json(),
            status: JobStatus::Pending,
            progress: 0.0,
            attempts: 0,
            worker: None,
            error: None,
            submitted_at: ms_to_time(msg.submitted_at_ms),
            run_at: msg.run_at_ms.map(ms_to_time),
            started_at: None,
            finished_at: None,
            result: None,
            result_info: None,
            cached: false,
            trace_id: None,
            batch: msg.batch,
            schedule: msg.schedule,
            workflow: msg.workflow.as_ref().map(|w| w.workflow),
            step: msg.workflow.as_ref().map(|w| w.name.clone()),
            retention_secs: msg.retention_secs,
            failures: Vec::new(),
            retries: 0,
            attempts_before_retry: 0,
            message: None,
        }
    }

    /// Whether attempt `attempt` is within `max_attempts`, counting only the attempts
    /// since the latest retry.
    pub fn may_attempt(&self, attempt: u32, max_attempts: u32) -> bool {
        attempt.saturating_sub(self.attempts_before_retry) <= max_attempts
    }

    /// An operator retries this dead letter as retry number `retry`: `failed` ->
    /// `pending`, with a fresh attempt budget; the attempts so far, the error trail
    /// and the attempt numbering are kept (the next attempt is `attempts + 1`, so
    /// event ids never repeat). `Err` unless the record is `failed` and has not seen
    /// this retry yet (so a gateway and a worker may both apply it, once).
    pub fn reopen(&mut self, retry: u32) -> Result<(), Transition> {
        if self.status != JobStatus::Failed || self.retries >= retry {
            return Err(Transition {
                from: self.status,
                to: JobStatus::Pending,
            });
        }
        self.status = JobStatus::Pending;
        self.progress = 0.0;
        self.retries = retry;
        self.attempts_before_retry = self.attempts;
        self.finished_at = None;
        self.message = None;
        Ok(())
    }

    /// The attempt a new delivery of this job would be: one more than the attempts
    /// counted so far (a hand-back does not count, see [`JobRecord::hand_back`]).
    pub fn next_attempt(&self) -> u32 {
        self.attempts.saturating_add(1)
    }

    fn apply(&mut self, run: &AttemptInfo) {
        self.attempts = self.attempts.max(run.attempt);
        self.worker = Some(run.worker.clone());
        self.started_at = Some(run.started_at);
        if self.trace_id.is_none() {
            self.trace_id = run.trace_id.clone();
        }
    }

    /// A worker computes attempt `run.attempt`: `pending`/`running` -> `running`.
    pub fn mark_running(&mut self, run: &AttemptInfo) -> Result<(), Transition> {
        Transition::check(self.status, JobStatus::Running)?;
        self.status = JobStatus::Running;
        self.progress = 0.0;
        self.apply(run);
        Ok(())
    }

    /// The attempt finished with a result: -> `done` (inline `result` when given).
    pub fn mark_done(
        &mut self,
        run: &AttemptInfo,
        finished_at: OffsetDateTime,
        result: Option<String>,
        info: ResultInfo,
    ) -> Result<(), Transition> {
        Transition::check(self.status, JobStatus::Done)?;
        self.status = JobStatus::Done;
        self.progress = 1.0;
        self.error = None;
        self.apply(run);
        self.finished_at = Some(finished_at);
        if result.is_some() {
            self.result = result;
        }
        self.result_info = Some(info);
        Ok(())
    }

    /// Attempt `attempt` failed with `error`: back to `pending` to wait for its retry,
    /// or `failed` for good when `last` (or when the error is the job's own and
    /// retrying cannot help).
    pub fn mark_failed_attempt(
        &mut self,
        attempt: u32,
        worker: Option<&str>,
        error: String,
        last: bool,
        at: OffsetDateTime,
    ) -> Result<(), Transition> {
        let next = if last {
            JobStatus::Failed
        } else {
            JobStatus::Pending
        };
        // `pending -> pending` is allowed here: an attempt that failed before it was
        // recorded running still leaves its error and its count.
        if self.status.is_terminal() {
            return Err(Transition {
                from: self.status,
                to: next,
            });
        }
        self.status = next;
        self.progress = 0.0;
        self.failures.push(AttemptFailure {
            attempt,
            worker: worker.map(str::to_string),
            error: error.clone(),
            at,
        });
        if self.failures.len() > FAILURES_KEPT {
            self.failures.remove(0);
        }
        self.error = Some(error);
        if let Some(w) = worker {
            self.worker = Some(w.to_string());
        }
        self.attempts = self.attempts.max(attempt);
        if last {
            self.finished_at = Some(at);
        }
        Ok(())
    }

    /// Attempt `attempt` gives the job back through no fault of its own (a drain, a
    /// full store, NATS out of reach): the `running` record of that attempt goes back
    /// to `pending` and the attempt no longer counts. `Err` when there is nothing to
    /// undo: the record is terminal, or does not show this attempt running (it was
    /// never recorded, or another attempt has moved it on).
    pub fn hand_back(&mut self, attempt: u32) -> Result<(), Transition> {
        if self.status != JobStatus::Running || self.attempts != attempt {
            return Err(Transition {
                from: self.status,
                to: JobStatus::Pending,
            });
        }
        self.status = JobStatus::Pending;
        self.progress = 0.0;
        self.attempts = attempt.saturating_sub(1);
        Ok(())
    }

    /// Stopped on request: a `pending` or `running` job -> `cancelled`.
    pub fn cancel(&mut self, at: OffsetDateTime) -> Result<(), Transition> {
        Transition::check(self.status, JobStatus::Cancelled)?;
        self.status = JobStatus::Cancelled;
        self.finished_at = Some(at);
        Ok(())
    }

    /// Progress of a running job moved forward to `fraction`; `false` (nothing to
    /// write) when the job is not running or the record is already that far.
    pub fn advance(&mut self, fraction: f64) -> bool {
        if self.status == JobStatus::Running && self.progress < fraction {
            self.progress = fraction;
            true
        } else {
            false
        }
    }

    /// Encode as the JSON stored in KV.
    pub fn to_json(&self) -> Vec<u8> {
        // A record holds only JSON-representable values (no maps with non-string keys).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse the JSON stored in KV.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;

    #[test]
    fn records_without_trace_id_still_parse() {
        let old =
            br#"{"id":"0190b6b0-0000-7000-8000-000000000000","tenant":"public","kind":"factorial",
            "input":5,"status":"done","progress":1.0,"attempts":1,
            "submitted_at":"2026-01-01T00:00:00Z","result":"120"}"#;
        let r = super::JobRecord::from_json(old).expect("an old record parses");
        assert_eq!(r.trace_id, None);
        assert_eq!(r.batch, None);
        let again = super::JobRecord::from_json(&r.to_json()).expect("round trip");
        assert_eq!(again, r);
    }

    #[test]
    fn status_only_moves_forward() {
        assert!(Pending.can_become(Running));
        assert!(Running.can_become(Running));
        assert!(Running.can_become(Done));
        assert!(Pending.can_become(Cancelled));
        for t in [Done, Failed, Cancelled] {
            for next in [Pending, Running, Done, Failed, Cancelled] {
                assert!(!t.can_become(next), "{t:?} -> {next:?} must be refused");
            }
        }
        assert!(
            Running.can_become(Pending),
            "a failed attempt waits for its retry"
        );
        assert!(!Pending.can_become(Pending));
    }

    mod transitions {
        use super::super::*;
        use crate::{JobMessage, JobSpec};

        fn record() -> JobRecord {
            JobRecord::pending(&JobMessage::new(
                "t",
                JobSpec::Factorial { n: 10 },
                1_700_000_000_000,
            ))
        }

        #[test]
        fn a_delayed_job_is_scheduled_until_a_worker_runs_it() {
            let msg = |run_at_ms| JobMessage {
                run_at_ms: Some(run_at_ms),
                ..sample_message()
            };
            let now = 1_700_000_000_000;
            let due_later = JobRecord::accepted(&msg(now + 5_000), now);
            assert_eq!(due_later.status, JobStatus::Scheduled);
            assert_eq!(due_later.run_at, Some(ms_to_time(now + 5_000)));
            // Due already: an ordinary pending job that remembers when it was asked for.
            let overdue = JobRecord::accepted(&msg(now - 5_000), now);
            assert_eq!(overdue.status, JobStatus::Pending);
            assert!(overdue.run_at.is_some());

            let mut r = due_later.clone();
            r.mark_running(&run(1)).expect("a fired job runs");
            assert_eq!(r.status, JobStatus::Running);
            let mut r = due_later.clone();
            r.cancel(OffsetDateTime::UNIX_EPOCH)
                .expect("a scheduled job can be cancelled");
            // Nothing goes back to scheduled.
            for from in [JobStatus::Pending, JobStatus::Running, JobStatus::Scheduled] {
                assert!(!from.can_become(JobStatus::Scheduled), "{from:?}");
            }
            assert_eq!("scheduled".parse(), Ok(JobStatus::Scheduled));
        }

        fn sample_message() -> JobMessage {
            JobMessage::new("t", JobSpec::Factorial { n: 10 }, 1_700_000_000_000)
        }

        fn run(attempt: u32) -> AttemptInfo {
            AttemptInfo {
                worker: "w1".into(),
                attempt,
                started_at: OffsetDateTime::UNIX_EPOCH,
                trace_id: Some("abc".into()),
            }
        }

        fn info() -> ResultInfo {
            ResultInfo {
                digits: 7,
                bytes: 7,
                sha256: String::new(),
                head: "3628800".into(),
                tail: "3628800".into(),
                location: ResultLocation::Inline,
            }
        }

        const AT: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

        #[test]
        fn a_run_goes_pending_running_done_and_counts_one_attempt() {
            let mut r = record();
            assert_eq!(r.next_attempt(), 1);
            r.mark_running(&run(1)).expect("pending -> running");
            assert_eq!((r.status, r.attempts), (JobStatus::Running, 1));
            assert_eq!(r.worker.as_deref(), Some("w1"));
            assert_eq!(r.trace_id.as_deref(), Some("abc"));
            r.mark_done(&run(1), AT, Some("3628800".into()), info())
                .expect("running -> done");
            assert_eq!(r.status, JobStatus::Done);
            assert_eq!(r.progress, 1.0);
            assert_eq!(r.result.as_deref(), Some("3628800"));
            assert_eq!(r.finished_at, Some(AT));
            assert_eq!(r.next_attempt(), 2);
        }

        #[test]
        fn a_quick_job_goes_from_pending_straight_to_done() {
            let mut r = record();
            r.mark_done(&run(1), AT, None, info())
                .expect("pending -> done");
            assert_eq!((r.status, r.attempts), (JobStatus::Done, 1));
            assert_eq!(r.result, None, "a large result stays out of the record");
        }

        #[test]
        fn terminal_records_refuse_every_change() {
            for end in [JobStatus::Done, JobStatus::Failed, JobStatus::Cancelled] {
                let mut r = record();
                r.status = end;
                let before = r.clone();
                let refused = |to| Err(Transition { from: end, to });
                assert_eq!(r.mark_running(&run(1)), refused(JobStatus::Running));
                assert_eq!(
                    r.mark_done(&run(1), AT, None, info()),
                    refused(JobStatus::Done)
                );
                assert_eq!(
                    r.mark_failed_attempt(1, Some("w1"), "x".into(), true, AT),
                    refused(JobStatus::Failed)
                );
                assert_eq!(
                    r.mark_failed_attempt(1, Some("w1"), "x".into(), false, AT),
                    refused(JobStatus::Pending)
                );
                assert_eq!(r.hand_back(1), refused(JobStatus::Pending));
                assert_eq!(r.cancel(AT), refused(JobStatus::Cancelled));
                assert!(!r.advance(0.5));
                assert_eq!(r, before, "a refused change leaves the record as it was");
            }
        }

        #[test]
        fn a_failed_attempt_waits_for_its_retry_and_the_last_one_fails_for_good() {
            let mut r = record();
            r.mark_running(&run(1)).expect("running");
            r.mark_failed_attempt(1, Some("w1"), "boom".into(), false, AT)
                .expect("running -> pending");
            assert_eq!((r.status, r.attempts), (JobStatus::Pending, 1));
            assert_eq!(r.error.as_deref(), Some("boom"));
            assert_eq!(r.finished_at, None);
            // The second attempt fails before it was recorded running.
            r.mark_failed_attempt(2, Some("w1"), "boom again".into(), false, AT)
                .expect("pending -> pending with the error");
            assert_eq!(r.attempts, 2);
            r.mark_failed_attempt(3, Some("w1"), "last".into(), true, AT)
                .expect("pending -> failed");
            assert_eq!((r.status, r.attempts), (JobStatus::Failed, 3));
            assert_eq!(r.finished_at, Some(AT));
        }

        #[test]
        fn a_dead_letter_keeps_its_error_trail_and_a_retry_reopens_it_once_with_a_fresh_budget() {
            let mut r = record();
            for (n, last) in [(1, false), (2, false), (3, true)] {
                r.mark_failed_attempt(n, Some(&format!("w{n}")), format!("boom {n}"), last, AT)
                    .expect("failed attempt");
            }
            assert_eq!(r.status, JobStatus::Failed);
            let trail: Vec<(u32, Option<&str>, &str)> = r
                .failures
                .iter()
                .map(|f| (f.attempt, f.worker.as_deref(), f.error.as_str()))
                .collect();
            assert_eq!(
                trail,
                [
                    (1, Some("w1"), "boom 1"),
                    (2, Some("w2"), "boom 2"),
                    (3, Some("w3"), "boom 3")
                ]
            );
            assert!(
                !r.may_attempt(r.next_attempt(), 3),
                "the budget of 3 is spent"
            );
            r.message = Some("00".into());
            r.reopen(1).expect("failed -> pending");
            assert_eq!(
                (r.status, r.retries, r.attempts),
                (JobStatus::Pending, 1, 3)
            );
            assert_eq!((r.finished_at, r.message.as_deref()), (None, None));
            assert_eq!(
                r.next_attempt(),
                4,
                "attempt numbers go on (event ids never repeat)"
            );
            assert!(r.may_attempt(4, 3) && r.may_attempt(6, 3) && !r.may_attempt(7, 3));
            assert_eq!(r.failures.len(), 3, "the trail is kept");
            let stale = Err(Transition {
                from: JobStatus::Pending,
                to: JobStatus::Pending,
            });
            assert_eq!(r.reopen(1), stale, "a retry applies once");
            r.mark_failed_attempt(6, Some("w1"), "again".into(), true, AT)
                .expect("failed again");
            assert!(r.reopen(1).is_err(), "an old retry is stale");
            r.reopen(2).expect("a second retry");
            // The trail is bounded, oldest first out.
            for n in 7..7 + FAILURES_KEPT as u32 {
                r.mark_failed_attempt(n, None, format!("e{n}"), false, AT)
                    .expect("failed attempt");
            }
            assert_eq!(r.failures.len(), FAILURES_KEPT);
            assert_eq!(r.failures[0].attempt, 7, "the four older ones went first");
            let done = record();
            for status in [JobStatus::Pending, JobStatus::Done, JobStatus::Cancelled] {
                let mut r = done.clone();
                r.status = status;
                assert!(
                    r.reopen(1).is_err(),
                    "only a failed job is retried, not {status:?}"
                );
            }
        }

        #[test]
        fn a_hand_back_does_not_count_as_an_attempt() {
            let mut r = record();
            r.mark_running(&run(1)).expect("running");
            r.progress = 0.4;
            r.hand_back(1).expect("running -> pending");
            assert_eq!(
                (r.status, r.attempts, r.progress),
                (JobStatus::Pending, 0, 0.0)
            );
            assert_eq!(r.next_attempt(), 1, "the next delivery is attempt 1 again");
            assert!(
                r.hand_back(1).is_err(),
                "nothing to undo: a pending, uncounted record needs no write"
            );
            // An attempt that was never recorded leaves earlier attempts counted.
            r.mark_failed_attempt(1, Some("w1"), "boom".into(), false, AT)
                .expect("failed");
            assert!(r.hand_back(2).is_err());
            assert_eq!(r.attempts, 1);
            // Nor does a hand-back undo another attempt than its own.
            r.mark_running(&run(3)).expect("running");
            assert!(r.hand_back(2).is_err());
            assert_eq!((r.status, r.attempts), (JobStatus::Running, 3));
        }

        #[test]
        fn cancel_stops_pending_and_running_jobs() {
            let mut r = record();
            r.cancel(AT).expect("pending -> cancelled");
            assert_eq!(r.status, JobStatus::Cancelled);
            let mut r = record();
            r.mark_running(&run(1)).expect("running");
            r.cancel(AT).expect("running -> cancelled");
            assert_eq!(r.finished_at, Some(AT));
        }

        #[test]
        fn progress_only_moves_forward_while_running() {
            let mut r = record();
            assert!(!r.advance(0.5), "a pending job has no progress to write");
            r.mark_running(&run(1)).expect("running");
            assert!(r.advance(0.5));
            assert!(!r.advance(0.5));
            assert!(!r.advance(0.2));
            assert_eq!(r.progress, 0.5);
        }

        #[test]
        fn a_refusal_says_what_was_asked() {
            let t = Transition {
                from: JobStatus::Done,
                to: JobStatus::Running,
            };
            assert_eq!(t.to_string(), "a done job cannot become running");
        }
    }
}
