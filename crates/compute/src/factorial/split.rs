//! One factorial as K partial jobs plus a combine job.
//!
//! [`split_ranges`] cuts `2..=n` into contiguous ranges of equal `sum log2 i`
//! (with integer arithmetic only, so the gateway and every worker compute the
//! same plan). [`partial`] computes one range's product with its factors 2 and
//! 5 removed and counted ([`Partial`], stored as [`Partial::to_bytes`]), by the
//! same prime-factorisation kernel as the single path (the exponent of `p` in
//! `lo..=hi` is `legendre(hi, p) - legendre(lo - 1, p)`). [`combine_decimal`]
//! checks the parts describe exactly n!, multiplies them up a balanced tree,
//! applies `2^(twos - fives)` and converts: the text equals
//! [`factorial_decimal`](super::factorial_decimal)'s.

use super::{
    legendre, log2_factorial, odd_primes, odd_product, trailing_zeros, PAR_N, TOP_LEAN_BITS,
};
use crate::decimal;
use crate::product;
use crate::progress::Meter;
use crate::{ComputeError, Control};
use malachite_base::num::arithmetic::traits::{DivisibleBy, Parity};
use malachite_base::num::logic::traits::SignificantBits;
use malachite_nz::natural::Natural;
use malachite_nz::platform::Limb;

/// `log2(e)` in Q32 fixed point.
const LOG2_E_Q32: i128 = 6_196_328_019;
/// `log2(2 pi)` in Q32 fixed point.
const LOG2_2PI_Q32: i128 = 11_388_089_162;

/// `log2(x)` in Q32 fixed point (`x >= 1`), by repeated squaring of the mantissa.
///
/// Integer-only, so every machine computes the same value (libm's `log2` may differ).
fn log2_q32(x: u64) -> i128 {
    let int = 63 - u64::from(x.max(1).leading_zeros());
    // Mantissa in [1, 2) as Q62.
    let mut m: u128 = if int <= 62 {
        u128::from(x) << (62 - int)
    } else {
        u128::from(x) >> 1
    };
    let mut frac: i128 = 0;
    for _ in 0..32 {
        m = (m * m) >> 62;
        frac <<= 1;
        if m >= 2u128 << 62 {
            m >>= 1;
            frac |= 1;
        }
    }
    (i128::from(int) << 32) | frac
}

/// `log2(x!)` in Q32 fixed point: exact sum below 32, Stirling's series above.
fn log2_factorial_q32(x: u64) -> i128 {
    if x < 32 {
        return (2..=x).map(log2_q32).sum();
    }
    let l = log2_q32(x);
    let xi = i128::from(x);
    xi * l - xi * LOG2_E_Q32 + (l + LOG2_2PI_Q32) / 2 + LOG2_E_Q32 / (12 * xi)
}

/// The most ranges [`split_ranges`] returns (bounds its allocation and arithmetic).
pub const MAX_PARTS: usize = 1 << 16;

