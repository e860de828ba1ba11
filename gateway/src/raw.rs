//! `Accept: application/octet-stream` for results: the magnitude as little-endian bytes.
//!
//! Results are stored as decimal text, so the raw form is computed on request
//! (malachite's divide-and-conquer conversion, on a blocking thread). The sign of a
//! negative sum is in the `X-Jetmill-Sign` header.

use malachite_base::num::conversion::traits::FromStringBase;
use malachite_nz::natural::Natural;

/// Largest decimal text converted on request (64 MiB, about 200 million bits).
pub const MAX_DECIMAL_BYTES: u64 = 64 * 1024 * 1024;

/// Why a result could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The stored text is not a decimal integer.
    #[error("stored result is not a decimal integer")]
    NotDecimal,
}

/// `text` (optionally `-`-signed decimal) to (negative, little-endian magnitude bytes).
///
/// Zero is one `0x00` byte; otherwise there are no trailing zero bytes.
pub fn decimal_to_le_bytes(text: &str) -> Result<(bool, Vec<u8>), RawError> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RawError::NotDecimal);
    }
    let n = Natural::from_string_base(10, digits).ok_or(RawError::NotDecimal)?;
    let mut bytes: Vec<u8> = n
        .to_limbs_asc()
        .iter()
        .flat_map(|l| l.to_le_bytes())
        .collect();
    while bytes.len() > 1 && bytes.last() == Some(&0) {
        bytes.pop();
    }
    if bytes.is_empty() {
        bytes.push(0);
    }
    Ok((negative && bytes != [0], bytes))
}

#[cfg(test)]
mod tests {
    use super::decimal_to_le_bytes;

    #[test]
    fn small_values_are_little_endian_without_padding() {
        assert_eq!(decimal_to_le_bytes("0").ok(), Some((false, vec![0])));
        assert_eq!(decimal_to_le_bytes("255").ok(), Some((false, vec![255])));
        assert_eq!(decimal_to_le_bytes("256").ok(), Some((false, vec![0, 1])));
        assert_eq!(decimal_to_le_bytes("-0").ok(), Some((false, vec![0])));
        assert_eq!(
            decimal_to_le_bytes("-18446744073709551616").ok(),
            Some((true, vec![0, 0, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert!(decimal_to_le_bytes("12a").is_err());
        assert!(decimal_to_le_bytes("").is_err());
    }
}
