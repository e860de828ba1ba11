//! The submit body (`POST /v1/jobs`, `jetmill jobs submit`) and its validation.
//!
//! Validation turns untrusted JSON into a [`JobSpec`] or a [`ValidationError`]
//! that names the offending field, so the gateway can answer a precise 4xx and
//! nothing invalid is ever published.

use crate::{Chaos, JobKind, JobSpec, Priority};
use serde_json::{Map, Value};

/// Size limits that keep one request from occupying the cluster for days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest n accepted for `factorial`.
    pub max_factorial_n: u64,
    /// Largest n accepted for exact `fibonacci` (modular Fibonacci takes any u64).
    pub max_fibonacci_n: u64,
    /// Most terms accepted in one `sum`.
    pub max_sum_terms: usize,
    /// Most digits accepted in one `sum` term.
    pub max_term_digits: usize,
    /// Most attempts a job may ask for.
    pub max_attempts: u32,
    /// Longest per-attempt timeout a job may ask for, in seconds.
    pub max_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_factorial_n: 100_000_000,
            max_fibonacci_n: 1_000_000_000,
            max_sum_terms: 100_000,
            max_term_digits: 100_000,
            max_attempts: 20,
            max_timeout_secs: 24 * 3600,
        }
    }
}

/// A request field that is wrong, and why, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The JSON path of the field, e.g. `input` or `input[3]` or `params.modulus`.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

/// A validated submit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub spec: JobSpec,
    pub priority: Priority,
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub chaos: Option<Chaos>,
    /// When a delayed job starts (Unix ms), from `run_at` or `delay`; `None` runs now.
    pub run_at_ms: Option<i64>,
    /// How long the finished job is kept, seconds (`retention`); `None`: the default.
    pub retention_secs: Option<u64>,
}

const FIELDS: &[&str] = &[
    "kind",
    "input",
    "params",
    "priority",
    "chaos",
    "max_attempts",
    "timeout_secs",
    "run_at",
    "delay",
    "retention",
];

impl JobRequest {
    /// Validate a parsed JSON body against `limits` (a `delay` counts from now).
    pub fn from_json(body: &Value, limits: &Limits) -> Result<JobRequest, ValidationError> {
        JobRequest::from_json_at(body, limits, crate::now_ms())
    }

    /// [`JobRequest::from_json`] at the time `now_ms`.
    pub fn from_json_at(
        body: &Value,
        limits: &Limits,
        now_ms: i64,
    ) -> Result<JobRequest, ValidationError> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("body", "must be a JSON object"))?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                unknown.as_str(),
                format!("unknown field; accepted fields are {}", FIELDS.join(", ")),
            ));
        }
        let kind = parse_kind(obj)?;
        let input = obj
            .get("input")
            .ok_or_else(|| invalid("input", "is required"))?;
        let params = match obj.get("params") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(invalid("params", "must be an object")),
        };
        let spec = match kind {
            JobKind::Factorial => {
                if params.is_some_and(|p| p.contains_key("split")) {
                    return Err(invalid(
                        "params.split",
                        "a factorial split across the workers is a workflow: POST /v1/workflows with {\"factorial\": {\"input\": n, \"split\": k}}",
                    ));
                }
                no_params(params)?;
                let n = parse_n(input, "input", limits.max_factorial_n)?;
                JobSpec::Factorial { n }
            }
            JobKind::Fibonacci => {
                let modulus = parse_modulus(params)?;
                let max = if modulus.is_some() {
                    u64::MAX
                } else {
                    limits.max_fibonacci_n
                };
                let n = parse_n(input, "input", max)?;
                JobSpec::Fibonacci { n, modulus }
            }
            JobKind::Sum => {
                no_params(params)?;
                JobSpec::Sum {
                    terms: parse_terms(input, limits)?,
                }
            }
        };
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => Priority::default(),
            Some(Value::String(s)) => match s.as_str() {
                "high" => Priority::High,
                "normal" => Priority::Normal,
                "low" => Priority::Low,
                _ => return Err(invalid("priority", "must be one of high, normal, low")),
            },
            Some(_) => return Err(invalid("priority", "must be one of high, normal, low")),
        };
        let max_attempts = match obj.get("max_attempts") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = parse_n(v, "max_attempts", u64::from(limits.max_attempts))?;
                if n == 0 {
                    return Err(invalid("max_attempts", "must be at least 1"));
                }
                Some(n as u32)
            }
        };
        let timeout_ms = match obj.get("timeout_secs") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let secs = v
                    .as_f64()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        invalid("timeout_secs", "must be a positive number of seconds")
                    })?;
                if secs > limits.max_timeout_secs as f64 {
                    return Err(invalid(
                        "timeout_secs",
                        format!("must be at most {}", limits.max_timeout_secs),
                    ));
                }
                Some(((secs * 1000.0).ceil() as u64).max(1))
            }
        };
        let chaos = match obj.get("chaos") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_chaos(v)?),
        };
        let run_at_ms = parse_start(obj, now_ms)?;
        let retention_secs = match obj.get("retention") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                let d =
                    crate::parse_duration(text).map_err(|e| invalid("retention", e.to_string()))?;
                if d.as_secs() < 1 {
                    return Err(invalid("retention", "must be at least 1s"));
                }
                Some(d.as_secs())
            }
            Some(_) => {
                return Err(invalid(
                    "retention",
                    "must be a duration such as \"30d\" or \"12h\"",
                ))
            }
        };
        Ok(JobRequest {
            spec,
            priority,
            max_attempts,
            timeout_ms,
            chaos,
            run_at_ms,
            retention_secs,
        })
    }
}

