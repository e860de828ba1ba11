//! n! from its prime factorisation, split across the thread budget.
//!
//! `n! = 2^e2 * 5^e5 * prod p^ep` with Legendre's exponents. Since `e5 <= e2`,
//! `n! = m * 10^e5` where `m = 2^(e2-e5) * prod_{p != 2,5} p^ep`: only `m` is
//! computed and converted, and the `e5` trailing zeros are appended as text.
//!
//! The odd prime powers are multiplied by exponent bits (Horner over the
//! bits): with `P_i` the product of the primes whose exponent has bit `i` set,
//! `prod p^ep = (...((P_t)^2 * P_(t-1))^2 ... )^2 * P_0`, so the big
//! operations are a handful of squarings and the `P_i` are balanced product
//! trees of small primes. With two or more threads the primes are split into
//! two groups of equal weight (`ep * log p`), each group is built this way on
//! its own thread, and the two halves are multiplied at the end.

mod split;

pub use split::{combine_decimal, partial, split_ranges, Partial, MAX_PARTS};

use crate::decimal;
use crate::product;
use crate::progress::Meter;
use crate::{ComputeError, Control};
use malachite_base::num::logic::traits::SignificantBits;
use malachite_nz::natural::Natural;

/// Share of the factorial's progress given to computing `m` (rest: decimal).
const COMPUTE_SHARE: f64 = 0.2;

/// Karatsuba depth of the last product: its scratch is the compute phase's peak.
pub(crate) const TOP_LEAN_BITS: u64 = product::LEAN_BITS / 2;

/// Below this `n` a single thread does everything.
const PAR_N: u64 = 20_000;

/// n! as a `Natural`.
pub fn factorial(n: u64, ctl: &Control) -> Result<Natural, ComputeError> {
    let meter = Meter::new(ctl, 1.0);
    let (m, zeros) = factorial_parts(n, &meter, 0.0)?;
    let ten = Natural::from(10u32);
    let scale = malachite_base::num::arithmetic::traits::Pow::pow(ten, zeros);
    let f = m * scale;
    meter.finish();
    Ok(f)
}

/// `(m, z)` with `n! = m * 10^z` and `z` the number of trailing zeros of n!.
///
/// This is the compute phase of [`factorial_decimal`] on its own (for
/// benchmarks, and for callers that want the binary value without the zeros).
pub fn factorial_stripped(n: u64, ctl: &Control) -> Result<(Natural, u64), ComputeError> {
    let meter = Meter::new(ctl, 1.0);
    let parts = factorial_parts(n, &meter, 0.0)?;
    meter.finish();
    Ok(parts)
}

/// n! as decimal text, reporting progress through `ctl` (1.0 at the end).
pub fn factorial_decimal(n: u64, ctl: &Control) -> Result<String, ComputeError> {
    let bits = log2_factorial(n).ceil() as u64 + 1;
    let conv = decimal::cost(bits);
    let meter = Meter::new(ctl, conv / (1.0 - COMPUTE_SHARE));
    let (m, zeros) = factorial_parts(n, &meter, conv * COMPUTE_SHARE / (1.0 - COMPUTE_SHARE))?;
    let zeros = usize::try_from(zeros)
        .map_err(|_| ComputeError::InvalidInput(format!("{n}! is too large")))?;
    let s = decimal::to_decimal(m, zeros, &meter)?;
    meter.finish();
    Ok(s)
}

/// `log2(n!)` by Stirling's series (exact enough for size estimates).
pub fn log2_factorial(n: u64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let x = n as f64;
    let ln = x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x);
    ln / std::f64::consts::LN_2
}

/// Trailing decimal zeros of n!, i.e. the exponent of 5 (Legendre).
pub fn trailing_zeros(n: u64) -> u64 {
    legendre(n, 5)
}

/// The exponent of prime `p` in n!.
pub fn legendre(n: u64, p: u64) -> u64 {
    let mut e = 0;
    let mut q = n / p;
    while q > 0 {
        e += q;
        q /= p;
    }
    e
}

/// `(m, z)` with `n! = m * 10^z`, `z` the trailing zero count; counts `units`.
pub(crate) fn factorial_parts(
    n: u64,
    meter: &Meter,
    units: f64,
) -> Result<(Natural, u64), ComputeError> {
    let z = legendre(n, 5);
    let twos = legendre(n, 2) - z;
    let mut odd: Vec<(u64, u64)> = Vec::new();
    for p in odd_primes(n, meter)? {
        if p != 5 {
            odd.push((p, legendre(n, p)));
        }
    }
    let m = odd_product(odd, n >= PAR_N, twos, meter, units)?;
    Ok((m, z))
}

/// `2^shift * prod p^e` over `odd`, on two threads (two groups of equal
/// `e log p` weight) when `par` and the budget allow; counts `units`.
///
/// The shift is applied to the lighter half before the last multiplication,
/// so the full-size result is never copied.
pub(crate) fn odd_product(
    odd: Vec<(u64, u64)>,
    par: bool,
    shift: u64,
    meter: &Meter,
    units: f64,
) -> Result<Natural, ComputeError> {
    let threads = meter.threads();
    if threads >= 2 && par {
        // Greedy split into two groups of equal log-weight; the heaviest
        // primes come first, so the greedy choice balances well.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut wa, mut wb) = (0.0, 0.0);
        for &(p, e) in &odd {
            let w = e as f64 * (p as f64).log2();
            if wa <= wb {
                a.push((p, e));
                wa += w;
            } else {
                b.push((p, e));
                wb += w;
            }
        }
        drop(odd);
        let total = (wa + wb).max(1.0);
        // Each group's units cover its own work; the final product the rest.
        let (ua, ub) = (
            units * 0.4 * wa / total * 2.0,
            units * 0.4 * wb / total * 2.0,
        );
        let half = threads / 2;
        let (x, y) = std::thread::scope(|s| {
            let h = s.spawn(|| powers_product(&a, half, meter, ua));
            let y = powers_product(&b, threads - half, meter, ub);
            let x = h.join().unwrap_or_else(|_| {
                Err(ComputeError::Resources(
                    "a factorial thread panicked".into(),
                ))
            });
            Ok::<_, ComputeError>((x?, y?))
        })?;
        let (x, y) = if x.significant_bits() <= y.significant_bits() {
            (shl(x, shift, meter)?, y)
        } else {
            (x, shl(y, shift, meter)?)
        };
        let m = product::lean_mul_below(x, y, TOP_LEAN_BITS, meter)?;
        meter.advance(units * 0.2)?;
        Ok(m)
    } else {
        let m = powers_product(&odd, threads, meter, units)?;
        shl(m, shift, meter)
    }
}

