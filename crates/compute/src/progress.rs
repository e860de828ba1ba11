//! Throttled, monotone progress reporting and cancellable heavy operations.
//!
//! Kernels count abstract *work units* into a [`Meter`]; the meter turns them
//! into a fraction of the job's estimated total and forwards it to the
//! [`Control`]'s progress hook, at most about once per percent and at least
//! every [`HEARTBEAT`] while work is running (a thread waiting on a long
//! multiplication re-emits the current fraction). Calls are monotone: a value
//! is never lower than the one before it.
//!
//! Big-integer operations (one multiplication or division of tens of
//! megabits) cannot be interrupted half-way. [`Meter::heavy`] runs such an
//! operation on a helper thread while the calling thread waits, polling the
//! cancel flag every few milliseconds: a cancelled kernel then returns
//! [`ComputeError::Cancelled`] at once and the helper's result is dropped when
//! it finishes. The calling thread only waits, so the number of threads doing
//! arithmetic never exceeds the budget.

use crate::{ComputeError, Control};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest interval between two progress calls while a job is running.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// How often a thread waiting on a heavy operation polls the cancel flag.
const POLL: Duration = Duration::from_millis(5);

/// Smallest advance (as a fraction) that is reported before the heartbeat.
const STEP: f64 = 0.01;

/// Operands at least this many bits are worth running through [`Meter::heavy`].
pub const HEAVY_BITS: u64 = 1 << 23;

struct State {
    done: f64,
    last_value: f64,
    last_emit: Instant,
}

/// Progress accounting for one kernel call; shared by its threads.
pub struct Meter<'c, 'a> {
    ctl: &'c Control<'a>,
    total: f64,
    state: Mutex<State>,
}

impl<'c, 'a> Meter<'c, 'a> {
    /// A meter for a job estimated at `total` work units (any positive scale).
    pub fn new(ctl: &'c Control<'a>, total: f64) -> Self {
        let state = State {
            done: 0.0,
            last_value: 0.0,
            last_emit: Instant::now(),
        };
        Meter {
            ctl,
            total: total.max(1.0),
            state: Mutex::new(state),
        }
    }

    /// The control this meter reports to.
    pub fn ctl(&self) -> &'c Control<'a> {
        self.ctl
    }

    /// The thread budget of the call.
    pub fn threads(&self) -> usize {
        self.ctl.threads()
    }

    /// `Err(Cancelled)` once the cancel flag is raised.
    pub fn check(&self) -> Result<(), ComputeError> {
        self.ctl.check()
    }

    /// Count `units` of finished work, report if due, and check for cancellation.
    pub fn advance(&self, units: f64) -> Result<(), ComputeError> {
        self.tick(units);
        self.ctl.check()
    }

    /// Report the current fraction if a heartbeat is due (no new work).
    pub fn heartbeat(&self) {
        self.tick(0.0);
    }

    fn tick(&self, units: f64) {
        let Ok(mut s) = self.state.lock() else { return };
        s.done += units;
        // Never report 1.0 before the job is over: `finish` does that.
        let value = (s.done / self.total).min(0.999).max(s.last_value);
        let since = s.last_emit.elapsed();
        let due = since >= HEARTBEAT || (value - s.last_value >= STEP && since >= POLL);
        if due {
            s.last_value = value;
            s.last_emit = Instant::now();
            // The hook runs under the lock so calls are ordered and monotone.
            self.ctl.progress(value);
        }
    }

    /// Report completion (1.0); call once, after the result is ready.
    pub fn finish(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.last_value = 1.0;
            s.last_emit = Instant::now();
            self.ctl.progress(1.0);
        }
    }

    /// Run `op` on a helper thread while this one polls cancel and heartbeats.
    ///
    /// Use for single big-integer operations that may take longer than the
    /// cancellation bound allows; cheap ones should be called directly.
    pub fn heavy<T, F>(&self, op: F) -> Result<T, ComputeError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.check()?;
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("jetmill-heavy".into())
            .spawn(move || {
                // The receiver is gone if the call was cancelled: drop the result.
                let _ = tx.send(op());
            })
            .map_err(|e| ComputeError::Resources(format!("cannot spawn a thread: {e}")))?;
        loop {
            match rx.recv_timeout(POLL) {
                Ok(v) => return Ok(v),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.check()?;
                    self.heartbeat();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ComputeError::Resources("a compute thread panicked".into()));
                }
            }
        }
    }

    /// [`Meter::heavy`] when `bits` is at least [`HEAVY_BITS`], else a direct call.
    pub fn maybe_heavy<T, F>(&self, bits: u64, op: F) -> Result<T, ComputeError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if bits >= HEAVY_BITS {
            self.heavy(op)
        } else {
            self.check()?;
            Ok(op())
        }
    }
}
