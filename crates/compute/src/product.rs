//! Balanced product trees of machine words, with cancellation checks.
//!
//! Small factors are first packed into 64-bit words (multiplying neighbours
//! while the product fits), then the words are multiplied pairwise up a
//! balanced tree so both operands of every multiplication have similar size,
//! which is what makes FFT-class multiplication pay off. With a thread budget
//! of two or more, the two halves of a large tree are built concurrently.

use crate::progress::Meter;
use crate::ComputeError;
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
