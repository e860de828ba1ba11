//! Recurring schedules (`POST /v1/schedules`): a cron expression or `@every`, a time
//! zone and a job spec; each firing becomes an ordinary job linked to its schedule.
//!
//! nats-server (2.14+) fires the schedules; the grammar here is the one it accepts,
//! checked first so that a mistake is answered with the field and the problem:
//! - six fields, `second minute hour day-of-month month day-of-week`, each `*`, `?`
//!   (the day fields), a value, a range `a-b`, a step `*/n` or `a-b/n`, or a comma
//!   list of those; months `1-12` or `JAN`-`DEC`, days of the week `0-6` (Sunday is 0)
//!   or `SUN`-`SAT`;
//! - `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`;
//! - `@every <duration>` of at least one second (the duration grammar of
//!   [`crate::duration`]); it runs in no time zone.

use crate::{JobId, JobRequest, Limits, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// A stored schedule, as clients and the broker's firings see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleRecord {
    pub id: JobId,
    pub tenant: String,
    /// The cron expression or `@every` interval, as given.
    pub cron: String,
    /// IANA time zone the cron expression is read in (`UTC` unless given).
    pub time_zone: String,
    /// The job each firing submits (a `POST /v1/jobs` body without `run_at`/`delay`).
    #[schema(value_type = Object)]
    pub job: Value,
    /// A paused schedule does not fire.
    pub paused: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl ScheduleRecord {
    /// Encode as the JSON stored in KV.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse the JSON stored in KV.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The `Nats-Schedule` header value: the expression, with an `@every` duration
    /// spelled as nats-server reads it (milliseconds).
    pub fn broker_pattern(&self) -> String {
        broker_pattern(&self.cron).unwrap_or_else(|_| self.cron.clone())
    }
}

/// A validated `POST /v1/schedules` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRequest {
    pub cron: String,
    pub time_zone: String,
    /// The job, validated.
    pub job: JobRequest,
    /// The job as given (stored, and shown back).
    pub job_json: Value,
    pub paused: bool,
}

const FIELDS: &[&str] = &["cron", "time_zone", "job", "paused"];

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

impl ScheduleRequest {
    /// Validate a parsed JSON body; a problem in the job names `job.<field>`.
    pub fn from_json(body: &Value, limits: &Limits) -> Result<ScheduleRequest, ValidationError> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("body", "must be a JSON object"))?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                unknown.as_str(),
                format!("unknown field; accepted fields are {}", FIELDS.join(", ")),
            ));
        }
        let cron = match obj.get("cron") {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(_) => {
                return Err(invalid(
                    "cron",
                    "must be a string such as \"0 */5 * * * *\" or \"@every 5m\"",
                ))
            }
            None => {
                return Err(invalid(
                    "cron",
                    "is required, e.g. \"0 */5 * * * *\" or \"@every 5m\"",
                ))
            }
        };
        broker_pattern(&cron).map_err(|m| invalid("cron", m))?;
        let time_zone = match obj.get("time_zone") {
            None | Some(Value::Null) => "UTC".to_string(),
            Some(Value::String(s)) if is_zone_name(s) => s.clone(),
            Some(_) => {
                return Err(invalid(
                    "time_zone",
                    "must be an IANA time zone name such as Europe/Paris or UTC",
                ))
            }
        };
        if cron.starts_with("@every") && time_zone != "UTC" {
            return Err(invalid(
                "time_zone",
                "an @every interval runs in no time zone; give one only with a cron expression",
            ));
        }
        let job_json = obj
            .get("job")
            .filter(|j| j.is_object())
            .cloned()
            .ok_or_else(|| {
                invalid(
                    "job",
                    "is required: the job to submit at each firing, as for POST /v1/jobs",
                )
            })?;
        for timing in ["run_at", "delay"] {
            if job_json.get(timing).is_some_and(|v| !v.is_null()) {
                return Err(invalid(
                    format!("job.{timing}"),
                    "a schedule's job starts when the schedule fires; leave it out",
                ));
            }
        }
        let job = JobRequest::from_json(&job_json, limits).map_err(|e| ValidationError {
            field: format!("job.{}", e.field),
            message: e.message,
        })?;
        let paused = match obj.get("paused") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("paused", "must be true or false")),
        };
        Ok(ScheduleRequest {
            cron,
            time_zone,
            job,
            job_json,
            paused,
        })
    }
}

