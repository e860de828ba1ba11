//! The job message published on `JOBS`: postcard after a one-byte schema version.
//!
//! postcard is compact and fast but not self-describing, so every payload starts
//! with a schema byte; a worker rejects (and terminates) what it cannot read
//! instead of misreading it.
//!
//! Schema 2 appended the batch id. A message outside a batch is still written as
//! schema 1, byte for byte as before, so workers of an older build keep reading
//! every single submit during a rolling upgrade, and messages queued by an older
//! gateway decode as "no batch". Only batch jobs need workers that read schema 2.

use crate::{Chaos, JobId, JobSpec, Priority};
use serde::{Deserialize, Serialize};

/// Newest version of the [`JobMessage`] layout; bump on any incompatible change.
pub const SCHEMA_VERSION: u8 = 2;
/// The layout before `batch` existed (written for every job outside a batch).
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
    /// The batch (`POST /v1/jobs/batch`) this job was submitted in. Must stay the last
    /// field: schema 1 is this layout without it (see [`JobMessage::encode`]).
    pub batch: Option<JobId>,
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload is empty.
    #[error("empty payload")]
    Empty,
    /// The payload was written by a schema this build does not know.
    #[error("unsupported schema version {0} (this build reads {SCHEMA_V1} and {SCHEMA_VERSION})")]
    UnsupportedVersion(u8),
    /// The bytes are not a valid message of this schema.
    #[error("malformed payload: {0}")]
    Malformed(#[from] postcard::Error),
}

impl JobMessage {
    /// Serialize as `[2] ++ postcard(self)` for a batch job, else as `[1] ++` the same
    /// postcard without the trailing `batch` (postcard writes fields in order and `None`
    /// as one `0` byte, so that is exactly the schema 1 layout).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let body = postcard::to_allocvec(self)?;
        let mut out = Vec::with_capacity(body.len() + 1);
        match self.batch {
            Some(_) => {
                out.push(SCHEMA_VERSION);
                out.extend_from_slice(&body);
            }
            None => {
                out.push(SCHEMA_V1);
                // The last byte is `batch`'s `None` tag.
                out.extend_from_slice(body.split_last().map_or(&[][..], |(_, rest)| rest));
            }
        }
        Ok(out)
    }

    /// The schema byte [`JobMessage::encode`] writes for this message.
    pub fn schema(&self) -> u8 {
        if self.batch.is_some() {
            SCHEMA_VERSION
        } else {
            SCHEMA_V1
        }
    }

    /// Parse a payload written by [`JobMessage::encode`] (either schema).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes.split_first() {
            None => Err(CodecError::Empty),
            Some((&SCHEMA_VERSION, body)) => Ok(postcard::from_bytes(body)?),
            Some((&SCHEMA_V1, body)) => {
                // Schema 1 is schema 2 without the trailing `batch`: read it as `None`.
                let mut full = Vec::with_capacity(body.len() + 1);
                full.extend_from_slice(body);
                full.push(0);
                Ok(postcard::from_bytes(&full)?)
            }
            Some((&v, _)) => Err(CodecError::UnsupportedVersion(v)),
        }
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
        assert_eq!(bytes[0], SCHEMA_VERSION);
        assert_eq!(batched.schema(), SCHEMA_VERSION);
        assert_eq!(JobMessage::decode(&bytes).expect("decode"), batched);
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
            JobMessage::decode(b"\x01hello"),
            Err(CodecError::Malformed(_))
        ));
    }
}