/// `run_at` (RFC 3339; a time in the past runs at once) or `delay` (a duration such as
/// `90s`, see [`crate::duration`]): the start time in Unix ms.
fn parse_start(obj: &Map<String, Value>, now_ms: i64) -> Result<Option<i64>, ValidationError> {
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    const EXAMPLE: &str = "an RFC 3339 time such as 2026-12-24T18:00:00Z";
    match (present("run_at"), present("delay")) {
        (Some(_), Some(_)) => Err(invalid("delay", "give either run_at or delay, not both")),
        (Some(v), None) => {
            let text = v
                .as_str()
                .ok_or_else(|| invalid("run_at", format!("must be {EXAMPLE}")))?;
            let at =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| invalid("run_at", format!("{text:?} is not {EXAMPLE} ({e})")))?;
            // Years 0-9999: always within i64 milliseconds.
            Ok(Some((at.unix_timestamp_nanos() / 1_000_000) as i64))
        }
        (None, Some(v)) => {
            let text = v.as_str().ok_or_else(|| {
                invalid("delay", "must be a duration such as \"90s\" or \"1h30m\"")
            })?;
            let delay = crate::parse_duration(text).map_err(|e| invalid("delay", e.to_string()))?;
            let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            Ok(Some(now_ms.saturating_add(ms)))
        }
        (None, None) => Ok(None),
    }
}

/// `{"fail_probability": 0..1, "delay_ms": n | [min, max], "panic": bool}`, all optional.
pub fn parse_chaos(v: &Value) -> Result<Chaos, ValidationError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("chaos", "must be an object"))?;
    const KEYS: [&str; 3] = ["fail_probability", "delay_ms", "panic"];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(invalid(
            format!("chaos.{k}"),
            format!("unknown setting; accepted: {}", KEYS.join(", ")),
        ));
    }
    let mut chaos = Chaos::default();
    if let Some(p) = obj.get("fail_probability") {
        let p = p
            .as_f64()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| invalid("chaos.fail_probability", "must be a number from 0 to 1"))?;
        chaos.fail_ppm = (p * f64::from(Chaos::PPM)).round() as u32;
    }
    const MAX_DELAY_MS: u64 = 3_600_000;
    match obj.get("delay_ms") {
        None | Some(Value::Null) => {}
        Some(Value::Array(range)) if range.len() == 2 => {
            let lo = parse_n(&range[0], "chaos.delay_ms[0]", MAX_DELAY_MS)?;
            let hi = parse_n(&range[1], "chaos.delay_ms[1]", MAX_DELAY_MS)?;
            if lo > hi {
                return Err(invalid(
                    "chaos.delay_ms",
                    "must be [min, max] with min <= max",
                ));
            }
            (chaos.delay_min_ms, chaos.delay_max_ms) = (lo, hi);
        }
        Some(v @ Value::Number(_)) => {
            let d = parse_n(v, "chaos.delay_ms", MAX_DELAY_MS)?;
            (chaos.delay_min_ms, chaos.delay_max_ms) = (d, d);
        }
        Some(_) => {
            return Err(invalid(
                "chaos.delay_ms",
                "must be milliseconds or [min, max]",
            ))
        }
    }
    match obj.get("panic") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => chaos.panic = *b,
        Some(_) => return Err(invalid("chaos.panic", "must be true or false")),
    }
    Ok(chaos)
}

