//! Fibonacci numbers by fast doubling: exact (parallel squarings) and mod m.
//!
//! The exact kernel keeps the pair `(F(k), F(k-1))` and doubles `k` per bit of
//! `n` using two squarings (cheaper than the textbook products):
//! `F(2k-1) = F(k)^2 + F(k-1)^2`, `F(2k+1) = 4F(k)^2 - F(k-1)^2 + 2(-1)^k`,
//! `F(2k) = F(2k+1) - F(2k-1)`. With a thread budget of two the squarings of
//! each large step run concurrently. The modular kernel uses the classic
//! `F(2k) = F(k)(2F(k+1) - F(k))`, `F(2k+1) = F(k)^2 + F(k+1)^2` in `u128`.

use crate::decimal;
use crate::progress::{Meter, HEAVY_BITS};
use crate::{ComputeError, Control};
use malachite_base::num::arithmetic::traits::Square;
use malachite_base::num::logic::traits::SignificantBits;
use malachite_nz::natural::Natural;

/// Share of the exact kernel's progress given to computing F(n).
const COMPUTE_SHARE: f64 = 0.15;

/// Squarings of numbers at least this many bits run on two threads.
const PAR_BITS: u64 = 1 << 16;

/// log2 of the golden ratio: F(n) has about `n * LOG2_PHI` bits.
const LOG2_PHI: f64 = 0.694_241_913_630_617_3;

/// Upper-ish estimate of the peak memory of [`fibonacci_decimal`]`(n)`, for planning.
///
/// The doubling steps hold four numbers of F(n)'s size at most; the decimal
/// conversion dominates (see [`decimal::peak_bytes`]).
pub fn estimated_peak_bytes(n: u64) -> u64 {
    let bits = (n as f64 * LOG2_PHI) as u64 + 1;
    decimal::peak_bytes(bits).max(bits / 2) + (4 << 20)
}

/// F(n) exact.
pub fn fibonacci(n: u64, ctl: &Control) -> Result<Natural, ComputeError> {
    let meter = Meter::new(ctl, 1.0);
    let f = fib_exact(n, &meter, 0.0)?;
    meter.finish();
    Ok(f)
}

/// F(n) as decimal text, reporting progress through `ctl` (1.0 at the end).
pub fn fibonacci_decimal(n: u64, ctl: &Control) -> Result<String, ComputeError> {
    let bits = (n as f64 * LOG2_PHI) as u64 + 1;
    let conv = decimal::cost(bits);
    let meter = Meter::new(ctl, conv / (1.0 - COMPUTE_SHARE));
    let f = fib_exact(n, &meter, conv * COMPUTE_SHARE / (1.0 - COMPUTE_SHARE))?;
    let s = decimal::to_decimal(f, 0, &meter)?;
    meter.finish();
    Ok(s)
}

/// F(n), counting `units` of progress over the doubling steps.
fn fib_exact(n: u64, meter: &Meter, units: f64) -> Result<Natural, ComputeError> {
    if n == 0 {
        return Ok(Natural::from(0u32));
    }
    let steps = 63 - n.leading_zeros();
    // (a, b) = (F(k), F(k-1)), starting at k = 1. Step i roughly doubles the
    // work of step i - 1, so step i gets 2^i / (2^steps - 1) of the units.
    let (mut a, mut b) = (Natural::from(1u32), Natural::from(0u32));
    let mut k: u64 = 1;
    let denom = (2f64).powi(steps as i32) - 1.0;
    for (j, i) in (0..steps).rev().enumerate() {
        let bits = a.significant_bits();
        let (a2, b2) = squares(a, b, bits, meter)?;
        let f2km1 = &a2 + &b2;
        let mut f2kp1 = (a2 << 2u32) - b2;
        if k.is_multiple_of(2) {
            f2kp1 += Natural::from(2u32);
        } else {
            f2kp1 -= Natural::from(2u32);
        }
        if (n >> i) & 1 == 1 {
            b = &f2kp1 - &f2km1;
            a = f2kp1;
            k = 2 * k + 1;
        } else {
            a = f2kp1 - &f2km1;
            b = f2km1;
            k *= 2;
        }
        meter.advance(units * (2f64).powi(j as i32) / denom.max(1.0))?;
    }
    Ok(a)
}

/// `(a^2, b^2)`, concurrently when the numbers are large and two threads are allowed.
fn squares(
    a: Natural,
    b: Natural,
    bits: u64,
    meter: &Meter,
) -> Result<(Natural, Natural), ComputeError> {
    if meter.threads() >= 2 && bits >= PAR_BITS {
        let (ra, rb) = std::thread::scope(|s| {
            let h = s.spawn(|| meter.maybe_heavy(2 * bits, move || a.square()));
            let rb = meter.maybe_heavy(2 * bits, move || b.square());
            let ra = h.join().unwrap_or_else(|_| {
                Err(ComputeError::Resources("a squaring thread panicked".into()))
            });
            (ra, rb)
        });
        Ok((ra?, rb?))
    } else if 2 * bits >= HEAVY_BITS {
        meter.heavy(move || (a.square(), b.square()))
    } else {
        meter.check()?;
        Ok((a.square(), b.square()))
    }
}

/// F(n) mod m by fast doubling in `u128` arithmetic; any m >= 1.
pub fn fibonacci_mod(n: u64, m: u64, ctl: &Control) -> Result<u64, ComputeError> {
    if m == 0 {
        return Err(ComputeError::InvalidInput(
            "modulus must be at least 1".into(),
        ));
    }
    ctl.check()?;
    let m = u128::from(m);
    // (a, b) = (F(k), F(k+1)); all values stay below m < 2^64, so every
    // product below is under 2^128 and every sum under 2^66.
    let (mut a, mut b) = (0u128, 1u128 % m);
    for i in (0..64 - n.leading_zeros()).rev() {
        let two_b = (2 * b) % m;
        let c = a * ((two_b + m - a) % m) % m;
        let d = (a * a % m + b * b % m) % m;
        if (n >> i) & 1 == 0 {
            a = c;
            b = d;
        } else {
            b = (c + d) % m;
            a = d;
        }
    }
    u64::try_from(a).map_err(|_| ComputeError::Resources("modular result out of range".into()))
}
