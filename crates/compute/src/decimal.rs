//! Parallel divide-and-conquer conversion of a `Natural` to decimal text.
//!
//! The number is split as `x = q * 10^k + r` with `k` about half its digit
//! count, and both halves are converted independently into disjoint slices of
//! one output buffer (the low half zero-padded to exactly `k` digits). The
//! split sizes form a chain `k0 = ceil(w/2)`, `k(i+1) = ceil(k(i)/2)`, so one
//! power per level serves every node of that level; the powers are computed
//! once, bottom-up by squaring, and shared by all threads.
//!
//! Because `10^k = 5^k * 2^k`, a split divides `x >> k` by `5^k` (30% fewer
//! bits than `10^k`) and takes the low `k` bits of `x` verbatim. At the top
//! levels the two halves run on separate threads (up to the thread budget);
//! below [`LEAF_DIGITS`] malachite's own (subquadratic) `to_string` finishes.
//! Memory: nodes above 2^23 digits are split (one at a time) before
//! the output buffer exists, so the text is never live during the largest
//! divisions, and dividends of 2^27 bits or more are divided in two
//! quotient halves (malachite's division scratch is ~9x the dividend).
//! Every node checks the cancel flag; splits of large numbers run through
//! [`Meter::heavy`] so a cancel never waits for a multi-second division.

use crate::progress::Meter;
use crate::ComputeError;
use malachite_base::num::arithmetic::traits::{DivExact, DivRem, ModPowerOf2, Pow, Square};
use malachite_base::num::logic::traits::SignificantBits;
use malachite_nz::natural::Natural;
use std::sync::Arc;

/// Nodes of at most this many digits are always converted by malachite directly.
pub const LEAF_DIGITS: usize = 1 << 15;

/// Leaves are never larger than this (bounds the work a cancel abandons, ~0.4 s).
const MAX_LEAF_DIGITS: usize = 1 << 22;

/// The leaf size for a number of `w` digits converted on `threads` threads.
///
/// malachite's own `to_string` divides by shared Barrett-preinverted powers,
/// which beats a split through `div_rem`, so this module only splits as far as
/// the thread budget (about two leaves per thread) and the cancel granularity
/// ([`MAX_LEAF_DIGITS`]) need, and hands the rest to malachite.
fn leaf_digits(w: usize, threads: usize) -> usize {
    let target = if threads > 1 { w / (2 * threads) } else { w };
    target.clamp(LEAF_DIGITS, MAX_LEAF_DIGITS)
}

/// Nodes below this many digits are not split across threads.
const PAR_DIGITS: usize = 1 << 16;

/// Nodes above this many digits are split one at a time even with a thread
/// budget: a malachite division of that size needs ~8x its operand size in
/// scratch, and two at once would double the conversion's peak memory.
const PAR_MAX_DIGITS: usize = 1 << 24;

/// Dividends of at least this many bits are divided in two quotient halves.
const CHUNK_DIV_BITS: u64 = 1 << 27;

/// Relative cost of a leaf digit against one digit passing through one split.
const LEAF_COST: f64 = 3.0;

/// One level of the split chain: `x = q * 10^k + r`.
struct Level {
    k: u64,
    five_k: Arc<Natural>,
}

/// An upper bound on the number of decimal digits of a number of `bits` bits.
pub fn digits_upper_bound(bits: u64) -> usize {
    // Two extra digits absorb the float rounding of the bound at 10^9 bits.
    (bits as f64 * std::f64::consts::LOG10_2).floor() as usize + 2
}

/// Upper-ish estimate of the peak memory of a process converting a `bits`-bit
/// number (input, shared powers, division scratch, output text, allocator slack).
///
/// Fitted to VmHWM of `factorial_decimal` children under glibc malloc from
/// 10^6 to 10^7 (docs/benchmarks.md): 6 MB, up to 30 MB of fixed scratch
/// (reached at 5M digits), 4 B per digit plus 2 B per digit for the first 20M.
pub fn peak_bytes(bits: u64) -> u64 {
    let d = digits_upper_bound(bits) as f64;
    (6e6 + 30e6 * (d / 5e6).min(1.0) + 4.0 * d + 2.0 * d.min(2e7)) as u64
}

/// Estimated work units (see [`Meter`]) for converting a number of `bits` bits.
pub fn cost(bits: u64) -> f64 {
    let w = digits_upper_bound(bits) as f64;
    let levels = (w / LEAF_DIGITS as f64).max(1.0).log2().ceil();
    w * (levels + LEAF_COST)
}

