//! Sum of signed decimal integers of any size.

use crate::progress::Meter;
use crate::{ComputeError, Control};
use malachite_nz::integer::Integer;
use malachite_nz::natural::Natural;
use std::str::FromStr;

/// Parse one term: an optional `+` or `-`, then one or more ASCII digits.
pub fn parse_term(t: &str) -> Option<Integer> {
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v = Integer::from(Natural::from_str(digits).ok()?);
    Some(if neg { -v } else { v })
}

/// The exact sum of `terms` (each an optionally signed decimal integer) as decimal text.
pub fn sum_decimal(terms: &[String], ctl: &Control) -> Result<String, ComputeError> {
    let total: usize = terms.iter().map(|t| t.len()).sum();
    let meter = Meter::new(ctl, total as f64 + 1.0);
    let mut acc = Integer::from(0);
    for (i, t) in terms.iter().enumerate() {
        let v = parse_term(t).ok_or_else(|| {
            let shown: String = t.chars().take(40).collect();
            ComputeError::InvalidInput(format!("term {i} is not a decimal integer: {shown:?}"))
        })?;
        acc += v;
        meter.advance(t.len() as f64)?;
    }
    let s = acc.to_string();
    meter.finish();
    Ok(s)
}
