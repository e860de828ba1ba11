//! What every handler shares: NATS handles, input limits, auth and options.

use crate::auth::Auth;
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
    /// Verifiers for bearer tokens (empty: auth off).
    auth: Auth,
}

impl AppState {
    /// Share `jet`, `limits` and `auth` with the handlers.
    pub fn new(jet: Jet, limits: Limits, auth: Auth) -> Self {
        AppState {
            inner: Arc::new(Inner { jet, limits, auth }),
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

impl AppState {
    /// Bearer token verification.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }
}