/// The decimal text of `x` followed by `zeros` zero digits (`x * 10^zeros`).
///
/// Uses up to `meter.threads()` threads and counts [`cost`]`(bits of x)` units.
pub fn to_decimal(x: Natural, zeros: usize, meter: &Meter) -> Result<String, ComputeError> {
    let bits = x.significant_bits();
    let w = digits_upper_bound(bits);
    let leaf = leaf_digits(w, meter.threads());
    let mut levels = powers(w, leaf, meter)?;
    if levels.is_empty() {
        let mut s = String::new();
        s.try_reserve_exact(w + zeros).map_err(|e| {
            ComputeError::Resources(format!("cannot allocate the decimal text: {e}"))
        })?;
        let nonzero = x != 0u32;
        let bits = x.significant_bits();
        s.push_str(&meter.maybe_heavy(bits.saturating_mul(8), move || x.to_string())?);
        if nonzero {
            s.extend(std::iter::repeat_n('0', zeros));
        }
        meter.advance(leaf_cost(w))?;
        return Ok(s);
    }
    // Split the top nodes before the output buffer exists: the biggest
    // divisions are also the points of highest memory use, and the text
    // (2.4x the binary) should not be live while they run.
    let top = levels.remove(0);
    let (q, r) = split(x, &top, meter)?;
    drop(top);
    meter.advance(w as f64)?;
    let k = usize::try_from(levels_k(w)).map_err(|_| internal("split size"))?;
    let mut pieces = presplit(q, w - k, &levels, 0, meter)?;
    pieces.extend(presplit(r, k, &levels, 0, meter)?);
    let mut out = Vec::new();
    out.try_reserve_exact(w + zeros)
        .map_err(|e| ComputeError::Resources(format!("cannot allocate the decimal text: {e}")))?;
    out.resize(w, b'0');
    convert_pieces(pieces, &mut out, &levels, leaf, meter)?;
    drop(levels);
    let lead = out.iter().take_while(|&&c| c == b'0').count().min(w - 1);
    out.drain(..lead);
    if out != b"0" {
        out.resize(out.len() + zeros, b'0');
    }
    String::from_utf8(out).map_err(|_| internal("non-ASCII digit"))
}

/// The top split size for a node of `w` digits.
fn levels_k(w: usize) -> u64 {
    w.div_ceil(2) as u64
}

fn internal(what: &str) -> ComputeError {
    ComputeError::Resources(format!("internal error in decimal conversion: {what}"))
}

/// Run `a` and `b`, on two threads if the budget and the size allow it.
fn both<A, B>(threads: usize, w: usize, meter: &Meter, a: A, b: B) -> Result<(), ComputeError>
where
    A: FnOnce(usize) -> Result<(), ComputeError> + Send,
    B: FnOnce(usize) -> Result<(), ComputeError>,
{
    if threads < 2 || !(PAR_DIGITS..=PAR_MAX_DIGITS).contains(&w) {
        a(threads)?;
        return b(threads);
    }
    let half = threads / 2;
    std::thread::scope(|s| {
        let h = s.spawn(move || a(half));
        let rb = b(threads - half);
        let ra = h
            .join()
            .unwrap_or_else(|_| Err(internal("worker thread panicked")));
        meter.check()?;
        ra.and(rb)
    })
}

/// The chain of split powers `5^k(i)` for a number of at most `w` digits.
fn powers(w: usize, leaf: usize, meter: &Meter) -> Result<Vec<Level>, ComputeError> {
    let mut ks = Vec::new();
    let mut k = levels_k(w);
    // A node at level i has at most 2*k(i) digits; leaves need no level.
    while 2 * k > leaf as u64 {
        ks.push(k);
        k = k.div_ceil(2);
    }
    let mut levels: Vec<Level> = Vec::with_capacity(ks.len());
    let mut prev: Option<(u64, Arc<Natural>)> = None;
    for &k in ks.iter().rev() {
        meter.check()?;
        let p = match prev {
            Some((pk, pp)) if 2 * pk >= k && 2 * pk - k <= 1 => {
                let odd = 2 * pk - k == 1;
                let bits = pp.significant_bits();
                meter.maybe_heavy(bits * 2, move || {
                    let sq = (&*pp).square();
                    if odd {
                        sq.div_exact(Natural::from(5u32))
                    } else {
                        sq
                    }
                })?
            }
            _ => Natural::from(5u32).pow(k),
        };
        let p = Arc::new(p);
        prev = Some((k, Arc::clone(&p)));
        levels.push(Level { k, five_k: p });
    }
    levels.reverse();
    Ok(levels)
}

/// `x = q * 10^k + r` with `r < 10^k`.
fn split(x: Natural, level: &Level, meter: &Meter) -> Result<(Natural, Natural), ComputeError> {
    let k = level.k;
    let p = Arc::clone(&level.five_k);
    let bits = x.significant_bits();
    meter.maybe_heavy(bits, move || {
        let low = (&x).mod_power_of_2(k);
        let y = x >> k;
        let (q, r) = if y.significant_bits() >= CHUNK_DIV_BITS {
            // Two quotient halves: malachite's division scratch grows with
            // the dividend (~9x), so two 1.4:1 divisions peak ~1/3 lower.
            let t = (y.significant_bits() - p.significant_bits()) / 2;
            let y0 = (&y).mod_power_of_2(t);
            let (q1, r1) = (y >> t).div_rem(&*p);
            let (q0, r) = ((r1 << t) | y0).div_rem(&*p);
            ((q1 << t) + q0, r)
        } else {
            y.div_rem(&*p)
        };
        (q, (r << k) | low)
    })
}

