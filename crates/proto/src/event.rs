//! Lifecycle events on the `EVENTS` stream, JSON so any consumer can read them.

use crate::{JobId, JobStatus};
use serde::{Deserialize, Serialize};

/// The kind of lifecycle event; also the last token of its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Accepted,
    Started,
    Progress,
    Retried,
    Done,
    Failed,
    Cancelled,
}

impl EventType {
    /// The lowercase name used in subjects and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Accepted => "accepted",
            EventType::Started => "started",
            EventType::Progress => "progress",
            EventType::Retried => "retried",
            EventType::Done => "done",
            EventType::Failed => "failed",
            EventType::Cancelled => "cancelled",
        }
    }

    /// The record status this event reports, if it is a state change.
    pub fn status(self) -> Option<JobStatus> {
        match self {
            EventType::Accepted => Some(JobStatus::Pending),
            EventType::Started => Some(JobStatus::Running),
            EventType::Done => Some(JobStatus::Done),
            EventType::Failed => Some(JobStatus::Failed),
            EventType::Cancelled => Some(JobStatus::Cancelled),
            EventType::Progress | EventType::Retried => None,
        }
    }
}

/// One lifecycle event of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEvent {
    pub job_id: JobId,
    pub tenant: String,
    #[serde(rename = "type")]
    pub event: EventType,
    /// Unix milliseconds when it happened.
    pub at_ms: i64,
    /// The attempt this event belongs to (0 for `accepted`).
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl JobEvent {
    /// Dedup id for publishing, so a retried publish of the same event is stored once.
    /// Progress events add the per-mille so distinct progress steps are all kept.
    pub fn msg_id(&self) -> String {
        match (self.event, self.progress) {
            (EventType::Progress, Some(p)) => {
                format!(
                    "{}.progress.{}.{}",
                    self.job_id,
                    self.attempt,
                    (p * 1000.0) as u32
                )
            }
            _ => format!("{}.{}.{}", self.job_id, self.event.as_str(), self.attempt),
        }
    }
}
