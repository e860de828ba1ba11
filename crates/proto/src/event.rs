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
    /// Set on the first event of an attempt that published no `started` of its own
    /// (a worker publishes `started` only once an attempt has run `--running-after-ms`,
    /// 20 ms: nobody can watch a quicker one run, and the event costs a store): Unix
    /// milliseconds when the attempt began. Readers show the `started` it stands for
    /// ([`JobEvent::implied_start`]); the SSE feeds do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
}

impl JobEvent {
    /// The `started` event this one stands for, when it carries `started_at_ms`.
    pub fn implied_start(&self) -> Option<JobEvent> {
        let at_ms = self.started_at_ms?;
        Some(JobEvent {
            job_id: self.job_id,
            tenant: self.tenant.clone(),
            event: EventType::Started,
            at_ms,
            attempt: self.attempt,
            worker: self.worker.clone(),
            progress: None,
            error: None,
            started_at_ms: None,
        })
    }

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