/// Write `x` (which must be below `10^out.len()`) zero-padded into `out`.
fn convert(
    x: Natural,
    out: &mut [u8],
    levels: &[Level],
    leaf_max: usize,
    threads: usize,
    meter: &Meter,
) -> Result<(), ComputeError> {
    let w = out.len();
    let Some((level, rest)) = levels.split_first() else {
        return leaf(x, out, meter);
    };
    if w <= leaf_max {
        return leaf(x, out, meter);
    }
    let k = usize::try_from(level.k).map_err(|_| internal("split size"))?;
    if w <= k {
        return convert(x, out, rest, leaf_max, threads, meter);
    }
    let (q, r) = split(x, level, meter)?;
    meter.advance(w as f64)?;
    let (hi, lo) = out.split_at_mut(w - k);
    both(
        threads,
        w,
        meter,
        |t| convert(q, hi, rest, leaf_max, t, meter),
        |t| convert(r, lo, rest, leaf_max, t, meter),
    )
}

/// Nodes above this many digits are split before the output buffer is allocated.
const PRESPLIT_DIGITS: usize = 1 << 23;

/// A node split off before the output exists: value, width, first level to use.
struct Piece {
    x: Natural,
    w: usize,
    depth: usize,
}

/// Split `x` (a node of `w` digits at `levels[depth]`) down to pieces of at
/// most [`PRESPLIT_DIGITS`], most significant first.
fn presplit(
    x: Natural,
    w: usize,
    levels: &[Level],
    depth: usize,
    meter: &Meter,
) -> Result<Vec<Piece>, ComputeError> {
    let Some(level) = levels.get(depth) else {
        return Ok(vec![Piece { x, w, depth }]);
    };
    if w <= PRESPLIT_DIGITS {
        return Ok(vec![Piece { x, w, depth }]);
    }
    let k = usize::try_from(level.k).map_err(|_| internal("split size"))?;
    if w <= k {
        return presplit(x, w, levels, depth + 1, meter);
    }
    let (q, r) = split(x, level, meter)?;
    meter.advance(w as f64)?;
    // One split at a time: two at once would double the scratch (see
    // PAR_MAX_DIGITS); the threads share the pieces' conversion instead.
    let mut hi = presplit(q, w - k, levels, depth + 1, meter)?;
    hi.append(&mut presplit(r, k, levels, depth + 1, meter)?);
    Ok(hi)
}

/// Convert `pieces` (most significant first) into consecutive slices of `out`,
/// on up to `meter.threads()` threads taking pieces from a shared queue.
fn convert_pieces(
    pieces: Vec<Piece>,
    out: &mut [u8],
    levels: &[Level],
    leaf_max: usize,
    meter: &Meter,
) -> Result<(), ComputeError> {
    let mut jobs = Vec::with_capacity(pieces.len());
    let mut rest = out;
    for p in pieces {
        if p.w > rest.len() {
            return Err(internal("pieces wider than the number"));
        }
        let (slot, tail) = rest.split_at_mut(p.w);
        rest = tail;
        jobs.push((p, slot));
    }
    if !rest.is_empty() {
        return Err(internal("pieces narrower than the number"));
    }
    let threads = meter.threads();
    let workers = threads.min(jobs.len()).max(1);
    let t = (threads / workers).max(1);
    if workers == 1 {
        for (p, slot) in jobs {
            convert(p.x, slot, &levels[p.depth..], leaf_max, t, meter)?;
        }
        return Ok(());
    }
    // Most significant first (popped from the back).
    jobs.reverse();
    let queue = std::sync::Mutex::new(jobs);
    let work = || -> Result<(), ComputeError> {
        loop {
            let job = queue
                .lock()
                .map_err(|_| internal("piece queue poisoned"))?
                .pop();
            let Some((p, slot)) = job else { return Ok(()) };
            convert(p.x, slot, &levels[p.depth..], leaf_max, t, meter)?;
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut res = work();
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(internal("worker thread panicked")));
            res = res.and(r);
        }
        res
    })
}

/// Convert a small node with malachite and right-align it in `out`.
fn leaf(x: Natural, out: &mut [u8], meter: &Meter) -> Result<(), ComputeError> {
    meter.check()?;
    let w = out.len();
    if x == 0u32 {
        out.fill(b'0');
    } else {
        let bits = x.significant_bits();
        // Leaves can be large (see LEAF_DIGITS): keep them cancellable.
        let s = meter.maybe_heavy(bits.saturating_mul(8), move || x.to_string())?;
        let pad = w
            .checked_sub(s.len())
            .ok_or_else(|| internal("node wider than its slot"))?;
        out[..pad].fill(b'0');
        out[pad..].copy_from_slice(s.as_bytes());
    }
    meter.advance(leaf_cost(w))
}

/// Work units of a leaf of `w` digits: malachite's own levels plus the base case.
fn leaf_cost(w: usize) -> f64 {
    let inner = (w as f64 / LEAF_DIGITS as f64).max(1.0).log2().ceil();
    w as f64 * (inner + LEAF_COST)
}
