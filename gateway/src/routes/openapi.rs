//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they return, then made exact by
//! `exact`: the constraints the handlers really enforce (job ids are UUIDs, status
//! and kind are enums, each kind's `input` has its own shape and this gateway's limits,
//! `Idempotency-Key` is 1-255 visible characters), so a client generated from it, or a
//! fuzzer's schema-valid request, is accepted.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use jetmill_proto::{JobKind, Limits};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::OpenApi;

/// The body of `POST /v1/jobs` (validated by hand so errors name the field; this type
/// describes it for the document).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SubmitBody {
    /// What to compute.
    pub kind: jetmill_proto::JobKind,
    /// n for factorial/fibonacci (integer or decimal string); an array of integers or
    /// decimal strings for sum.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// `{"modulus": m}` for fibonacci (1 <= m < 2^64).
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    /// Queue priority (default normal).
    pub priority: Option<jetmill_proto::Priority>,
    /// Attempts before the job fails (1..20).
    pub max_attempts: Option<u32>,
    /// Wall-clock limit per attempt, seconds.
    pub timeout_secs: Option<f64>,
    /// Start no earlier than this RFC 3339 time (`scheduled` until then).
    pub run_at: Option<String>,
    /// Start after this long, e.g. `90s` (`scheduled` until then).
    pub delay: Option<String>,
    /// Failure injection: `{"fail_probability": 0.2, "delay_ms": [100, 500], "panic": false}`.
    #[schema(value_type = Option<Object>)]
    pub chaos: Option<serde_json::Value>,
}

/// The body of `POST /v1/workflows` (its exact shape is stated in `exact`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct WorkflowBody {
    /// Named steps: each a `POST /v1/jobs` body plus `name` and `depends_on`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub steps: Option<Vec<serde_json::Value>>,
    /// Shorthand: steps that run one after another.
    #[schema(value_type = Option<Vec<Object>>)]
    pub chain: Option<Vec<serde_json::Value>>,
    /// Shorthand: steps that run side by side, then `fan_in`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub fan_out: Option<Vec<serde_json::Value>>,
    /// The step after every `fan_out` step (a `sum` without `input` adds their results).
    #[schema(value_type = Option<Object>)]
    pub fan_in: Option<serde_json::Value>,
    /// Shorthand: one factorial split across the workers, `{"input": n, "split": k}`.
    #[schema(value_type = Option<Object>)]
    pub factorial: Option<serde_json::Value>,
    /// `fail_fast` (default) or `continue`.
    pub on_failure: Option<jetmill_proto::FailurePolicy>,
}

/// The body of `POST /v1/schedules`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ScheduleBody {
    /// Six-field cron with seconds (`0 */5 * * * *`), `@hourly`/`@daily`/..., or
    /// `@every 5m` (at least 1 s).
    pub cron: String,
    /// IANA time zone of a cron expression (default UTC; not with `@every`).
    pub time_zone: Option<String>,
    /// The job each firing submits: a `POST /v1/jobs` body without `run_at`/`delay`.
    #[schema(value_type = Object)]
    pub job: serde_json::Value,
    /// Store it without firing (default false).
    pub paused: Option<bool>,
}

