//! What every handler shares: NATS handles and input limits.

use jetmill_natsx::Jet;
use jetmill_proto::Limits;
use std::sync::Arc;

/// Cheap to clone; one per gateway process.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Streams and buckets, provisioned at start.
    jet: Jet,
    /// Size limits applied to every submission.
    limits: Limits,
}

impl AppState {
    /// Share `jet` and `limits` with the handlers.
    pub fn new(jet: Jet, limits: Limits) -> Self {
        AppState {
            inner: Arc::new(Inner { jet, limits }),
        }
    }

    /// NATS handles.
    pub fn jet(&self) -> &Jet {
        &self.inner.jet
    }

    /// Submission limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}
