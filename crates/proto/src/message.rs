//! The job message published on `JOBS`: postcard after a one-byte schema version.
//!
//! postcard is compact and fast but not self-describing, so every payload starts
//! with a schema byte; a worker rejects (and terminates) what it cannot read
//! instead of misreading it.
//!
//! Each schema appended one optional field: 2 the batch id, 3 the start time of a
//! delayed job, 4 the recurring schedule that made the job, 5 the job's own retention, 6 the workflow step. A message is written with the lowest schema that holds its fields
//! (a plain submit is schema 1, byte for byte as before), so workers of an older
//! build keep reading every plain submit during a rolling upgrade, and messages
//! queued by an older gateway decode with the newer fields `None`. Only batch jobs
//! need workers that read schema 2, only delayed jobs workers that read 3, and only
//! jobs of a recurring schedule workers that read 4, and only jobs with their own
//! retention workers that read 5, and only workflow steps workers that read 6.

use crate::{Chaos, JobId, JobSpec, Priority, StepRef};
use serde::{Deserialize, Serialize};

/// Newest version of the [`JobMessage`] layout; bump on any incompatible change.
pub const SCHEMA_VERSION: u8 = 6;
/// The layout before `workflow` existed (jobs with their own retention).
pub const SCHEMA_V5: u8 = 5;
/// The layout before `retention_secs` existed (jobs of recurring schedules).
pub const SCHEMA_V4: u8 = 4;
/// The layout before `schedule` existed (delayed jobs).
pub const SCHEMA_V3: u8 = 3;
/// The layout before `run_at_ms` existed (batch jobs that are not delayed).
pub const SCHEMA_V2: u8 = 2;
/// The layout before `batch` existed (written for every plain submit).
pub const SCHEMA_V1: u8 = 1;

/// Everything a worker needs to run a job and to (re)create its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    /// The job's id, also the `Nats-Msg-Id` (publish dedup).
    pub id: JobId,
    /// The owning tenant; part of the record key.
    pub tenant: String,
    /// What to compute.
    pub spec: JobSpec,
    /// Queue priority, also in the subject.
    pub priority: Priority,
    /// Submission time, Unix milliseconds.
    pub submitted_at_ms: i64,
    /// Per-job attempt limit; `None` uses the consumer's `max_deliver`.
    pub max_attempts: Option<u32>,
    /// Per-job wall-clock limit per attempt in milliseconds; `None` uses the worker default.
    pub timeout_ms: Option<u64>,
    /// Failure injection for this job; `None` uses the worker's default (normally off).
    pub chaos: Option<Chaos>,
    /// The batch (`POST /v1/jobs/batch`) this job was submitted in. Schema 1 is the
    /// layout up to here (see [`JobMessage::encode`]).
    pub batch: Option<JobId>,
    /// A delayed job's start time, Unix milliseconds (`run_at`/`delay` on submit).
    /// Schema 2 is the layout up to `batch`.
    pub run_at_ms: Option<i64>,
    /// The recurring schedule (`POST /v1/schedules`) whose firing made this job.
    /// Schema 3 is the layout up to `run_at_ms`.
    pub schedule: Option<JobId>,
    /// How long the finished job is kept, in seconds (`retention` on submit); `None`
    /// keeps it the deployment's `--retention`. Schema 4 is the layout up to `schedule`.
    pub retention_secs: Option<u64>,
    /// The workflow step this job is (`POST /v1/workflows`). Must stay the last field:
    /// schema 5 is this layout without it.
    pub workflow: Option<StepRef>,
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload is empty.
    #[error("empty payload")]
    Empty,
    /// The payload was written by a schema this build does not know.
    #[error("unsupported schema version {0} (this build reads {SCHEMA_V1} to {SCHEMA_VERSION})")]
    UnsupportedVersion(u8),
    /// The bytes are not a valid message of this schema.
    #[error("malformed payload: {0}")]
    Malformed(#[from] postcard::Error),
}

