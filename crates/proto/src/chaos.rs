//! Failure injection settings, for tests and demos (off unless asked for).
//!
//! Carried per job in the [`crate::JobMessage`] and settable as a worker default,
//! so redelivery, retries, timeouts and panics can be shown on demand.

use serde::{Deserialize, Serialize};

/// What to inject into each attempt of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Chaos {
    /// Chance that an attempt fails, in parts per million (1,000,000 = always).
    pub fail_ppm: u32,
    /// Extra delay before the kernel runs, drawn uniformly from this range (ms).
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Fail by panicking inside the kernel's thread instead of returning an error.
    pub panic: bool,
}

impl Chaos {
    /// Parts per million in one.
    pub const PPM: u32 = 1_000_000;

    /// Whether this injects anything at all.
    pub fn is_active(&self) -> bool {
        self.fail_ppm > 0 || self.delay_max_ms > 0
    }

    /// The failure probability as a fraction.
    pub fn fail_probability(&self) -> f64 {
        f64::from(self.fail_ppm) / f64::from(Self::PPM)
    }
}
