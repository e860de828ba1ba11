//! The closed set of computations and the one entry point that runs them.

use crate::{factorial, fibonacci, sum, ComputeError, Control};

/// One computation, already validated by the caller for size limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// n!
    Factorial {
        /// The argument.
        n: u64,
    },
    /// F(n), exact.
    Fibonacci {
        /// The index.
        n: u64,
    },
    /// F(n) mod m, for any m >= 1.
    FibonacciMod {
        /// The index.
        n: u64,
        /// The modulus (at least 1).
        modulus: u64,
    },
    /// The sum of signed decimal integers of any size.
    Sum {
        /// The terms: an optional `+`/`-` then ASCII digits.
        terms: Vec<String>,
    },
    /// Part `part` (0-based) of `of` of n!: the partial product of its range of
    /// [`factorial::split_ranges`]`(n, of)`, as binary ([`Output::binary`]).
    FactorialPart {
        /// The factorial's argument.
        n: u64,
        /// Which part, 0-based.
        part: u32,
        /// How many parts.
        of: u32,
    },
    /// n! from every part's partial product: decimal, as [`Task::Factorial`] gives it.
    FactorialCombine {
        /// The factorial's argument.
        n: u64,
        /// The parts, any order.
        parts: Vec<factorial::Partial>,
    },
}

impl Task {
    /// Whether this task is tiny: well under a millisecond on one core, a few KB of
    /// memory (see docs/benchmarks.md, "tiny jobs"). A caller may run
    /// it in place instead of on a thread pool, where the hand-off costs more than it.
    pub fn is_tiny(&self) -> bool {
        match self {
            Task::Factorial { n } => *n <= 1_500,
            Task::Fibonacci { n } => *n <= 20_000,
            Task::FibonacciMod { .. } => true,
            Task::Sum { terms } => {
                terms.len() <= 256 && terms.iter().map(String::len).sum::<usize>() <= 8_192
            }
            Task::FactorialPart { .. } | Task::FactorialCombine { .. } => false,
        }
    }
}

/// Upper-ish estimate of the peak memory (bytes) of [`run`]`(task)`, for planning.
///
/// From the result's size and what the kernels allocate; calibrated against
/// VmHWM of the kernel in a child process (docs/benchmarks.md). See
/// [`factorial::partial_peak_bytes`] and [`factorial::combine_peak_bytes`] for a split factorial.
pub fn estimated_peak_bytes(task: &Task) -> u64 {
    match task {
        Task::Factorial { n } => factorial::estimated_peak_bytes(*n),
        Task::Fibonacci { n } => fibonacci::estimated_peak_bytes(*n),
        Task::FibonacciMod { .. } => 1 << 20,
        // The terms, their binary values and the result's text, each at most the input.
        Task::Sum { terms } => {
            (1 << 20) + 3 * terms.iter().map(|t| t.len() as u64 + 32).sum::<u64>()
        }
        Task::FactorialPart { n, part, of } => {
            match factorial::split_ranges(*n, *of as usize).get(*part as usize) {
                Some(&(lo, hi)) => factorial::partial_peak_bytes(lo, hi),
                None => 1 << 20,
            }
        }
        Task::FactorialCombine { n, .. } => factorial::combine_peak_bytes(*n),
    }
}

/// A finished computation: the exact result as decimal text (`-` for negatives), or
/// for a [`Task::FactorialPart`] the partial product in binary (`decimal` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The result in decimal, no leading zeros, `-` prefix if negative.
    pub decimal: String,
    /// A partial product's bytes ([`factorial::Partial::to_bytes`]).
    pub binary: Option<Vec<u8>>,
}

impl Output {
    /// The number of decimal digits (without the sign).
    pub fn digits(&self) -> usize {
        self.decimal.len() - usize::from(self.decimal.starts_with('-'))
    }
}

/// Run `task` under `ctl`; the progress hook sees 1.0 before this returns `Ok`.
pub fn run(task: &Task, ctl: &Control) -> Result<Output, ComputeError> {
    ctl.check()?;
    let decimal = match task {
        Task::Factorial { n } => factorial::factorial_decimal(*n, ctl)?,
        Task::Fibonacci { n } => fibonacci::fibonacci_decimal(*n, ctl)?,
        Task::FibonacciMod { n, modulus } => {
            let v = fibonacci::fibonacci_mod(*n, *modulus, ctl)?;
            ctl.progress(1.0);
            v.to_string()
        }
        Task::Sum { terms } => sum::sum_decimal(terms, ctl)?,
        Task::FactorialPart { n, part, of } => {
            let ranges = factorial::split_ranges(*n, *of as usize);
            let &(lo, hi) = ranges.get(*part as usize).ok_or_else(|| {
                ComputeError::InvalidInput(format!(
                    "{n}! has {} parts in a split of {of}; there is no part {}",
                    ranges.len(),
                    part + 1
                ))
            })?;
            let bytes = factorial::partial(lo, hi, ctl)?.to_bytes();
            ctl.check()?;
            return Ok(Output {
                decimal: String::new(),
                binary: Some(bytes),
            });
        }
        Task::FactorialCombine { n, parts } => factorial::combine_decimal(*n, parts.clone(), ctl)?,
    };
    // A cancel raised while the last step finished still wins: no result.
    ctl.check()?;
    Ok(Output {
        decimal,
        binary: None,
    })
}