fn parse_kind(obj: &Map<String, Value>) -> Result<JobKind, ValidationError> {
    let names: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
    match obj.get("kind") {
        None => Err(invalid(
            "kind",
            format!("is required; one of {}", names.join(", ")),
        )),
        Some(Value::String(s)) => s.parse().map_err(|_| {
            invalid(
                "kind",
                format!("unknown kind {s:?}; one of {}", names.join(", ")),
            )
        }),
        Some(_) => Err(invalid(
            "kind",
            format!("must be a string, one of {}", names.join(", ")),
        )),
    }
}

fn no_params(params: Option<&Map<String, Value>>) -> Result<(), ValidationError> {
    match params.and_then(|p| p.keys().next()) {
        Some(k) => Err(invalid(
            format!("params.{k}"),
            "this kind takes no parameters",
        )),
        None => Ok(()),
    }
}

fn parse_modulus(params: Option<&Map<String, Value>>) -> Result<Option<u64>, ValidationError> {
    let Some(p) = params else { return Ok(None) };
    if let Some(k) = p.keys().find(|k| k.as_str() != "modulus") {
        return Err(invalid(
            format!("params.{k}"),
            "unknown parameter; fibonacci accepts modulus",
        ));
    }
    match p.get("modulus") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let m = parse_n(v, "params.modulus", u64::MAX)?;
            if m == 0 {
                return Err(invalid("params.modulus", "must be at least 1"));
            }
            Ok(Some(m))
        }
    }
}

/// Largest whole number a JSON float holds exactly (2^53): `1000.0` is taken as 1000
/// up to it, since JSON Schema (and many encoders) treat a whole float as an integer.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// A JSON number with no fraction, as an exact integer (`1000.0` too, up to 2^53).
fn whole_number(num: &serde_json::Number) -> Option<i128> {
    if let Some(n) = num.as_u64() {
        return Some(i128::from(n));
    }
    if let Some(n) = num.as_i64() {
        return Some(i128::from(n));
    }
    num.as_f64()
        .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT)
        .map(|f| f as i128)
}

/// A non-negative integer up to `max`, from a JSON number or a decimal string.
fn parse_n(v: &Value, field: &str, max: u64) -> Result<u64, ValidationError> {
    let n = match v {
        Value::Number(num) => match whole_number(num).map(u64::try_from) {
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err(invalid(field, "must not be negative")),
            None => {
                return Err(invalid(
                    field,
                    format!("must be a whole number from 0 to {max}"),
                ))
            }
        },
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map_err(|_| invalid(field, format!("must be at most {max}")))?,
        Value::String(s) if s.starts_with('-') => {
            return Err(invalid(field, "must not be negative"))
        }
        _ => {
            return Err(invalid(
                field,
                format!("must be a whole number from 0 to {max}"),
            ))
        }
    };
    if n > max {
        return Err(invalid(field, format!("must be at most {max} (got {n})")));
    }
    Ok(n)
}

fn parse_terms(v: &Value, limits: &Limits) -> Result<Vec<String>, ValidationError> {
    let arr = v
        .as_array()
        .ok_or_else(|| invalid("input", "must be an array of integers"))?;
    if arr.len() > limits.max_sum_terms {
        return Err(invalid(
            "input",
            format!("at most {} terms (got {})", limits.max_sum_terms, arr.len()),
        ));
    }
    arr.iter()
        .enumerate()
        .map(|(i, t)| {
            let field = || format!("input[{i}]");
            match t {
                Value::Number(n) => match whole_number(n) {
                    Some(n) => Ok(n.to_string()),
                    None => Err(invalid(
                        field(),
                        "must be an integer, or a decimal string for big integers",
                    )),
                },
                Value::String(s) => {
                    normalize_integer(s, limits.max_term_digits).map_err(|m| invalid(field(), m))
                }
                _ => Err(invalid(
                    field(),
                    "must be an integer, or a decimal string for big integers",
                )),
            }
        })
        .collect()
}