/// Whether `s` looks like an IANA zone name (`Area/City`, `UTC`); whether the zone
/// exists is nats-server's to say (it keeps the time zone database).
fn is_zone_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
}

/// The `Nats-Schedule` value for `cron`, or what is wrong with it.
pub fn broker_pattern(cron: &str) -> Result<String, String> {
    const NAMED: [&str; 7] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    if let Some(rest) = cron.strip_prefix("@every") {
        let d = crate::parse_duration(rest.trim()).map_err(|e| format!("@every: {e}"))?;
        if d.as_millis() < 1000 {
            return Err("@every must be at least 1s".into());
        }
        return Ok(format!("@every {}ms", d.as_millis()));
    }
    if cron.starts_with('@') {
        if NAMED.contains(&cron) {
            return Ok(cron.to_string());
        }
        return Err(format!(
            "{cron:?} is not one of {}, or @every <duration>",
            NAMED.join(", ")
        ));
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "has {} fields; a cron expression here has six: second minute hour day-of-month month day-of-week (e.g. \"0 */5 * * * *\")",
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let specs: [(&str, u32, u32, &[&str], u32); 6] = [
        ("second", 0, 59, &[], 0),
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, &MONTHS, 1),
        ("day-of-week", 0, 6, &DAYS, 0),
    ];
    for (text, (name, lo, hi, names, first)) in fields.iter().zip(specs) {
        check_field(text, lo, hi, names, first, name.starts_with("day"))
            .map_err(|m| format!("{name} field {text:?}: {m}"))?;
    }
    Ok(cron.to_string())
}

/// One cron field: `*`, `?` (when `any_ok`), or a comma list of `v`, `a-b`, with an
/// optional `/step`.
fn check_field(
    text: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    first: u32,
    any_ok: bool,
) -> Result<(), String> {
    if text == "?" {
        return if any_ok {
            Ok(())
        } else {
            Err("? is only for the day fields".into())
        };
    }
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(first + i as u32);
        }
        match v.parse::<u32>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            Ok(n) => Err(format!("{n} is out of range {lo}-{hi}")),
            Err(_) => Err(format!("{v:?} is not a number from {lo} to {hi}")),
        }
    };
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n >= 1 && n <= hi.max(1) => {}
                _ => return Err(format!("step {step:?} must be a number from 1 to {hi}")),
            }
        }
        if range == "*" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range {range:?} goes backwards"));
                }
            }
            None if range.is_empty() => return Err("an empty item".into()),
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

