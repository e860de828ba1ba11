//! Durations as people write them, one grammar for the CLI's flags and the API's
//! `?wait=`: a bare number of seconds (`30`, `2.5`), or one to five `<number><unit>`
//! parts with no spaces (`500ms`, `10s`, `2m`, `1h30m`, `1d`), units `ms`, `s`, `m`,
//! `h`, `d`. [`PATTERN`] is the same grammar as a regular expression (for OpenAPI).

use std::time::Duration;

/// The grammar of [`parse_duration`] as a regular expression.
pub const PATTERN: &str =
    r"^[0-9]{1,9}(\.[0-9]{1,9})?$|^([0-9]{1,9}(\.[0-9]{1,9})?(ms|s|m|h|d)){1,5}$";

/// Longer durations are cut to this (ten years: beyond any wait or timeout, and short
/// of what `Duration` arithmetic elsewhere could overflow on). Every text that follows
/// the grammar is accepted, so the OpenAPI pattern is exact.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A duration that does not follow the grammar, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason}; use e.g. 500ms, 10s, 2m, 1h30m or a number of seconds"
)]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parse `s` (see the module docs).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: s.to_string(),
        reason,
    };
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut secs = 0.0_f64;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(fail("a number must come first in each part"));
        }
        let (number, after) = rest.split_at(digits);
        let int_part = number.split('.').next().unwrap_or("");
        if int_part.is_empty()
            || int_part.len() > 9
            || number
                .split('.')
                .nth(1)
                .is_some_and(|f| f.is_empty() || f.len() > 9)
        {
            return Err(fail(
                "each number has 1-9 digits, and a fraction after a dot",
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| fail("each number has 1-9 digits, and a fraction after a dot"))?;
        let (scale, after) = if let Some(a) = after.strip_prefix("ms") {
            (0.001, a)
        } else if let Some(a) = after.strip_prefix('s') {
            (1.0, a)
        } else if let Some(a) = after.strip_prefix('m') {
            (60.0, a)
        } else if let Some(a) = after.strip_prefix('h') {
            (3600.0, a)
        } else if let Some(a) = after.strip_prefix('d') {
            (86_400.0, a)
        } else if after.is_empty() && parts == 0 {
            (1.0, after)
        } else {
            return Err(fail("units are ms, s, m, h and d"));
        };
        secs += value * scale;
        parts += 1;
        if parts > 5 {
            return Err(fail("at most 5 parts"));
        }
        rest = after;
    }
    if !secs.is_finite() || secs >= MAX.as_secs_f64() {
        return Ok(MAX);
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_people_write() {
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("30"), Duration::from_secs(30));
        assert_eq!(ok("2.5"), Duration::from_millis(2500));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(ok("1m30s500ms"), Duration::from_millis(90_500));
        assert_eq!(ok(" 5s "), Duration::from_secs(5));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("999999999d999999999d"), MAX, "cut, not refused");
    }

    #[test]
    fn bad_ones_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("soon", "number must come first"),
            ("-1s", "number must come first"),
            ("5 parsecs", "units are"),
            ("10x", "units are"),
            ("1h30", "units are"),
            ("1.s", "1-9 digits"),
            ("1234567890s", "1-9 digits"),
            ("1s1s1s1s1s1s", "at most 5"),
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.to_string().contains(why), "{s}: {e}");
            assert!(e.to_string().contains("500ms, 10s"), "{s}: {e}");
        }
    }

    #[test]
    fn the_pattern_accepts_exactly_what_the_parser_does() {
        let re = regex::Regex::new(PATTERN).expect("PATTERN compiles");
        for s in [
            "30",
            "2.5",
            "0",
            "250ms",
            "10s",
            "2m",
            "1h30m",
            "1d",
            "1m30s500ms",
            "1.5h",
            "",
            "soon",
            "-1s",
            "5 parsecs",
            "10x",
            "1h30",
            "1.s",
            ".5",
            "1234567890s",
            "1s1s1s1s1s1s",
            "5 s",
            "1h 30m",
        ] {
            // Whitespace around the text is trimmed by the parser only.
            assert_eq!(
                re.is_match(s),
                parse_duration(s).is_ok(),
                "{s:?}: pattern and parser disagree"
            );
        }
    }
}
