//! Exact big-number kernels: factorial, Fibonacci (exact or mod m) and sums.
//!
//! This crate knows nothing of NATS or HTTP. Every kernel takes a [`Control`]
//! (progress callback, cancel flag, thread budget) and returns the result as
//! decimal text, because the decimal conversion is part of the work a job pays
//! for: when a job says `done`, the text a user downloads is ready.
//!
//! Layout: [`control`] (the hooks), [`progress`] (throttled progress and
//! cancellable heavy operations), [`task`] (what can be computed and [`run`]),
//! one module per kernel ([`factorial`], [`fibonacci`], [`sum`]) and the shared
//! building blocks [`product`] (product trees) and [`decimal`] (parallel
//! divide-and-conquer radix conversion). Arithmetic is malachite's (LGPL-3.0).

pub mod control;
pub mod decimal;
pub mod factorial;
pub mod fibonacci;
pub mod product;
pub mod progress;
pub mod sum;
pub mod task;

pub use control::{ComputeError, Control};
pub use task::{run, Output, Task};