/// The id of the job a schedule's firing makes: a UUIDv7 at the firing's time whose
/// other bits come from the schedule id and the firing's stream sequence, so moving
/// the same firing twice (a lost ack) names the same job.
pub fn firing_job_id(schedule: &JobId, fired_at_ms: i64, stream_seq: u64) -> JobId {
    let sid = schedule.0.as_bytes();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&sid[6..16]);
    for (b, s) in bits[2..].iter_mut().zip(stream_seq.to_be_bytes()) {
        *b ^= s;
    }
    let ms = u64::try_from(fired_at_ms).unwrap_or(0);
    JobId(uuid::Builder::from_unix_timestamp_millis(ms, &bits).into_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<ScheduleRequest, ValidationError> {
        ScheduleRequest::from_json(&v, &Limits::default())
    }

    #[test]
    fn good_schedules_pass_and_every_is_spelled_for_the_broker() {
        let job = json!({"kind": "factorial", "input": 10});
        for cron in [
            "0 */5 * * * *",
            "0 30 9 * * MON-FRI",
            "*/10 * * ? * *",
            "0 0 12 1,15 jan-jun,DEC *",
            "@hourly",
            "@every 5m",
        ] {
            let r = check(json!({"cron": cron, "job": job})).expect(cron);
            assert_eq!(r.time_zone, "UTC");
            assert!(!r.paused);
        }
        assert_eq!(broker_pattern("@every 1m30s"), Ok("@every 90000ms".into()));
        let r = check(
            json!({"cron": "0 0 9 * * *", "time_zone": "Europe/Paris", "job": job, "paused": true}),
        )
        .expect("zoned");
        assert_eq!((r.time_zone.as_str(), r.paused), ("Europe/Paris", true));
    }

    #[test]
    fn a_bad_schedule_names_the_field_and_the_problem() {
        let job = json!({"kind": "factorial", "input": 10});
        for (body, field, says) in [
            (
                json!({"cron": "* * * * *", "job": job}),
                "cron",
                "has 5 fields",
            ),
            (
                json!({"cron": "61 * * * * *", "job": job}),
                "cron",
                "second field \"61\": 61 is out of range 0-59",
            ),
            (
                json!({"cron": "0 0 25 * * *", "job": job}),
                "cron",
                "hour field",
            ),
            (
                json!({"cron": "0 0 0 * FOO *", "job": job}),
                "cron",
                "month field",
            ),
            (
                json!({"cron": "0 0 0 * * 5-1", "job": job}),
                "cron",
                "goes backwards",
            ),
            (json!({"cron": "0 */0 * * * *", "job": job}), "cron", "step"),
            (
                json!({"cron": "? * * * * *", "job": job}),
                "cron",
                "only for the day fields",
            ),
            (
                json!({"cron": "@every 500ms", "job": job}),
                "cron",
                "at least 1s",
            ),
            (json!({"cron": "@sometimes", "job": job}), "cron", "@hourly"),
            (json!({"cron": 5, "job": job}), "cron", "must be a string"),
            (json!({"job": job}), "cron", "is required"),
            (
                json!({"cron": "@every 1m", "time_zone": "Europe/Paris", "job": job}),
                "time_zone",
                "no time zone",
            ),
            (
                json!({"cron": "@daily", "time_zone": "not a zone", "job": job}),
                "time_zone",
                "IANA",
            ),
            (json!({"cron": "@daily"}), "job", "is required"),
            (
                json!({"cron": "@daily", "job": {"kind": "factorial", "input": -1}}),
                "job.input",
                "",
            ),
            (
                json!({"cron": "@daily", "job": {"kind": "factorial", "input": 1, "delay": "5s"}}),
                "job.delay",
                "leave it out",
            ),
            (
                json!({"cron": "@daily", "job": job, "paused": "no"}),
                "paused",
                "true or false",
            ),
            (
                json!({"cron": "@daily", "job": job, "every": 1}),
                "every",
                "unknown field",
            ),
        ] {
            let e = check(body.clone()).expect_err("must be refused");
            assert_eq!(e.field, field, "{body}");
            assert!(e.message.contains(says), "{body}: {}", e.message);
        }
    }

    #[test]
    fn firing_ids_are_time_ordered_and_the_same_for_the_same_firing() {
        let sid = JobId::new();
        let a = firing_job_id(&sid, 1_800_000_000_000, 7);
        assert_eq!(a, firing_job_id(&sid, 1_800_000_000_000, 7));
        assert_ne!(a, firing_job_id(&sid, 1_800_000_000_000, 8));
        assert_ne!(a, firing_job_id(&JobId::new(), 1_800_000_000_000, 7));
        assert!(firing_job_id(&sid, 1_800_000_001_000, 8) > a);
        assert_eq!(a.0.get_version_num(), 7);
    }
}