/// `[+-]?digits` with at most `max_digits` digits, normalized (no `+`, no leading zeros, no `-0`).
fn normalize_integer(s: &str, max_digits: usize) -> Result<String, String> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal integer"));
    }
    if digits.len() > max_digits {
        return Err(format!("at most {max_digits} digits"));
    }
    let trimmed = digits.trim_start_matches('0');
    Ok(match (neg, trimmed.is_empty()) {
        (_, true) => "0".to_string(),
        (true, false) => format!("-{trimmed}"),
        (false, false) => trimmed.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<JobRequest, ValidationError> {
        JobRequest::from_json(&v, &Limits::default())
    }

    fn field_of(v: Value) -> String {
        check(v).expect_err("must be rejected").field
    }

    #[test]
    fn retention_is_a_duration_of_at_least_a_second() {
        let keep = |v: Value| check(v).map(|r| r.retention_secs);
        assert_eq!(keep(json!({"kind": "sum", "input": [1]})), Ok(None));
        assert_eq!(
            keep(json!({"kind": "sum", "input": [1], "retention": "30d"})),
            Ok(Some(30 * 86_400))
        );
        for bad in [json!("500ms"), json!("later"), json!(60)] {
            assert_eq!(
                field_of(json!({"kind": "sum", "input": [1], "retention": bad})),
                "retention"
            );
        }
    }

    #[test]
    fn a_start_comes_from_run_at_or_delay() {
        let now = 1_800_000_000_000; // 2027-01-15T08:00:00Z
        let at = |v: Value| JobRequest::from_json_at(&v, &Limits::default(), now);
        let start = |v: Value| at(v).map(|r| r.run_at_ms);
        assert_eq!(start(json!({"kind": "sum", "input": [1]})), Ok(None));
        assert_eq!(
            start(json!({"kind": "sum", "input": [1], "delay": "1m30s"})),
            Ok(Some(now + 90_000))
        );
        assert_eq!(
            start(json!({"kind": "sum", "input": [1], "run_at": "2027-01-15T09:00:00.5+01:00"})),
            Ok(Some(now + 500)),
            "offsets and fractions count"
        );
        // Far ahead is the caller's choice; a time in the past runs at once.
        assert_eq!(
            start(json!({"kind": "sum", "input": [1], "run_at": "2999-01-01T00:00:00Z"})),
            Ok(Some(32_472_144_000_000))
        );
        assert_eq!(
            start(json!({"kind": "sum", "input": [1], "run_at": "2000-01-01T00:00:00Z"})),
            Ok(Some(946_684_800_000))
        );
        let problem = |v: Value| at(v).expect_err("must be rejected");
        for (body, field, says) in [
            (
                json!({"kind": "sum", "input": [1], "delay": "soon"}),
                "delay",
                "invalid duration",
            ),
            (
                json!({"kind": "sum", "input": [1], "delay": 90}),
                "delay",
                "a duration",
            ),
            (
                json!({"kind": "sum", "input": [1], "run_at": "tomorrow"}),
                "run_at",
                "RFC 3339",
            ),
            (
                json!({"kind": "sum", "input": [1], "run_at": "2027-01-15 09:00"}),
                "run_at",
                "RFC 3339",
            ),
            (
                json!({"kind": "sum", "input": [1], "run_at": "2027-01-15T09:00:00Z", "delay": "1s"}),
                "delay",
                "not both",
            ),
        ] {
            let e = problem(body.clone());
            assert_eq!(e.field, field, "{body}");
            assert!(e.message.contains(says), "{body}: {}", e.message);
        }
    }

    #[test]
    fn accepts_each_kind() {
        assert_eq!(
            check(json!({"kind": "factorial", "input": 20})).map(|r| r.spec),
            Ok(JobSpec::Factorial { n: 20 })
        );
        assert_eq!(
            check(json!({"kind": "fibonacci", "input": "1000000000000000000", "params": {"modulus": 7}})).map(|r| r.spec),
            Ok(JobSpec::Fibonacci { n: 1_000_000_000_000_000_000, modulus: Some(7) })
        );
        assert_eq!(
            check(json!({"kind": "sum", "input": [1, -2, "+007", "-0", "123456789012345678901234567890"]})).map(|r| r.spec),
            Ok(JobSpec::Sum { terms: vec!["1".into(), "-2".into(), "7".into(), "0".into(), "123456789012345678901234567890".into()] })
        );
    }

    #[test]
    fn parses_chaos() {
        let r = check(
            json!({"kind": "factorial", "input": 3, "chaos": {"fail_probability": 0.2, "delay_ms": [5, 10], "panic": true}}),
        );
        assert_eq!(
            r.map(|r| r.chaos),
            Ok(Some(Chaos {
                fail_ppm: 200_000,
                delay_min_ms: 5,
                delay_max_ms: 10,
                panic: true
            }))
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 3, "chaos": {"fail_probability": 2}})),
            "chaos.fail_probability"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 3, "chaos": {"delay_ms": [9, 1]}})),
            "chaos.delay_ms"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 3, "chaos": {"boom": 1}})),
            "chaos.boom"
        );
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(field_of(json!([1])), "body");
        assert_eq!(field_of(json!({"input": 1})), "kind");
        assert_eq!(field_of(json!({"kind": "sqrt", "input": 1})), "kind");
        assert_eq!(field_of(json!({"kind": "factorial"})), "input");
        assert_eq!(field_of(json!({"kind": "factorial", "input": -5})), "input");
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 2.5})),
            "input"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": "ten"})),
            "input"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 100_000_001u64})),
            "input"
        );
        assert_eq!(
            field_of(json!({"kind": "fibonacci", "input": 2_000_000_000u64})),
            "input"
        );
        assert_eq!(
            field_of(json!({"kind": "fibonacci", "input": 5, "params": {"modulus": 0}})),
            "params.modulus"
        );
        assert_eq!(
            field_of(json!({"kind": "fibonacci", "input": 5, "params": {"mod": 3}})),
            "params.mod"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 5, "params": {"modulus": 3}})),
            "params.modulus"
        );
        assert_eq!(
            field_of(json!({"kind": "sum", "input": [1, 2.5]})),
            "input[1]"
        );
        assert_eq!(
            field_of(json!({"kind": "sum", "input": [1, "12a"]})),
            "input[1]"
        );
        assert_eq!(field_of(json!({"kind": "sum", "input": 3})), "input");
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 3, "color": "red"})),
            "color"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 3, "priority": "urgent"})),
            "priority"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 3, "max_attempts": 0})),
            "max_attempts"
        );
        assert_eq!(
            field_of(json!({"kind": "factorial", "input": 3, "timeout_secs": -1})),
            "timeout_secs"
        );
    }

    #[test]
    fn whole_floats_are_integers_up_to_two_to_the_53() {
        let n = |v: Value| match check(json!({"kind": "factorial", "input": v})) {
            Ok(r) => Ok(r.spec),
            Err(e) => Err(e.field),
        };
        assert_eq!(n(json!(1000.0)), Ok(JobSpec::Factorial { n: 1000 }));
        assert_eq!(n(json!(-0.0)), Ok(JobSpec::Factorial { n: 0 }));
        assert_eq!(n(json!(-3.0)), Err("input".to_string()));
        let modular = |v: Value| {
            check(json!({"kind": "fibonacci", "input": v, "params": {"modulus": 7}}))
                .map(|r| r.spec)
        };
        assert!(modular(json!(9_007_199_254_740_992.0)).is_ok());
        // Past 2^53 a float is not an exact integer: ask for digits instead.
        assert_eq!(
            modular(json!(1.8e19)).map_err(|e| e.field),
            Err("input".to_string())
        );
        let sum = check(json!({"kind": "sum", "input": [2.0, -5.0, 7]})).expect("whole terms");
        assert_eq!(
            sum.spec,
            JobSpec::Sum {
                terms: vec!["2".into(), "-5".into(), "7".into()]
            }
        );
    }
}