/// `k` contiguous inclusive ranges covering `2..=n`, of equal weight `sum log2 i`.
///
/// Low ranges are wider than high ones. Exactly `min(k, n - 1, MAX_PARTS)` ranges
/// (`k = 0` counts as 1), never an empty one; none for `n < 2`. Integer-only: deterministic.
pub fn split_ranges(n: u64, k: usize) -> Vec<(u64, u64)> {
    if n < 2 {
        return Vec::new();
    }
    let k = (k.clamp(1, MAX_PARTS) as u64).min(n - 1);
    let total = log2_factorial_q32(n);
    let mut out = Vec::with_capacity(k as usize);
    let mut lo = 2;
    for j in 1..k {
        let target = total * i128::from(j) / i128::from(k);
        // The smallest hi in lo..=n with log2(hi!) >= target.
        let (mut a, mut b) = (lo, n);
        while a < b {
            let mid = a + (b - a) / 2;
            if log2_factorial_q32(mid) >= target {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        // Leave at least one number for each range still to come.
        let hi = a.min(n - (k - j));
        out.push((lo, hi));
        lo = hi + 1;
    }
    out.push((lo, n));
    out
}

/// The product of `lo..=hi` without its factors 2 and 5, and how many there were.
///
/// `product = odd * 2^twos * 5^fives`; `odd` is odd and not a multiple of 5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// The product with every factor 2 and 5 removed.
    pub odd: Natural,
    /// The exponent of 2 in the product.
    pub twos: u64,
    /// The exponent of 5 in the product.
    pub fives: u64,
}

/// First bytes of a serialized [`Partial`]: `b"JMP"` and the format version.
const MAGIC: [u8; 4] = *b"JMP\x01";
/// Magic, twos, fives, limb count.
const HEADER: usize = 4 + 8 + 8 + 8;

const _: () = assert!(Limb::BITS == 64, "the Partial format stores 64-bit limbs");

impl Partial {
    /// Compact binary form: `b"JMP"`, version 1, then `twos`, `fives`, the limb
    /// count and the limbs of `odd` (least significant first), all u64 little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let limbs = self.odd.limbs();
        let mut out = Vec::with_capacity(HEADER + 8 * limbs.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.twos.to_le_bytes());
        out.extend_from_slice(&self.fives.to_le_bytes());
        out.extend_from_slice(&(limbs.len() as u64).to_le_bytes());
        for l in limbs {
            out.extend_from_slice(&l.to_le_bytes());
        }
        out
    }

    /// Parse [`Partial::to_bytes`]'s output; `InvalidInput` for anything else.
    ///
    /// Checks the magic and version, the exact length, that the top limb is
    /// non-zero and that `odd` is odd and not a multiple of 5.
    pub fn from_bytes(bytes: &[u8]) -> Result<Partial, ComputeError> {
        let bad =
            |what: String| ComputeError::InvalidInput(format!("not a factorial partial: {what}"));
        if bytes.len() < HEADER {
            return Err(bad(format!(
                "{} bytes, shorter than the {HEADER}-byte header",
                bytes.len()
            )));
        }
        if bytes[..3] != MAGIC[..3] {
            return Err(bad("wrong magic bytes".into()));
        }
        if bytes[3] != MAGIC[3] {
            return Err(bad(format!(
                "format version {} (this build reads {})",
                bytes[3], MAGIC[3]
            )));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[4 + 8 * i..12 + 8 * i]);
            u64::from_le_bytes(w)
        };
        let (twos, fives, count) = (word(0), word(1), word(2));
        let body = bytes.len() - HEADER;
        if !body.is_multiple_of(8) || (body / 8) as u64 != count {
            return Err(bad(format!(
                "header says {count} limbs, {body} bytes follow (truncated or padded)"
            )));
        }
        let limbs: Vec<Limb> = bytes[HEADER..]
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        if limbs.last() == Some(&0) {
            return Err(bad("the top limb is zero".into()));
        }
        let odd = Natural::from_owned_limbs_asc(limbs);
        check_odd(&odd).map_err(|e| bad(e.into()))?;
        Ok(Partial { odd, twos, fives })
    }
}

/// `Err` unless `x` is odd and not a multiple of 5 (so non-zero).
fn check_odd(x: &Natural) -> Result<(), &'static str> {
    if !x.odd() {
        return Err("the odd part is even (or zero)");
    }
    if x.divisible_by(Natural::from(5u32)) {
        return Err("the odd part is a multiple of 5");
    }
    Ok(())
}

/// The [`Partial`] of `lo..=hi` (`1 <= lo <= hi`), reporting progress through `ctl`.
///
/// Same kernel as the single path: prime exponents of the range, Horner over
/// their bits, two halves on two threads when the budget allows.
pub fn partial(lo: u64, hi: u64, ctl: &Control) -> Result<Partial, ComputeError> {
    if lo == 0 || lo > hi {
        return Err(ComputeError::InvalidInput(format!(
            "a partial needs 1 <= lo <= hi, got {lo}..={hi}"
        )));
    }
    let meter = Meter::new(ctl, 1.0);
    let below = lo - 1;
    let exp = |p: u64| legendre(hi, p) - legendre(below, p);
    let mut pe = Vec::new();
    for p in odd_primes(hi, &meter)? {
        if p != 5 {
            let e = exp(p);
            if e > 0 {
                pe.push((p, e));
            }
        }
    }
    let odd = odd_product(pe, hi - lo >= PAR_N, 0, &meter, 1.0)?;
    let part = Partial {
        odd,
        twos: exp(2),
        fives: exp(5),
    };
    meter.finish();
    Ok(part)
}

/// Share of the combine's progress given to multiplying the parts (rest: decimal).
const COMBINE_SHARE: f64 = 0.15;

