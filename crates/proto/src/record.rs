//! The job record: JSON in the `jobs` KV bucket, readable with `nats kv get`.
//!
//! Status only moves forward (see [`JobStatus::can_become`]); writers use the
//! KV revision (compare-and-set) so a late `running` never overwrites `done`.

use crate::{JobId, JobKind, JobMessage};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted and queued.
    Pending,
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
    /// state. `running -> pending` is a job waiting for its retry (or handed back
    /// by a draining worker); `running -> running` is a redelivery.
    pub fn can_become(self, next: JobStatus) -> bool {
        match self {
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled => false,
            JobStatus::Pending => next != JobStatus::Pending,
            JobStatus::Running => true,
        }
    }
}

impl std::str::FromStr for JobStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [
            JobStatus::Pending,
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
}

/// Unix milliseconds to a timestamp (clamped to the epoch on nonsense).
pub fn ms_to_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl JobRecord {
    /// The `pending` record of a freshly published job.
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
            started_at: None,
            finished_at: None,
            result: None,
            result_info: None,
            cached: false,
            trace_id: None,
            batch: msg.batch,
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
}
