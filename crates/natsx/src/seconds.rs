//! A clap parser for "seconds" flags: `Duration::from_secs_f64` panics on infinite,
//! NaN, negative or huge values, so such input must be refused at the flag.

/// Largest accepted value: ten years.
pub const MAX_SECS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// Parse a number of seconds (`30`, `0.5`), from 0 to [`MAX_SECS`].
pub fn parse_secs(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=MAX_SECS).contains(v))
        .ok_or_else(|| {
            format!("{s:?} is not a number of seconds from 0 to {MAX_SECS} (e.g. 30 or 0.5)")
        })
}

#[cfg(test)]
mod tests {
    use super::parse_secs;

    #[test]
    fn accepts_plain_seconds_and_refuses_what_would_panic() {
        assert_eq!(parse_secs("30"), Ok(30.0));
        assert_eq!(parse_secs("0.5"), Ok(0.5));
        assert_eq!(parse_secs("0"), Ok(0.0));
        for bad in ["inf", "NaN", "-1", "1e300", "", "30s"] {
            let err = parse_secs(bad).expect_err(bad);
            assert!(err.contains("number of seconds"), "{bad}: {err}");
        }
    }
}