/// n! as decimal text from the [`Partial`]s of a [`split_ranges`] plan.
///
/// Checks that the exponents of 2 and 5 and the size of the parts are those
/// of n! (`InvalidInput` naming the mismatch), multiplies them up a balanced
/// tree (each input dropped once used), applies `2^(twos - fives)`, converts
/// and appends `fives` zeros: the same text as `factorial_decimal(n)`.
pub fn combine_decimal(n: u64, parts: Vec<Partial>, ctl: &Control) -> Result<String, ComputeError> {
    ctl.check()?;
    let invalid = |m: String| ComputeError::InvalidInput(format!("combine of {n}!: {m}"));
    let (mut twos, mut fives) = (0u64, 0u64);
    let (mut bits_hi, mut bits_lo) = (0f64, 0f64);
    for (i, p) in parts.iter().enumerate() {
        check_odd(&p.odd).map_err(|e| invalid(format!("part {i}: {e}")))?;
        twos = twos
            .checked_add(p.twos)
            .ok_or_else(|| invalid("the exponents of 2 overflow".into()))?;
        fives = fives
            .checked_add(p.fives)
            .ok_or_else(|| invalid("the exponents of 5 overflow".into()))?;
        let b = p.odd.significant_bits() as f64;
        bits_hi += b;
        bits_lo += b - 1.0;
    }
    let (e2, e5) = (legendre(n, 2), trailing_zeros(n));
    if fives != e5 {
        return Err(invalid(format!(
            "the parts hold 5^{fives}, {n}! holds 5^{e5} (a part is missing, repeated or of another n)"
        )));
    }
    if twos != e2 {
        return Err(invalid(format!(
            "the parts hold 2^{twos}, {n}! holds 2^{e2} (a part is missing, repeated or of another n)"
        )));
    }
    // log2 of the odd product lies in [sum (bits - 1), sum bits).
    let expect = log2_factorial(n) - e2 as f64 - e5 as f64 * 5f64.log2();
    if expect < bits_lo - 0.5 || expect > bits_hi + 0.5 {
        return Err(invalid(format!(
            "the parts' odd factors have {bits_lo:.0}..{bits_hi:.0} bits, {n}! needs {expect:.1}"
        )));
    }
    let zeros = usize::try_from(e5).map_err(|_| invalid("too large".into()))?;
    let bits = log2_factorial(n).ceil() as u64 + 1;
    let conv = decimal::cost(bits);
    let meter = Meter::new(ctl, conv / (1.0 - COMBINE_SHARE));
    let units = conv * COMBINE_SHARE / (1.0 - COMBINE_SHARE);
    let mut odds: Vec<Natural> = parts.into_iter().map(|p| p.odd).collect();
    // The shift goes on the smallest part, where it is cheapest.
    if let Some(small) = odds.iter_mut().min_by_key(|x| x.significant_bits()) {
        *small <<= e2 - e5;
    }
    let levels = (odds.len().max(2) as f64).log2().ceil();
    let m = tree(
        odds,
        meter.threads(),
        &meter,
        units / (levels * bits_hi.max(1.0)),
        true,
    )?;
    let s = decimal::to_decimal(m, zeros, &meter)?;
    meter.finish();
    Ok(s)
}

/// Operands below this many bits are multiplied on one thread at a time.
const PAR_TREE_BITS: u64 = 1 << 20;

/// Subtrees whose halves exceed this many bits run one after the other: two
/// such products at once would double the multiplication scratch (the peak).
const PAR_TREE_MAX_BITS: u64 = product::LEAN_BITS;

