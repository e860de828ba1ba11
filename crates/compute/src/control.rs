//! The hooks a kernel is driven with: progress, cancellation, thread budget.

use std::sync::atomic::{AtomicBool, Ordering};

/// Why a kernel did not produce a result.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ComputeError {
    /// The cancel flag was raised; no partial result is returned.
    #[error("cancelled")]
    Cancelled,
    /// The task's input cannot be computed (e.g. a malformed integer in a sum).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The machine could not provide what the kernel needed (e.g. a thread).
    #[error("resources: {0}")]
    Resources(String),
}

/// What a running kernel is told and tells: cancel flag, progress sink, threads.
///
/// Kernels call [`Control::check`] often (a cancelled kernel must stop within a
/// second) and [`Control::progress`] with a monotone fraction in `[0, 1]`.
pub struct Control<'a> {
    /// Raised by the owner to stop the kernel at its next check.
    cancel: &'a AtomicBool,
    /// Receives the fraction done; called from the kernel's threads.
    progress: &'a (dyn Fn(f64) + Sync),
    /// How many threads the kernel may use (at least 1).
    threads: usize,
}

static NEVER: AtomicBool = AtomicBool::new(false);

fn no_progress(_: f64) {}

impl<'a> Control<'a> {
    /// A control with the given hooks; `threads` is clamped to at least 1.
    pub fn new(cancel: &'a AtomicBool, progress: &'a (dyn Fn(f64) + Sync), threads: usize) -> Self {
        Control {
            cancel,
            progress,
            threads: threads.max(1),
        }
    }

    /// No cancel, no progress, `threads` threads: for tests and benchmarks.
    pub fn silent(threads: usize) -> Control<'static> {
        Control {
            cancel: &NEVER,
            progress: &no_progress,
            threads: threads.max(1),
        }
    }

    /// The thread budget for this call.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// `Err(Cancelled)` once the cancel flag is raised.
    pub fn check(&self) -> Result<(), ComputeError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(ComputeError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Report the fraction done (clamped to `[0, 1]`).
    pub fn progress(&self, fraction: f64) {
        (self.progress)(fraction.clamp(0.0, 1.0));
    }
}
