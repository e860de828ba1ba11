//! Balanced product trees of machine words, with cancellation checks.
//!
//! Small factors are first packed into 64-bit words (multiplying neighbours
//! while the product fits), then the words are multiplied pairwise up a
//! balanced tree so both operands of every multiplication have similar size,
//! which is what makes FFT-class multiplication pay off. With a thread budget
//! of two or more, the two halves of a large tree are built concurrently.

use crate::progress::Meter;
use crate::ComputeError;
use malachite_base::num::arithmetic::traits::{ModPowerOf2, Square};
use malachite_base::num::logic::traits::SignificantBits;
use malachite_nz::natural::Natural;

/// Below this many words a subtree is multiplied without further checks.
const SERIAL_WORDS: usize = 64;

/// Above this many words the two halves of a tree are built on two threads.
const PAR_WORDS: usize = 1 << 14;

/// Pack `factors` into words: each word is the product of consecutive factors.
pub fn pack(factors: &[u64]) -> Vec<u64> {
    let mut words = Vec::with_capacity(factors.len() / 2 + 1);
    let mut acc: u64 = 1;
    for &f in factors {
        match acc.checked_mul(f) {
            Some(v) => acc = v,
            None => {
                words.push(acc);
                acc = f;
            }
        }
    }
    if acc != 1 || words.is_empty() {
        words.push(acc);
    }
    words
}

/// The product of `factors` (1 for none), using up to `threads` threads.
pub fn product(factors: &[u64], threads: usize, meter: &Meter) -> Result<Natural, ComputeError> {
    tree(&pack(factors), threads, meter)
}

fn tree(words: &[u64], threads: usize, meter: &Meter) -> Result<Natural, ComputeError> {
    if words.len() <= SERIAL_WORDS {
        return Ok(serial(words));
    }
    meter.check()?;
    let (a, b) = words.split_at(words.len() / 2);
    let (x, y) = if threads >= 2 && words.len() >= PAR_WORDS {
        let half = threads / 2;
        std::thread::scope(|s| {
            let h = s.spawn(move || tree(a, half, meter));
            let y = tree(b, threads - half, meter);
            let x = h.join().unwrap_or_else(|_| {
                Err(ComputeError::Resources("a product thread panicked".into()))
            });
            Ok::<_, ComputeError>((x?, y?))
        })?
    } else {
        (tree(a, threads, meter)?, tree(b, threads, meter)?)
    };
    Ok(x * y)
}

fn serial(words: &[u64]) -> Natural {
    match words {
        [] => Natural::from(1u32),
        [w] => Natural::from(*w),
        _ => {
            let (a, b) = words.split_at(words.len() / 2);
            serial(a) * serial(b)
        }
    }
}

/// Operands below this many bits are multiplied by malachite directly.
///
/// Above it, one Karatsuba level is applied by hand: malachite's FFT
/// multiplication of two `b`-bit operands needs scratch space of roughly
/// `10 b` bits, so three half-size products (run one after the other) cut the
/// peak memory of the largest multiplications by about half for ~15% time.
pub const LEAN_BITS: u64 = 1 << 26;

/// `a * b` with bounded scratch memory (see [`LEAN_BITS`]); cancellable.
pub fn lean_mul(a: Natural, b: Natural, meter: &Meter) -> Result<Natural, ComputeError> {
    lean_mul_below(a, b, LEAN_BITS, meter)
}

/// [`lean_mul`] with Karatsuba levels down to operands of `lean` bits.
///
/// For the last, largest product of a kernel, where its scratch is the peak
/// memory of the whole call: each level halves the scratch for ~25% more time.
pub fn lean_mul_below(
    a: Natural,
    b: Natural,
    lean: u64,
    meter: &Meter,
) -> Result<Natural, ComputeError> {
    let (ba, bb) = (a.significant_bits(), b.significant_bits());
    if ba < bb {
        return lean_mul_below(b, a, lean, meter);
    }
    let lean = lean.max(1 << 16);
    if ba < lean {
        return meter.maybe_heavy(ba + bb, move || a * b);
    }
    if ba > 2 * bb {
        // Unbalanced: malachite would use scratch for a full-size product;
        // split the long operand instead (`a1 b 2^s + a0 b`).
        let s = ba / 2;
        let (a0, a1) = ((&a).mod_power_of_2(s), a >> s);
        let low = lean_mul_below(a0, b.clone(), lean, meter)?;
        let high = lean_mul_below(a1, b, lean, meter)?;
        return meter.maybe_heavy(ba + bb, move || (high << s) + low);
    }
    if bb < lean {
        return meter.maybe_heavy(ba + bb, move || a * b);
    }
    let s = bb / 2;
    let (a0, a1) = ((&a).mod_power_of_2(s), a >> s);
    let (b0, b1) = ((&b).mod_power_of_2(s), b >> s);
    let sa = &a0 + &a1;
    let sb = &b0 + &b1;
    let mid = lean_mul_below(sa, sb, lean, meter)?;
    let low = lean_mul_below(a0, b0, lean, meter)?;
    let high = lean_mul_below(a1, b1, lean, meter)?;
    meter.maybe_heavy(ba + bb, move || {
        let mid = mid - &low - &high;
        (((high << s) + mid) << s) + low
    })
}

/// `a^2` with bounded scratch memory (see [`LEAN_BITS`]); cancellable.
pub fn lean_square(a: Natural, meter: &Meter) -> Result<Natural, ComputeError> {
    let bits = a.significant_bits();
    if bits < LEAN_BITS {
        return meter.maybe_heavy(2 * bits, move || a.square());
    }
    let s = bits / 2;
    let (a0, a1) = ((&a).mod_power_of_2(s), a >> s);
    // a^2 = a1^2 2^2s + 2 a0 a1 2^s + a0^2
    let low = lean_square(a0.clone(), meter)?;
    let mid = lean_mul(a0, a1.clone(), meter)?;
    let high = lean_square(a1, meter)?;
    meter.maybe_heavy(2 * bits, move || (((high << s) + (mid << 1u32)) << s) + low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Control;
    use malachite_base::num::arithmetic::traits::Pow;

    #[test]
    fn lean_mul_below_matches_direct_at_any_depth() {
        let ctl = Control::silent(1);
        let meter = Meter::new(&ctl, 1.0);
        let a = Natural::from(3u32).pow(200_000) - Natural::from(1u32);
        let b = Natural::from(7u32).pow(90_000) + Natural::from(5u32);
        let c = Natural::from(11u32).pow(20_000);
        let want = &a * &b;
        for lean in [1u64 << 16, 1 << 17, 1 << 19, LEAN_BITS] {
            let got = lean_mul_below(a.clone(), b.clone(), lean, &meter).expect("mul");
            assert!(got == want, "lean {lean}");
            let got = lean_mul_below(c.clone(), a.clone(), lean, &meter).expect("mul");
            assert!(got == &a * &c, "unbalanced, lean {lean}");
        }
    }
}