/// The product of `xs` (1 for none) up a balanced tree; `per_bit` units per result bit.
///
/// `root`: this is the last product (see [`TOP_LEAN_BITS`]).
fn tree(
    mut xs: Vec<Natural>,
    threads: usize,
    meter: &Meter,
    per_bit: f64,
    root: bool,
) -> Result<Natural, ComputeError> {
    match xs.len() {
        0 => return Ok(Natural::from(1u32)),
        1 => return Ok(xs.pop().unwrap_or_default()),
        _ => {}
    }
    meter.check()?;
    let b = xs.split_off(xs.len() / 2);
    let a = xs;
    let big = a
        .iter()
        .chain(&b)
        .all(|x| x.significant_bits() >= PAR_TREE_BITS);
    let half_bits = |v: &[Natural]| v.iter().map(SignificantBits::significant_bits).sum::<u64>();
    let small = half_bits(&a).max(half_bits(&b)) <= PAR_TREE_MAX_BITS;
    let (x, y) = if threads >= 2 && big && small && a.len() + b.len() > 2 {
        let half = threads / 2;
        std::thread::scope(|s| {
            let h = s.spawn(move || tree(a, half, meter, per_bit, false));
            let y = tree(b, threads - half, meter, per_bit, false);
            let x = h.join().unwrap_or_else(|_| {
                Err(ComputeError::Resources("a combine thread panicked".into()))
            });
            Ok::<_, ComputeError>((x?, y?))
        })?
    } else {
        (
            tree(a, threads, meter, per_bit, false)?,
            tree(b, threads, meter, per_bit, false)?,
        )
    };
    // The root's scratch is the multiplication's peak: one Karatsuba level more.
    let lean = if root {
        TOP_LEAN_BITS
    } else {
        product::LEAN_BITS
    };
    let m = product::lean_mul_below(x, y, lean, meter)?;
    meter.advance(per_bit * m.significant_bits() as f64)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factorial::factorial_decimal;
    use sha2::{Digest, Sha256};

    fn sha(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    fn parts(n: u64, k: usize, ctl: &Control) -> Vec<Partial> {
        split_ranges(n, k)
            .into_iter()
            .map(|(lo, hi)| partial(lo, hi, ctl).expect("partial"))
            .collect()
    }

    #[test]
    fn log2_fixed_point_is_close() {
        for x in [1u64, 2, 3, 10, 1000, 12_345_678, u64::MAX] {
            let got = log2_q32(x) as f64 / 4_294_967_296.0;
            assert!((got - (x as f64).log2()).abs() < 1e-8, "{x}: {got}");
        }
        for x in [32u64, 1000, 10_000_000] {
            let got = log2_factorial_q32(x) as f64 / 4_294_967_296.0;
            let want = log2_factorial(x);
            assert!(
                (got - want).abs() < 1e-3 * want.max(1.0),
                "{x}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn ranges_cover_and_balance() {
        assert!(split_ranges(0, 4).is_empty());
        assert!(split_ranges(1, 4).is_empty());
        assert_eq!(split_ranges(2, 4), vec![(2, 2)]);
        assert_eq!(split_ranges(5, 0), vec![(2, 5)]);
        assert_eq!(split_ranges(4, 8).len(), 3);
        assert_eq!(split_ranges(u64::MAX, usize::MAX).len(), MAX_PARTS);
        for (n, k) in [
            (10u64, 3usize),
            (1000, 8),
            (100_003, 7),
            (10_000_000, 8),
            (1 << 40, 64),
        ] {
            let r = split_ranges(n, k);
            assert_eq!(r.len(), k.min(n as usize - 1), "n={n} k={k}");
            assert_eq!(r[0].0, 2);
            assert_eq!(r[r.len() - 1].1, n);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
            assert!(r.iter().all(|&(lo, hi)| lo <= hi));
            if n >= 1000 {
                // Each range's weight within 1% of log2(n!)/k; low ranges wider.
                let total = log2_factorial(n);
                for &(lo, hi) in &r {
                    let w = log2_factorial(hi) - log2_factorial(lo - 1);
                    assert!(
                        (w * k as f64 / total - 1.0).abs() < 0.01,
                        "{n} {k} {lo}..{hi}"
                    );
                }
                assert!(r[0].1 - r[0].0 > r[k - 1].1 - r[k - 1].0);
            }
        }
        // The plan is a pure function of (n, k).
        assert_eq!(
            split_ranges(10_000_000, 8)[..3],
            [
                (2, 1_434_230),
                (1_434_231, 2_734_531),
                (2_734_532, 3_992_477)
            ]
        );
    }

    #[test]
    fn partial_is_the_stripped_product() {
        let ctl = Control::silent(1);
        let p = partial(3, 12, &ctl).expect("partial");
        // 3*4*...*12 = 239500800 = 2^9 * 5^2 * 3^5 * 7 * 11
        assert_eq!((p.twos, p.fives), (9, 2));
        assert_eq!(p.odd, Natural::from(3u32 * 3 * 3 * 3 * 3 * 7 * 11));
        assert_eq!(partial(1, 1, &ctl).expect("1").odd, Natural::from(1u32));
        assert!(matches!(
            partial(0, 3, &ctl),
            Err(ComputeError::InvalidInput(_))
        ));
        assert!(matches!(
            partial(5, 4, &ctl),
            Err(ComputeError::InvalidInput(_))
        ));
        // Two threads give the same value as one.
        let two = Control::silent(2);
        assert_eq!(
            partial(50_000, 200_000, &ctl).expect("1 thread"),
            partial(50_000, 200_000, &two).expect("2 threads")
        );
    }

    #[test]
    fn bytes_round_trip_and_reject_garbage() {
        let ctl = Control::silent(1);
        let p = partial(1000, 5000, &ctl).expect("partial");
        let b = p.to_bytes();
        assert_eq!(b.len(), HEADER + 8 * p.odd.limb_count() as usize);
        assert_eq!(Partial::from_bytes(&b).expect("round trip"), p);
        let one = Partial {
            odd: Natural::from(1u32),
            twos: 0,
            fives: 0,
        };
        assert_eq!(Partial::from_bytes(&one.to_bytes()).expect("one"), one);
        let err = |bytes: &[u8]| match Partial::from_bytes(bytes) {
            Err(ComputeError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        assert!(err(&[]).contains("header"));
        assert!(err(b"hello world, this is not a partial at all").contains("magic"));
        let mut v2 = b.clone();
        v2[3] = 2;
        assert!(err(&v2).contains("version"));
        assert!(err(&b[..b.len() - 1]).contains("truncated"));
        assert!(err(&b[..b.len() - 8]).contains("truncated"));
        let mut even = b.clone();
        even[HEADER] &= !1;
        assert!(err(&even).contains("even"));
        let mut top = b.clone();
        let len = top.len();
        top[len - 8..].fill(0);
        top[12 + 8..20 + 8].copy_from_slice(&[0; 8]);
        assert!(!err(&top).is_empty());
        let zero = Partial {
            odd: Natural::from(0u32),
            twos: 0,
            fives: 0,
        };
        assert!(err(&zero.to_bytes()).contains("even"));
        let fifteen = Partial {
            odd: Natural::from(15u32),
            twos: 0,
            fives: 0,
        };
        assert!(err(&fifteen.to_bytes()).contains("multiple of 5"));
        // Every prefix fails cleanly, none panics.
        for cut in 0..HEADER + 16 {
            assert!(Partial::from_bytes(&b[..cut]).is_err());
        }
    }

    #[test]
    fn combine_equals_the_single_path() {
        let ctl = Control::silent(2);
        for n in [0u64, 1, 2, 10, 1000, 100_003] {
            let want = sha(&factorial_decimal(n, &ctl).expect("single"));
            for k in [1usize, 2, 3, 8] {
                let got = combine_decimal(n, parts(n, k, &ctl), &ctl).expect("combine");
                assert_eq!(sha(&got), want, "n={n} k={k}");
            }
        }
        // Through the bytes, parts in another order, one thread.
        let one = Control::silent(1);
        let mut ps: Vec<Partial> = parts(100_003, 8, &one)
            .iter()
            .map(|p| Partial::from_bytes(&p.to_bytes()).expect("bytes"))
            .collect();
        ps.reverse();
        let want = sha(&factorial_decimal(100_003, &one).expect("single"));
        assert_eq!(
            sha(&combine_decimal(100_003, ps, &one).expect("combine")),
            want
        );
    }

    #[test]
    fn combine_rejects_parts_of_something_else() {
        let ctl = Control::silent(1);
        let ps = parts(1000, 4, &ctl);
        let msg = |r: Result<String, ComputeError>| match r {
            Err(ComputeError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        // Missing part, repeated part, wrong n.
        assert!(msg(combine_decimal(1000, ps[..3].to_vec(), &ctl)).contains("5^"));
        let mut rep = ps.clone();
        rep.push(ps[1].clone());
        assert!(msg(combine_decimal(1000, rep, &ctl)).contains("5^"));
        assert!(msg(combine_decimal(1002, ps.clone(), &ctl)).contains("of another n"));
        // 1001 has the exponents of 1000: the size check catches it.
        assert!(msg(combine_decimal(1001, ps.clone(), &ctl)).contains("bits"));
        // Right exponents, wrong odd part.
        let mut odd = ps.clone();
        odd[0].odd = Natural::from(3u32);
        assert!(msg(combine_decimal(1000, odd, &ctl)).contains("bits"));
        let mut twos = ps.clone();
        twos[0].twos += 1;
        assert!(msg(combine_decimal(1000, twos, &ctl)).contains("2^"));
        let mut even = ps;
        even[2].odd = Natural::from(6u32);
        assert!(msg(combine_decimal(1000, even, &ctl)).contains("part 2"));
        assert!(msg(combine_decimal(5, Vec::new(), &ctl)).contains("5^"));
        assert_eq!(combine_decimal(1, Vec::new(), &ctl), Ok("1".to_string()));
    }

    #[test]
    fn cancel_stops_partial_and_combine() {
        use std::sync::atomic::AtomicBool;
        let flag = AtomicBool::new(true);
        let ctl = Control::new(&flag, &|_| {}, 1);
        assert_eq!(partial(2, 1_000_000, &ctl), Err(ComputeError::Cancelled));
        let ps = parts(1000, 2, &Control::silent(1));
        assert_eq!(
            combine_decimal(1000, ps, &ctl),
            Err(ComputeError::Cancelled)
        );
    }
}