impl JobMessage {
    /// A new job (fresh id) of `tenant` computing `spec`, submitted at
    /// `submitted_at_ms`, every option at its default: normal priority, the deployment's
    /// attempts, timeout and retention, no chaos, no batch or schedule, running now.
    pub fn new(tenant: impl Into<String>, spec: JobSpec, submitted_at_ms: i64) -> JobMessage {
        JobMessage {
            id: JobId::new(),
            tenant: tenant.into(),
            spec,
            priority: Priority::Normal,
            submitted_at_ms,
            max_attempts: None,
            timeout_ms: None,
            chaos: None,
            batch: None,
            run_at_ms: None,
            schedule: None,
            retention_secs: None,
            workflow: None,
        }
    }

    /// Serialize as `[schema] ++ postcard(self)` without the trailing `None` fields
    /// the schema lacks (postcard writes fields in order and `None` as one `0` byte, so
    /// schema 1 and 2 are exactly the full layout cut one or two bytes short).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let body = postcard::to_allocvec(self)?;
        let schema = self.schema();
        let cut = usize::from(SCHEMA_VERSION - schema);
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(schema);
        out.extend_from_slice(&body[..body.len().saturating_sub(cut)]);
        Ok(out)
    }

    /// The schema byte [`JobMessage::encode`] writes for this message.
    pub fn schema(&self) -> u8 {
        if self.workflow.is_some() {
            SCHEMA_VERSION
        } else if self.retention_secs.is_some() {
            SCHEMA_V5
        } else if self.schedule.is_some() {
            SCHEMA_V4
        } else if self.run_at_ms.is_some() {
            SCHEMA_V3
        } else if self.batch.is_some() {
            SCHEMA_V2
        } else {
            SCHEMA_V1
        }
    }

    /// Whether the job is due later than `now_ms` (a `run_at` in the past runs at once).
    pub fn scheduled_after(&self, now_ms: i64) -> bool {
        self.run_at_ms.is_some_and(|at| at > now_ms)
    }

    /// Parse a payload written by [`JobMessage::encode`] (any schema).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (&schema, body) = bytes.split_first().ok_or(CodecError::Empty)?;
        if !(SCHEMA_V1..=SCHEMA_VERSION).contains(&schema) {
            return Err(CodecError::UnsupportedVersion(schema));
        }
        if schema == SCHEMA_VERSION {
            return Ok(postcard::from_bytes(body)?);
        }
        // An older schema is the newest without its trailing fields: read them as `None`.
        let missing = usize::from(SCHEMA_VERSION - schema);
        let mut full = Vec::with_capacity(body.len() + missing);
        full.extend_from_slice(body);
        full.resize(body.len() + missing, 0);
        Ok(postcard::from_bytes(&full)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobMessage {
        JobMessage {
            id: JobId::new(),
            tenant: "public".into(),
            spec: JobSpec::Sum {
                terms: vec!["-1".into(), "123456789012345678901234567890".into()],
            },
            priority: Priority::High,
            submitted_at_ms: 1_700_000_000_000,
            max_attempts: Some(3),
            timeout_ms: None,
            chaos: Some(Chaos {
                fail_ppm: 200_000,
                delay_min_ms: 1,
                delay_max_ms: 5,
                panic: false,
            }),
            batch: None,
            run_at_ms: None,
            schedule: None,
            retention_secs: None,
            workflow: None,
        }
    }

    /// The message layout of schema 1, as an older build wrote and reads it.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct OldJobMessage {
        id: JobId,
        tenant: String,
        spec: JobSpec,
        priority: Priority,
        submitted_at_ms: i64,
        max_attempts: Option<u32>,
        timeout_ms: Option<u64>,
        chaos: Option<Chaos>,
    }

    fn old(m: &JobMessage) -> OldJobMessage {
        OldJobMessage {
            id: m.id,
            tenant: m.tenant.clone(),
            spec: m.spec.clone(),
            priority: m.priority,
            submitted_at_ms: m.submitted_at_ms,
            max_attempts: m.max_attempts,
            timeout_ms: m.timeout_ms,
            chaos: m.chaos,
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let bytes = m.encode().expect("encode");
        assert_eq!(bytes[0], SCHEMA_V1);
        assert_eq!(JobMessage::decode(&bytes).expect("decode"), m);
        let batched = JobMessage {
            batch: Some(JobId::new()),
            ..sample()
        };
        let bytes = batched.encode().expect("encode");
        assert_eq!(bytes[0], SCHEMA_V2);
        assert_eq!(batched.schema(), SCHEMA_V2);
        assert_eq!(JobMessage::decode(&bytes).expect("decode"), batched);
        for batch in [None, Some(JobId::new())] {
            let delayed = JobMessage {
                batch,
                run_at_ms: Some(1_700_000_090_000),
                ..sample()
            };
            let bytes = delayed.encode().expect("encode");
            assert_eq!(bytes[0], SCHEMA_V3);
            assert_eq!(JobMessage::decode(&bytes).expect("decode"), delayed);
        }
        let fired = JobMessage {
            schedule: Some(JobId::new()),
            ..sample()
        };
        let bytes = fired.encode().expect("encode");
        assert_eq!(bytes[0], SCHEMA_V4);
        assert_eq!(JobMessage::decode(&bytes).expect("decode"), fired);
        let kept = JobMessage {
            retention_secs: Some(3600),
            ..sample()
        };
        let bytes = kept.encode().expect("encode");
        assert_eq!(bytes[0], SCHEMA_V5);
        assert_eq!(JobMessage::decode(&bytes).expect("decode"), kept);
        let step = JobMessage {
            workflow: Some(StepRef {
                workflow: JobId::new(),
                step: 3,
                name: "fan-in".into(),
            }),
            ..sample()
        };
        let bytes = step.encode().expect("encode");
        assert_eq!(bytes[0], SCHEMA_VERSION);
        assert_eq!(JobMessage::decode(&bytes).expect("decode"), step);
    }

    #[test]
    fn batch_jobs_keep_the_schema_2_layout() {
        // Schema 2 as the build before delayed jobs wrote it: everything up to `batch`.
        let m = JobMessage {
            batch: Some(JobId::new()),
            ..sample()
        };
        let mut v2 = vec![SCHEMA_V2];
        v2.extend(postcard::to_allocvec(&old(&m)).expect("old encode"));
        v2.extend(postcard::to_allocvec(&m.batch).expect("batch"));
        assert_eq!(m.encode().expect("encode"), v2);
        assert_eq!(JobMessage::decode(&v2).expect("decode v2"), m);
    }

    #[test]
    fn only_a_future_start_is_scheduled() {
        let at = |run_at_ms| JobMessage {
            run_at_ms,
            ..sample()
        };
        assert!(at(Some(2_000)).scheduled_after(1_999));
        assert!(!at(Some(2_000)).scheduled_after(2_000));
        assert!(!at(None).scheduled_after(0));
    }

    #[test]
    fn jobs_outside_a_batch_keep_the_old_layout_both_ways() {
        let m = sample();
        let mut written_by_old = vec![SCHEMA_V1];
        written_by_old.extend(postcard::to_allocvec(&old(&m)).expect("old encode"));
        // A message queued by an older gateway decodes, with no batch.
        assert_eq!(JobMessage::decode(&written_by_old).expect("decode old"), m);
        // And an older worker reads what this build writes for a single submit.
        assert_eq!(m.encode().expect("encode"), written_by_old);
        let body = &m.encode().expect("encode")[1..];
        assert_eq!(
            postcard::from_bytes::<OldJobMessage>(body).expect("old decode"),
            old(&m)
        );
    }

    #[test]
    fn rejects_other_versions_and_garbage() {
        let mut bytes = sample().encode().expect("encode");
        bytes[0] = 99;
        assert!(matches!(
            JobMessage::decode(&bytes),
            Err(CodecError::UnsupportedVersion(99))
        ));
        assert!(matches!(JobMessage::decode(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            JobMessage::decode(&[SCHEMA_VERSION, 0xff, 0xff]),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            JobMessage::decode(b"\x02hello"),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            JobMessage::decode(&[0, 1]),
            Err(CodecError::UnsupportedVersion(0))
        ));
        assert!(matches!(
            JobMessage::decode(b"\x01hello"),
            Err(CodecError::Malformed(_))
        ));
    }
}
