//! A batch of jobs submitted in one request (`POST /v1/jobs/batch`): the answer per
//! item, the batch as stored in the `batches` KV bucket, and its status counts.

use crate::{JobId, JobStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Most items one batch may hold.
pub const MAX_BATCH: usize = 1000;

/// The answer for one item of a batch: a job id, or a problem naming the field.
///
/// Exactly one of `id` and `problem` is set. `problem`, `code`, `field` and `message`
/// are what a single `POST /v1/jobs` of that item would have answered (the problem type,
/// its HTTP status, the field at fault and the detail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchItem {
    /// Position of the item in the request (0-based; for NDJSON, among non-blank lines).
    pub index: usize,
    /// The new job, when the item was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<JobId>,
    /// The job's status when the batch was answered (`pending`, or `done` from the cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// Answered from an identical finished job's result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// Problem type when the item was refused, e.g. `invalid-field`, `kind-disabled`,
    /// `too-many-requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The HTTP status a single submit of this item would have got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The field at fault (e.g. `input`, `kind`, `params.modulus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and how to fix the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Longest `field` or `message` kept in a refused item (the rest is cut), so a batch of
/// junk cannot make a stored batch larger than a KV value may be.
const MAX_TEXT: usize = 300;

fn clip(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

impl BatchItem {
    /// An accepted item.
    pub fn accepted(index: usize, id: JobId, status: JobStatus, cached: bool) -> Self {
        BatchItem {
            index,
            id: Some(id),
            status: Some(status),
            cached,
            problem: None,
            code: None,
            field: None,
            message: None,
        }
    }

    /// A refused item: problem type, HTTP status, field and message.
    pub fn refused(
        index: usize,
        problem: &str,
        code: u16,
        field: Option<String>,
        message: String,
    ) -> Self {
        BatchItem {
            index,
            id: None,
            status: None,
            cached: false,
            problem: Some(problem.to_string()),
            code: Some(code),
            field: field.map(clip),
            message: Some(clip(message)),
        }
    }
}

/// A batch as stored in KV `batches` (key `<tenant>.<id>`), so any gateway can answer
/// for it: the answer per item (ids of the accepted ones) and when it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch id (UUIDv7).
    pub id: JobId,
    /// The tenant that owns the batch and its jobs.
    pub tenant: String,
    /// When the batch was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Every item in request order, as first answered (an idempotent replay answers these).
    pub items: Vec<BatchItem>,
}

impl BatchRecord {
    /// Ids of the batch's jobs, in request order.
    pub fn job_ids(&self) -> impl Iterator<Item = JobId> + '_ {
        self.items.iter().filter_map(|i| i.id)
    }

    /// Encode as the JSON stored in KV.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse the JSON stored in KV.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// How many of a batch's jobs are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchCounts {
    pub pending: usize,
    /// Delayed jobs not due yet.
    #[serde(default)]
    pub scheduled: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub cancelled: usize,
}

impl BatchCounts {
    /// Count one job in `status`.
    pub fn add(&mut self, status: JobStatus) {
        match status {
            JobStatus::Pending => self.pending += 1,
            JobStatus::Scheduled => self.scheduled += 1,
            JobStatus::Running => self.running += 1,
            JobStatus::Done => self.done += 1,
            JobStatus::Failed => self.failed += 1,
            JobStatus::Cancelled => self.cancelled += 1,
        }
    }

    /// Jobs counted.
    pub fn total(&self) -> usize {
        self.pending + self.scheduled + self.running + self.done + self.failed + self.cancelled
    }

    /// Whether every job counted is done, failed or cancelled.
    pub fn all_terminal(&self) -> bool {
        self.pending + self.scheduled + self.running == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_terminal_only_when_nothing_is_pending_or_running() {
        let mut c = BatchCounts::default();
        assert!(c.all_terminal(), "an empty batch is over");
        c.add(JobStatus::Done);
        c.add(JobStatus::Running);
        assert!(!c.all_terminal());
        c.running -= 1;
        c.add(JobStatus::Cancelled);
        assert!(c.all_terminal());
        assert_eq!(c.total(), 2);
    }

    #[test]
    fn refused_items_clip_long_text_on_a_char_boundary() {
        let item = BatchItem::refused(3, "invalid-field", 422, Some("é".repeat(400)), "x".into());
        let field = item.field.expect("field");
        assert!(field.len() <= MAX_TEXT + 3 && field.ends_with("..."));
        let json = serde_json::to_value(BatchItem::accepted(
            0,
            JobId::new(),
            JobStatus::Pending,
            false,
        ))
        .expect("json");
        assert!(json.get("problem").is_none() && json.get("cached").is_none());
    }
}
