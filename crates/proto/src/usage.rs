//! Per-tenant usage counters: JSON in KV `usage`, served at `GET /v1/usage`.

use crate::EventType;
use serde::{Deserialize, Serialize};

/// What one tenant has asked for and got, counted from its stored job records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub tenant: String,
    /// Jobs accepted (including ones answered from the result cache).
    pub submitted: u64,
    /// Jobs that finished with a result.
    pub done: u64,
    /// Jobs that gave up.
    pub failed: u64,
    /// Jobs cancelled by request.
    pub cancelled: u64,
    /// Accepted and not finished yet (queued or running).
    #[serde(default)]
    pub in_flight: u64,
}

impl Usage {
    /// Count one event; returns whether it is one that counts.
    pub fn count(&mut self, event: EventType) -> bool {
        match event {
            EventType::Accepted => self.submitted += 1,
            EventType::Done => self.done += 1,
            EventType::Failed => self.failed += 1,
            EventType::Cancelled => self.cancelled += 1,
            EventType::Started | EventType::Progress | EventType::Retried => return false,
        }
        self.in_flight = self
            .submitted
            .saturating_sub(self.done + self.failed + self.cancelled);
        true
    }

    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &Usage) {
        self.submitted += other.submitted;
        self.done += other.done;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.in_flight = self
            .submitted
            .saturating_sub(self.done + self.failed + self.cancelled);
    }
}