/// `x << s`, cancellable when large.
fn shl(x: Natural, s: u64, meter: &Meter) -> Result<Natural, ComputeError> {
    if s == 0 {
        return Ok(x);
    }
    let bits = x.significant_bits() + s;
    meter.maybe_heavy(bits, move || x << s)
}

/// `prod p^e` over `pe`, Horner over exponent bits; counts `units`.
fn powers_product(
    pe: &[(u64, u64)],
    threads: usize,
    meter: &Meter,
    units: f64,
) -> Result<Natural, ComputeError> {
    let top = pe
        .iter()
        .map(|&(_, e)| 64 - e.leading_zeros())
        .max()
        .unwrap_or(0);
    // Work of step i ~ the size of the partial result after it. One log per prime, not
    // one per prime and step: for small n these logs were ~2 % of a small job's CPU.
    let logs: Vec<f64> = pe.iter().map(|&(p, _)| (p as f64).log2()).collect();
    let weights: Vec<f64> = (0..top)
        .map(|i| {
            pe.iter()
                .zip(&logs)
                .map(|(&(_, e), &lp)| (e >> i) as f64 * lp)
                .sum()
        })
        .collect();
    let total: f64 = weights.iter().sum::<f64>().max(1.0);
    let mut r = Natural::from(1u32);
    for i in (0..top).rev() {
        let primes: Vec<u64> = pe
            .iter()
            .filter(|&&(_, e)| (e >> i) & 1 == 1)
            .map(|&(p, _)| p)
            .collect();
        let pi = product::product(&primes, threads, meter)?;
        if r != 1u32 {
            r = product::lean_square(r, meter)?;
        }
        r = product::lean_mul(r, pi, meter)?;
        meter.advance(units * weights[i as usize] / total)?;
    }
    Ok(r)
}

/// The odd primes up to `n`, by a sieve over odd numbers (one bit each).
fn odd_primes(n: u64, meter: &Meter) -> Result<Vec<u64>, ComputeError> {
    if n < 3 {
        return Ok(Vec::new());
    }
    let len = usize::try_from((n - 1) / 2)
        .map_err(|_| ComputeError::InvalidInput(format!("n = {n} is too large")))?;
    // Bit j stands for 2j + 3.
    let mut composite = vec![0u64; len.div_ceil(64)];
    let mut j = 0usize;
    loop {
        let p = 2 * j as u64 + 3;
        if p.saturating_mul(p) > n {
            break;
        }
        if composite[j / 64] >> (j % 64) & 1 == 0 {
            let mut m = (p * p - 3) / 2;
            while m < len as u64 {
                let mi = m as usize;
                composite[mi / 64] |= 1 << (mi % 64);
                m += p;
            }
        }
        j += 1;
        if j.is_multiple_of(4096) {
            meter.check()?;
        }
    }
    let mut primes = Vec::with_capacity((n as f64 / (n as f64).ln() * 1.2) as usize + 8);
    for (wi, &word) in composite.iter().enumerate() {
        let mut free = !word;
        while free != 0 {
            let b = free.trailing_zeros() as usize;
            free &= free - 1;
            let idx = wi * 64 + b;
            if idx < len {
                primes.push(2 * idx as u64 + 3);
            }
        }
    }
    Ok(primes)
}

/// Upper-ish estimate of the peak memory (bytes) of [`factorial_decimal`]`(n)`, for planning.
///
/// The decimal conversion's top splits dominate ([`decimal::peak_bytes`]);
/// the sieve and prime list are added for large `n` with small results.
pub fn estimated_peak_bytes(n: u64) -> u64 {
    decimal::peak_bytes(log2_factorial(n).ceil() as u64 + 1) + sieve_bytes(n)
}

/// The sieve's bit array for the odd numbers up to `n` and the prime/exponent list.
fn sieve_bytes(n: u64) -> u64 {
    let x = n as f64;
    (x / 16.0 + 24.0 * 1.2 * x / x.max(2.0).ln()) as u64
}

/// Upper-ish estimate of the peak memory of [`partial`]`(lo, hi)`, for planning:
/// the sieve up to `hi` and the lean products (about 12x the result's bytes).
pub fn partial_peak_bytes(lo: u64, hi: u64) -> u64 {
    let bits = log2_factorial(hi) - log2_factorial(lo.saturating_sub(1));
    (4e6 + 12.0 * bits / 8.0) as u64 + sieve_bytes(hi)
}

/// Upper-ish estimate of the peak memory of [`combine_decimal`]`(n, ..)`, the
/// parts included: the conversion of the result dominates, as in the single path.
pub fn combine_peak_bytes(n: u64) -> u64 {
    decimal::peak_bytes(log2_factorial(n).ceil() as u64 + 1)
}