/// The document's root: every route and the types they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jetmill",
        description = "Distributed exact big-number jobs over NATS JetStream. Errors are RFC 9457 problem details (application/problem+json).",
    ),
    paths(
        super::jobs::submit,
        super::list::list,
        super::live::get_one,
        super::cancel::cancel,
        super::jobs::result,
        super::batch::submit,
        super::batch::get_one,
        super::batch::cancel,
        super::retry::retry_one,
        super::retry::retry_many,
        super::retry::purge_many,
        super::workflows::submit,
        super::workflows::get_one,
        super::workflows::events,
        super::workflows::cancel,
        super::schedules::create,
        super::schedules::list,
        super::schedules::get_one,
        super::schedules::pause,
        super::schedules::resume,
        super::schedules::delete,
        super::live::events,
        super::live::feed,
        super::usage::usage,
        super::workers::list,
        super::workers::activity,
        super::workers::limits,
        super::health::healthz,
        super::health::readyz,
    ),
    components(schemas(
        SubmitBody,
        ScheduleBody,
        WorkflowBody,
        super::workflows::WorkflowSubmitted,
        super::workflows::StepSubmitted,
        super::workflows::WorkflowView,
        super::workflows::HaltView,
        super::workflows::StepView,
        jetmill_proto::WorkflowStatus,
        jetmill_proto::StepStatus,
        jetmill_proto::FailurePolicy,
        super::schedules::ScheduleList,
        jetmill_proto::ScheduleRecord,
        crate::error::Problem,
        super::jobs::Submitted,
        super::list::JobList,
        super::batch::BatchSubmitted,
        super::batch::BatchStatus,
        jetmill_proto::BatchItem,
        jetmill_proto::BatchCounts,
        jetmill_proto::JobRecord,
        jetmill_proto::JobEvent,
        jetmill_proto::AttemptFailure,
        super::retry::DeadLetterIds,
        super::retry::DeadLetterResults,
        super::retry::DeadLetterResult,
        jetmill_proto::Usage,
        jetmill_proto::WorkerReport,
        super::workers::WorkersView,
        super::workers::LimitsView,
        jetmill_proto::LimitView,
        jetmill_proto::ScopeUsage,
        jetmill_proto::RunLimit,
        jetmill_proto::Rate,
        crate::activity::ActivityView,
        crate::activity::Sample,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Adds the bearer scheme (JWT or API key).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /openapi.json`: the document with this gateway's limits.
pub async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    let body = document(state.limits()).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// `POST /v1/workflows`: exactly one of `steps`, `chain` or `fan_out` (+ `fan_in`), each
/// step a submit body of its kind (without `run_at`/`delay`) plus `name` and
/// `depends_on`. What JSON Schema cannot say (no cycles, unique names, `depends_on`
/// naming real steps) is checked by the handler and answered 422 naming the step.
fn workflow_body(limits: &Limits) -> Value {
    let step = |named: bool| {
        let mut spec = submit_body(limits);
        if let Some(kinds) = spec.get_mut("oneOf").and_then(Value::as_array_mut) {
            for kind in kinds {
                if let Some(obj) = kind.as_object_mut() {
                    obj.remove("not");
                }
                if let Some(props) = kind.get_mut("properties").and_then(Value::as_object_mut) {
                    props.remove("run_at");
                    props.remove("delay");
                    props.insert(
                        "name".into(),
                        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$",
                            "description": "Unique in the workflow (shorthands name steps step-N, part-N, fan-in)."}),
                    );
                    props.insert(
                        "depends_on".into(),
                        json!({"type": "array", "items": {"type": "string"},
                            "description": "Names of the steps this one waits for."}),
                    );
                }
                if named {
                    if let Some(req) = kind.get_mut("required").and_then(Value::as_array_mut) {
                        req.push(json!("name"));
                    }
                }
            }
        }
        spec["description"] = json!("A POST /v1/jobs body without run_at/delay, plus `name` and `depends_on`. In a sum's `input`, {\"result_of\": \"<step>\"} stands for that step's result and implies the dependency.");
        spec
    };
    let list = |items: Value| json!({"type": "array", "minItems": 1, "maxItems": jetmill_proto::MAX_STEPS, "items": items});
    let none_of = |fields: &[&str]| json!({"not": {"anyOf": fields.iter().map(|f| json!({"required": [f]})).collect::<Vec<_>>()}});
    let form = |field: &str, others: &[&str]| {
        let mut f = none_of(others);
        f["required"] = json!([field]);
        f
    };
    json!({
        "description": "A workflow: exactly one of steps (a graph), chain (one after another) or fan_out (side by side, then the optional fan_in).",
        "type": "object",
        "properties": {
            "steps": list(step(true)),
            "chain": list(step(false)),
            "fan_out": list(step(false)),
            "fan_in": step(false),
            "factorial": {
                "description": "One factorial split into `split` partial products of balanced weight (steps part-1..part-K, run by any workers, kept in binary) and a `combine` step whose result is n! as a factorial job's. Also takes a factorial submit's priority, max_attempts, timeout_secs, retention and chaos, for every step.",
                "type": "object",
                "required": ["input", "split"],
                "properties": {
                    "input": {"type": "integer", "minimum": 3, "maximum": limits.max_factorial_n},
                    "split": {"type": "integer", "minimum": 2, "maximum": jetmill_proto::workflow::MAX_SPLIT},
                    "priority": {"type": "string", "enum": PRIORITIES},
                    "max_attempts": {"type": "integer", "minimum": 1, "maximum": limits.max_attempts},
                    "timeout_secs": {"type": "number", "exclusiveMinimum": 0, "maximum": limits.max_timeout_secs},
                    "retention": {"type": "string", "pattern": "^[1-9][0-9]{0,8}(s|m|h|d)$"}
                }
            },
            "on_failure": {"type": "string", "enum": ["fail_fast", "continue"], "default": "fail_fast"}
        },
        "additionalProperties": false,
        "oneOf": [
            form("steps", &["chain", "fan_out", "fan_in", "factorial"]),
            form("chain", &["steps", "fan_out", "fan_in", "factorial"]),
            form("fan_out", &["steps", "chain", "factorial"]),
            form("factorial", &["steps", "chain", "fan_out", "fan_in"]),
        ]
    })
}

/// The whole document for a gateway enforcing `limits`.
pub fn document(limits: &Limits) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    exact(&mut doc, limits);
    doc
}

/// State what the annotations cannot: the real shape of every parameter and of the
/// submit body, as the handlers validate them.
fn exact(doc: &mut Value, limits: &Limits) {
    if let Some(schema) = doc.pointer_mut("/components/schemas/SubmitBody") {
        *schema = submit_body(limits);
    }
    if let Some(schema) = doc.pointer_mut("/components/schemas/ScheduleBody") {
        *schema = schedule_body(limits);
    }
    if let Some(schema) = doc.pointer_mut("/components/schemas/WorkflowBody") {
        *schema = workflow_body(limits);
    }
    exact_paths(doc);
    // A workflow's feed sends its status (as GET answers it), not job events.
    if let Some(sse) = doc.pointer_mut(
        "/paths/~1v1~1workflows~1{id}~1events/get/responses/200/content/text~1event-stream",
    ) {
        sse["schema"] = json!({"$ref": "#/components/schemas/WorkflowView"});
    }
}

/// Parameters and SSE payloads of every path, as the handlers really take and send them.
fn exact_paths(doc: &mut Value) {
    // A batch is 1 to MAX_ITEMS job specs (an empty or oversized batch is a 422).
    if let Some(body) = doc.pointer_mut("/paths/~1v1~1jobs~1batch/post/requestBody/content") {
        if let Some(body) = body.as_object_mut() {
            for media in body.values_mut() {
                media["schema"]["minItems"] = json!(1);
                media["schema"]["maxItems"] = json!(jetmill_proto::MAX_BATCH);
            }
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for ops in paths.values_mut() {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for (_, op) in ops.iter_mut() {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for response in responses.values_mut() {
                    if let Some(sse) = response.pointer_mut("/content/text~1event-stream") {
                        sse["schema"] = sse_event();
                    }
                }
            }
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in params {
                let (Some(name), Some(place)) = (
                    p["name"].as_str().map(str::to_string),
                    p["in"].as_str().map(str::to_string),
                ) else {
                    continue;
                };
                if let Some(schema) = parameter_schema(&place, &name) {
                    p["schema"] = schema;
                }
            }
        }
    }
}

/// An RFC 3339 time as `run_at` takes it (the `date-time` format, with at most nine
/// fraction digits).
const RFC3339_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$";

/// The largest integer every JSON parser holds exactly (2^53 - 1).
const MAX_EXACT_JSON: u64 = (1 << 53) - 1;

/// Every job status, as the API spells them (checked against `JobStatus` by a test).
const STATUSES: [&str; 6] = [
    "pending",
    "scheduled",
    "running",
    "done",
    "failed",
    "cancelled",
];
/// Every priority, as the API spells them (checked against `Priority` by a test).
const PRIORITIES: [&str; 3] = ["high", "normal", "low"];

/// The exact schema of one parameter, where the annotation's is looser.
fn parameter_schema(place: &str, name: &str) -> Option<Value> {
    let uuid = || json!({"type": "string", "format": "uuid"});
    let one_of = |values: Vec<&str>| json!({"type": "string", "enum": values});
    let tenant = || json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    Some(match (place, name) {
        ("path", "id") => uuid(),
        ("query", "cursor") => uuid(),
        ("query", "batch") => uuid(),
        ("query", "schedule") => uuid(),
        ("query", "status") => one_of(STATUSES.to_vec()),
        ("query", "kind") => one_of(JobKind::ALL.iter().map(|k| k.as_str()).collect()),
        ("query", "limit") => {
            json!({"type": "integer", "minimum": 1, "maximum": super::list::MAX_LIST})
        }
        ("query", "tenant") => tenant(),
        // `30s`, `500ms`, `1h30m` or plain seconds (cut to the gateway's --max-wait-secs).
        ("query", "wait") => json!({"type": "string", "pattern": jetmill_proto::duration::PATTERN}),
        // Headers are text: the EVENTS sequence of the last event seen, in digits.
        ("header", "Last-Event-ID") => json!({"type": "string", "pattern": "^[0-9]{1,19}$"}),
        ("header", "Cache-Control") => json!({"type": "string"}),
        ("header", "Idempotency-Key") => json!({
            "type": "string", "minLength": 1, "maxLength": 255,
            "pattern": "^[!-~]([ -~]*[!-~])?$"
        }),
        _ => return None,
    })
}

/// One Server-Sent Event of a job feed (OpenAPI 3.1 reads a `text/event-stream`
/// schema as the schema of each event): `event` the type, `id` the EVENTS stream
/// sequence (send it back as `Last-Event-ID`), `data` the event as JSON, with the job's
/// `status` after it.
fn sse_event() -> Value {
    json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {
                "type": "string",
                "enum": ["accepted", "started", "progress", "retried", "done", "failed", "cancelled"]
            },
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "retry": {"type": "integer", "minimum": 0},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "allOf": [{"$ref": "#/components/schemas/JobEvent"}],
                    "properties": {"status": {"$ref": "#/components/schemas/JobStatus"}}
                }
            }
        }
    })
}

/// A whole number from `min` to `max`: a JSON integer, or a decimal string short enough
/// to be in range whatever its digits (the server also takes longer strings whose value
/// is in range; the document promises the part that is always accepted).
fn whole(min: u64, max: u64) -> Value {
    let digits = max.to_string().len().saturating_sub(1).max(1);
    // Above 2^53 a JSON number is not exact in most clients (I-JSON): the document asks
    // for a decimal string there (the server takes exact JSON integers of any size).
    let max_number = max.min(MAX_EXACT_JSON);
    let pattern = if min == 0 {
        format!("^[0-9]{{1,{digits}}}$")
    } else {
        format!("^[1-9][0-9]{{0,{}}}$", digits - 1)
    };
    json!({"oneOf": [
        {"type": "integer", "minimum": min, "maximum": max_number},
        {"type": "string", "pattern": pattern},
    ]})
}

/// The `POST /v1/schedules` body. The server takes any six-field cron expression and
/// IANA zone nats-server knows; the document promises a part always accepted: named
/// intervals, `@every` in s/m/h, simple numeric cron fields, and a few zones.
fn schedule_body(limits: &Limits) -> Value {
    let mut job = submit_body(limits);
    for variant in job["oneOf"].as_array_mut().into_iter().flatten() {
        if let Some(props) = variant["properties"].as_object_mut() {
            props.remove("run_at");
            props.remove("delay");
        }
        if let Some(v) = variant.as_object_mut() {
            v.remove("not");
        }
    }
    job["description"] =
        json!("The job each firing submits: a POST /v1/jobs body without run_at or delay.");
    let named = r"^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$";
    let cron = r"^(\*|[1-5]?[0-9]) (\*|[1-5]?[0-9]) (\*|1?[0-9]|2[0-3]) \* \* \*$";
    let every = r"^@every [1-9][0-9]{0,3}(s|m|h)$";
    let paused =
        json!({"type": "boolean", "description": "Store it without firing (default false)."});
    let zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"];
    let variant = |cron: Value, time_zone: Value| {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["cron", "job"],
            "properties": {"cron": cron, "time_zone": time_zone, "job": job.clone(), "paused": paused.clone()}
        })
    };
    json!({
        "description": "A recurring schedule. `cron`: six fields with seconds (`second minute hour day-of-month month day-of-week`, with `*`, `?`, ranges, steps, lists, JAN-DEC and SUN-SAT), a named interval (`@hourly`...), or `@every <duration>` of at least 1 s. `time_zone`: any IANA name (default UTC; not with `@every`).",
        "oneOf": [
            variant(
                json!({"type": "string", "oneOf": [{"pattern": named}, {"pattern": cron}]}),
                json!({"type": "string", "enum": zones}),
            ),
            variant(
                json!({"type": "string", "pattern": every}),
                json!({"type": "string", "const": "UTC"}),
            ),
        ]
    })
}

/// The submit body, one variant per kind (and Fibonacci with and without a modulus).
fn submit_body(limits: &Limits) -> Value {
    let common = |kind: JobKind, input: Value, params: Option<Value>| {
        let mut properties = json!({
            "kind": {"type": "string", "const": kind.as_str()},
            "input": input,
            "priority": {
                "type": "string",
                "enum": PRIORITIES,
                "description": "Queue priority (default normal)."
            },
            "max_attempts": {
                "type": "integer", "minimum": 1, "maximum": limits.max_attempts,
                "description": "Attempts before the job fails (default: the queue's max_deliver)."
            },
            "timeout_secs": {
                "type": "number", "exclusiveMinimum": 0, "maximum": limits.max_timeout_secs,
                "description": "Wall-clock limit per attempt, seconds."
            },
            "run_at": {
                "type": "string", "format": "date-time",
                "pattern": RFC3339_PATTERN,
                "description": "Start no earlier than this time (RFC 3339): the job is `scheduled` until then. A time in the past starts at once. Not with `delay`."
            },
            "delay": {
                "type": "string", "pattern": jetmill_proto::duration::PATTERN,
                "description": "Start after this long (`90s`, `15m`, `1h30m`, or seconds): the job is `scheduled` until then. Not with `run_at`."
            },
            "retention": {
                "type": "string", "pattern": "^[1-9][0-9]{0,8}(s|m|h|d)$",
                "description": "How long the finished job (record and result) is kept, e.g. `30d` (default: the deployment's --retention, 7 days). The server also takes compound durations such as `1h30m` (at least 1 s)."
            },
            "chaos": {
                "type": "object",
                "additionalProperties": false,
                "description": "Failure injection before the kernel runs. `delay_ms` may also be `[min, max]` with min <= max.",
                "properties": {
                    "fail_probability": {"type": "number", "minimum": 0, "maximum": 1},
                    "delay_ms": {"type": "integer", "minimum": 0, "maximum": 3_600_000},
                    "panic": {"type": "boolean"}
                }
            }
        });
        let mut required = vec!["kind", "input"];
        match params {
            Some(p) => {
                properties["params"] = p;
                required.push("params");
            }
            None => properties["params"] = json!({"type": "null"}),
        }
        json!({
            "title": kind.as_str(),
            "type": "object",
            "additionalProperties": false,
            "required": required,
            "properties": properties,
            "not": {"required": ["run_at", "delay"]},
        })
    };
    let term = json!({"oneOf": [
        {"type": "integer", "minimum": -(MAX_EXACT_JSON as i64), "maximum": MAX_EXACT_JSON},
        {"type": "string", "pattern": format!("^[+-]?[0-9]{{1,{}}}$", limits.max_term_digits)},
    ]});
    let mut modular = common(
        JobKind::Fibonacci,
        whole(0, u64::MAX),
        Some(json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["modulus"],
            "properties": {"modulus": whole(1, u64::MAX)}
        })),
    );
    modular["title"] = json!("fibonacci mod m");
    json!({
        "description": "The job to run. `input` is n for factorial and fibonacci (an integer, or a decimal string), the terms for sum (integers, or decimal strings for big ones); fibonacci takes `params.modulus` (1 <= m < 2^64) to compute F(n) mod m, for any n < 2^64.",
        "oneOf": [
            common(JobKind::Factorial, whole(0, limits.max_factorial_n), None),
            common(JobKind::Fibonacci, whole(0, limits.max_fibonacci_n), None),
            modular,
            common(JobKind::Sum, json!({
                "type": "array", "maxItems": limits.max_sum_terms, "items": term
            }), None),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetmill_proto::{JobRequest, JobStatus, Priority};

    #[test]
    fn the_enums_in_the_document_are_the_real_ones() {
        for s in STATUSES {
            let parsed: JobStatus = s.parse().expect("a real status");
            assert_eq!(parsed.as_str(), s);
        }
        for p in PRIORITIES {
            let parsed: Priority = serde_json::from_value(json!(p)).expect("a real priority");
            assert_eq!(serde_json::to_value(parsed).expect("json"), json!(p));
        }
    }

    #[test]
    fn the_edges_the_document_promises_are_accepted_and_its_limits_are_the_gateways() {
        let limits = Limits::default();
        let body = submit_body(&limits);
        let factorial = &body["oneOf"][0]["properties"]["input"]["oneOf"];
        assert_eq!(factorial[0]["maximum"], json!(limits.max_factorial_n));
        let longest = "9".repeat(limits.max_factorial_n.to_string().len() - 1);
        for input in [json!(limits.max_factorial_n), json!(longest), json!("0")] {
            let req = json!({"kind": "factorial", "input": input, "params": null,
                             "priority": "low", "max_attempts": limits.max_attempts,
                             "timeout_secs": limits.max_timeout_secs,
                             "chaos": {"fail_probability": 1, "delay_ms": 3_600_000, "panic": true}});
            JobRequest::from_json(&req, &limits).expect("schema-valid body accepted");
        }
        let modular = json!({"kind": "fibonacci", "input": u64::MAX,
                             "params": {"modulus": "1999999999999999999"}});
        JobRequest::from_json(&modular, &limits).expect("fibonacci mod m accepted");
        let sum = json!({"kind": "sum", "input": [i64::MIN, u64::MAX, "-0012", "+7", ""]});
        // The empty string is outside the document's pattern, and the server refuses it.
        assert!(JobRequest::from_json(&sum, &limits).is_err());
        let sum = json!({"kind": "sum", "input": [i64::MIN, u64::MAX, "-0012", "+7"]});
        JobRequest::from_json(&sum, &limits).expect("sum terms accepted");
    }
}
