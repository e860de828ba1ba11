//! The job message published on `JOBS`: postcard after a one-byte schema version.
//!
//! postcard is compact and fast but not self-describing, so every payload starts
//! with [`SCHEMA_VERSION`]; a worker rejects (and terminates) what it cannot read
//! instead of misreading it.

use crate::{Chaos, JobId, JobSpec, Priority};
use serde::{Deserialize, Serialize};

/// Version of the [`JobMessage`] layout; bump on any incompatible change.
pub const SCHEMA_VERSION: u8 = 1;

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
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload is empty.
    #[error("empty payload")]
    Empty,
    /// The payload was written by a schema this build does not know.
    #[error("unsupported schema version {0} (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion(u8),
    /// The bytes are not a valid message of this schema.
    #[error("malformed payload: {0}")]
    Malformed(#[from] postcard::Error),
}

impl JobMessage {
    /// Serialize as `[SCHEMA_VERSION] ++ postcard(self)`.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = vec![SCHEMA_VERSION];
        let body = postcard::to_allocvec(self)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Parse a payload written by [`JobMessage::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes.split_first() {
            None => Err(CodecError::Empty),
            Some((&SCHEMA_VERSION, body)) => Ok(postcard::from_bytes(body)?),
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
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let bytes = m.encode().expect("encode");
        assert_eq!(bytes[0], SCHEMA_VERSION);
        assert_eq!(JobMessage::decode(&bytes).expect("decode"), m);
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
            JobMessage::decode(b"\x01hello"),
            Err(CodecError::Malformed(_))
        ));
    }
}
