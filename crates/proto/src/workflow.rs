//! Workflows (`POST /v1/workflows`): a DAG of job steps, its validation, what is stored
//! of it in KV `workflows`, and the status every reader derives from the steps' records.
//!
//! A workflow is stored once, immutable: its steps in an order where every step comes
//! after its dependencies, each with the job message it becomes (job id fixed at
//! submit). What changes lives in small keys beside it: one gate per step with
//! dependencies (which of them finished, whether the step was started) and one halt
//! (fail-fast or cancel). A step's own state is its job's record. See
//! docs/architecture.md, "Workflows".

use crate::request::{JobRequest, Limits, ValidationError};
use crate::{JobId, JobMessage, JobSpec, JobStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use time::OffsetDateTime;

/// Most steps one workflow may have (a fan-out of 1,000 plus its fan-in fits easily).
pub const MAX_STEPS: usize = 2_000;
/// Longest step name.
pub const MAX_NAME: usize = 64;
/// The prefix of a sum term that stands for another step's result (`@<job id>`).
pub const RESULT_REF: char = '@';

/// Which workflow and step a job message belongs to (message schema 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// The workflow's id.
    pub workflow: JobId,
    /// The step's position in the stored workflow.
    pub step: u32,
    /// The step's name.
    pub name: String,
}

/// What to do when a step fails for good (or is cancelled on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Stop the whole workflow: running steps are cancelled, no new step starts.
    #[default]
    FailFast,
    /// Skip only the steps that depend on the failed one; independent branches go on.
    Continue,
}

/// One stored step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDef {
    /// Unique within the workflow.
    pub name: String,
    /// Positions (in [`WorkflowRecord::steps`]) of the steps this one waits for.
    pub depends_on: Vec<u32>,
    /// The job this step becomes, ready to publish (its id is the step's job id).
    pub job: JobMessage,
}

/// A workflow as stored in KV `workflows` under `<tenant>.<id>` (written once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub id: JobId,
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub on_failure: FailurePolicy,
    /// Every step after its dependencies.
    pub steps: Vec<StepDef>,
}

impl WorkflowRecord {
    /// For each step, the steps that depend on it.
    pub fn dependents(&self) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.steps.len()];
        for (i, s) in self.steps.iter().enumerate() {
            for &d in &s.depends_on {
                if let Some(list) = out.get_mut(d as usize) {
                    list.push(i as u32);
                }
            }
        }
        out
    }

    /// The steps that start at once (no dependencies).
    pub fn roots(&self) -> impl Iterator<Item = (u32, &StepDef)> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.depends_on.is_empty())
            .map(|(i, s)| (i as u32, s))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Which dependencies of a step have finished, and whether the step was started; KV
/// `workflows` key `<tenant>.<id>.gate.<step>`, changed by compare-and-set only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepGate {
    /// Bit `i` set: the step's `depends_on[i]` has ended (hex, lowest bits first).
    pub done: String,
    /// The step has been started (its job published) or will never be (a dependency
    /// failed): nobody starts it again.
    pub started: bool,
}

impl StepGate {
    fn bits(&self) -> Vec<u8> {
        hex::decode(&self.done).unwrap_or_default()
    }

    /// Mark dependency `i` as ended; `false` if it was marked already.
    pub fn mark(&mut self, i: usize) -> bool {
        let mut bits = self.bits();
        if bits.len() <= i / 8 {
            bits.resize(i / 8 + 1, 0);
        }
        let had = bits[i / 8] & (1 << (i % 8)) != 0;
        bits[i / 8] |= 1 << (i % 8);
        self.done = hex::encode(bits);
        !had
    }

    /// How many of the dependencies are marked.
    pub fn count(&self) -> usize {
        self.bits().iter().map(|b| b.count_ones() as usize).sum()
    }
}

/// Why a workflow stopped early; KV `workflows` key `<tenant>.<id>.halt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// `cancelled` (a client cancelled it) or `failed` (a step failed, fail-fast).
    pub status: WorkflowStatus,
    /// The failed step's name, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A workflow's status, derived from its steps (see [`derive()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowStatus {
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl WorkflowStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// A step's status: its job's, or `waiting` (dependencies not done) or `skipped`
/// (never started: a dependency failed, or the workflow stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Waiting,
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
    Skipped,
}

impl StepStatus {
    /// Will not change any more.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Done | Self::Failed | Self::Cancelled | Self::Skipped
        )
    }

    fn of(job: JobStatus) -> StepStatus {
        match job {
            JobStatus::Pending | JobStatus::Scheduled => StepStatus::Pending,
            JobStatus::Running => StepStatus::Running,
            JobStatus::Done => StepStatus::Done,
            JobStatus::Failed => StepStatus::Failed,
            JobStatus::Cancelled => StepStatus::Cancelled,
        }
    }
}

/// Status and progress of a workflow from each step's job (`None`: no record yet, so
/// not started, or started a moment ago) and its halt: one rule for every reader.
pub fn derive(
    wf: &WorkflowRecord,
    halt: Option<&Halt>,
    jobs: &[Option<(JobStatus, f64)>],
) -> (WorkflowStatus, Vec<StepStatus>, f64) {
    let mut steps: Vec<StepStatus> = Vec::with_capacity(wf.steps.len());
    let mut progress = 0.0;
    for (i, s) in wf.steps.iter().enumerate() {
        let job = jobs.get(i).copied().flatten();
        let status = match job {
            Some((status, p)) => {
                progress += if status == JobStatus::Done {
                    1.0
                } else {
                    p.clamp(0.0, 1.0)
                };
                StepStatus::of(status)
            }
            None => {
                let blocked = s.depends_on.iter().any(|&d| {
                    matches!(
                        steps.get(d as usize),
                        Some(StepStatus::Failed | StepStatus::Cancelled | StepStatus::Skipped)
                    )
                });
                if blocked || halt.is_some() {
                    StepStatus::Skipped
                } else {
                    StepStatus::Waiting
                }
            }
        };
        steps.push(status);
    }
    let n = wf.steps.len().max(1) as f64;
    let status = if let Some(h) = halt {
        h.status
    } else if steps.iter().all(|s| *s == StepStatus::Done) {
        WorkflowStatus::Done
    } else if steps.iter().all(|s| s.is_settled()) {
        WorkflowStatus::Failed
    } else if jobs.iter().any(Option::is_some) {
        WorkflowStatus::Running
    } else {
        WorkflowStatus::Pending
    };
    (status, steps, progress / n)
}

/// The top-level fields of a workflow body.
const FIELDS: &[&str] = &[
    "steps",
    "chain",
    "fan_out",
    "fan_in",
    "factorial",
    "on_failure",
];
/// Most parts a split factorial may have.
pub const MAX_SPLIT: u64 = 64;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

/// A validated workflow body, before it gets its ids.
#[derive(Debug, Clone)]
pub struct WorkflowRequest {
    pub on_failure: FailurePolicy,
    /// Every step after its dependencies.
    pub steps: Vec<PlannedStep>,
}

/// A validated step.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: String,
    pub depends_on: Vec<u32>,
    /// The job spec; a sum's result references are `@<step position>` until ids exist.
    pub request: JobRequest,
}

/// One step as written by the client, with the JSON path used in errors.
struct RawStep {
    path: String,
    name: String,
    depends_on: Vec<(String, String)>,
    spec: Map<String, Value>,
}

impl WorkflowRequest {
    /// Validate a workflow body: `steps` (named steps with `depends_on`), or the
    /// shorthands `chain` (each step after the one before) and `fan_out` + `fan_in`
    /// (every fan-out step, then the fan-in; a fan-in `sum` without `input` adds up the
    /// fan-out's results). Cycles, unknown or repeated names and oversize graphs are
    /// refused naming the step.
    pub fn from_json(body: &Value, limits: &Limits) -> Result<WorkflowRequest, ValidationError> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("body", "must be a JSON object"))?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                unknown.as_str(),
                format!("unknown field; accepted fields are {}", FIELDS.join(", ")),
            ));
        }
        let on_failure = match obj.get("on_failure") {
            None | Some(Value::Null) => FailurePolicy::default(),
            Some(Value::String(s)) if s == "fail_fast" => FailurePolicy::FailFast,
            Some(Value::String(s)) if s == "continue" => FailurePolicy::Continue,
            Some(_) => {
                return Err(invalid(
                    "on_failure",
                    "must be \"fail_fast\" or \"continue\"",
                ))
            }
        };
        let forms = ["steps", "chain", "fan_out", "factorial"]
            .iter()
            .filter(|f| obj.contains_key(**f))
            .count();
        if forms != 1 {
            return Err(invalid(
                "steps",
                "give exactly one of steps (a graph), chain (one after another), fan_out (with fan_in) or factorial (one factorial split into parts)",
            ));
        }
        if obj.contains_key("fan_in") && !obj.contains_key("fan_out") {
            return Err(invalid("fan_in", "goes with fan_out"));
        }
        if let Some(f) = obj.get("factorial") {
            return split_factorial(f, on_failure, limits);
        }
        let raw = if let Some(steps) = obj.get("steps") {
            let list = array_of(steps, "steps")?;
            list.iter()
                .enumerate()
                .map(|(i, s)| raw_step(s, format!("steps[{i}]"), None, true))
                .collect::<Result<Vec<_>, _>>()?
        } else if let Some(chain) = obj.get("chain") {
            let list = array_of(chain, "chain")?;
            let mut out: Vec<RawStep> = Vec::with_capacity(list.len());
            for (i, s) in list.iter().enumerate() {
                let mut step = raw_step(
                    s,
                    format!("chain[{i}]"),
                    Some(format!("step-{}", i + 1)),
                    false,
                )?;
                if let Some(prev) = out.last() {
                    step.depends_on
                        .push((format!("chain[{i}]"), prev.name.clone()));
                }
                out.push(step);
            }
            out
        } else {
            let list = array_of(obj.get("fan_out").unwrap_or(&Value::Null), "fan_out")?;
            let mut out: Vec<RawStep> = list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    raw_step(
                        s,
                        format!("fan_out[{i}]"),
                        Some(format!("part-{}", i + 1)),
                        false,
                    )
                })
                .collect::<Result<_, _>>()?;
            if let Some(fan_in) = obj.get("fan_in") {
                let mut step = raw_step(fan_in, "fan_in".into(), Some("fan-in".into()), false)?;
                let parts: Vec<String> = out.iter().map(|s| s.name.clone()).collect();
                if !step.spec.contains_key("input")
                    && step.spec.get("kind").and_then(Value::as_str) == Some("sum")
                {
                    let refs = parts
                        .iter()
                        .map(|p| serde_json::json!({ "result_of": p }))
                        .collect();
                    step.spec.insert("input".into(), Value::Array(refs));
                }
                step.depends_on = parts
                    .into_iter()
                    .map(|p| ("fan_in".to_string(), p))
                    .collect();
                out.push(step);
            }
            out
        };
        if raw.is_empty() {
            return Err(invalid("steps", "a workflow needs at least one step"));
        }
        if raw.len() > MAX_STEPS {
            return Err(invalid(
                "steps",
                format!(
                    "at most {MAX_STEPS} steps in one workflow (got {})",
                    raw.len()
                ),
            ));
        }
        plan(raw, on_failure, limits)
    }
}

/// `{"factorial": {"input": n, "split": k, ...}}`: n! as `k` partial products of
/// balanced weight (steps `part-1`..`part-k`, any worker), then `combine`, which
/// multiplies them and writes the decimal result as a factorial job's. The other fields
/// are a factorial submit's options (priority, attempts, timeout, retention, chaos),
/// applied to every step.
fn split_factorial(
    v: &Value,
    on_failure: FailurePolicy,
    limits: &Limits,
) -> Result<WorkflowRequest, ValidationError> {
    let mut spec = v.as_object().cloned().ok_or_else(|| {
        invalid(
            "factorial",
            "must be an object: {\"input\": n, \"split\": k}",
        )
    })?;
    let k = match spec.remove("split") {
        Some(Value::Number(k)) => k.as_u64().filter(|k| (2..=MAX_SPLIT).contains(k)),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(
            "factorial.split",
            format!("is required: the number of parts, 2 to {MAX_SPLIT}"),
        )
    })?;
    spec.insert("kind".into(), Value::from("factorial"));
    for field in ["run_at", "delay"] {
        if spec.contains_key(field) {
            return Err(invalid(
                format!("factorial.{field}"),
                "delays are not accepted in workflows",
            ));
        }
    }
    let request =
        JobRequest::from_json(&Value::Object(spec), limits).map_err(|e| ValidationError {
            field: format!("factorial.{}", e.field),
            message: e.message,
        })?;
    let JobSpec::Factorial { n } = request.spec else {
        return Err(invalid("factorial.input", "must be a factorial's n"));
    };
    if n <= k {
        return Err(invalid(
            "factorial.split",
            format!("must be below the input ({n}): each part needs at least one factor"),
        ));
    }
    let of = k as u32;
    let mut steps: Vec<PlannedStep> = (0..of)
        .map(|part| PlannedStep {
            name: format!("part-{}", part + 1),
            depends_on: Vec::new(),
            request: JobRequest {
                spec: JobSpec::FactorialPart { n, part, of },
                ..request.clone()
            },
        })
        .collect();
    steps.push(PlannedStep {
        name: "combine".into(),
        depends_on: (0..of).collect(),
        request: JobRequest {
            // The parts' job ids are filled in by `into_record`.
            spec: JobSpec::FactorialCombine {
                n,
                parts: Vec::new(),
            },
            ..request
        },
    });
    Ok(WorkflowRequest { on_failure, steps })
}

fn array_of<'v>(v: &'v Value, field: &str) -> Result<&'v Vec<Value>, ValidationError> {
    v.as_array()
        .ok_or_else(|| invalid(field, "must be an array of steps"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn raw_step(
    v: &Value,
    path: String,
    default_name: Option<String>,
    named: bool,
) -> Result<RawStep, ValidationError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(path.clone(), "a step must be a JSON object (a job spec)"))?;
    let mut spec = obj.clone();
    let name = match spec.remove("name") {
        Some(Value::String(n)) => n,
        None if !named => default_name.unwrap_or_default(),
        None => return Err(invalid(format!("{path}.name"), "is required")),
        Some(_) => return Err(invalid(format!("{path}.name"), "must be a string")),
    };
    if !valid_name(&name) {
        return Err(invalid(
            format!("{path}.name"),
            format!("must be 1-{MAX_NAME} letters, digits, '-' or '_'"),
        ));
    }
    let depends_on = match spec.remove("depends_on") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Value::String(s) => Ok((format!("{path}.depends_on[{i}]"), s.clone())),
                _ => Err(invalid(
                    format!("{path}.depends_on[{i}]"),
                    "must be a step name",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                format!("{path}.depends_on"),
                "must be an array of step names",
            ))
        }
    };
    for field in ["run_at", "delay"] {
        if spec.contains_key(field) {
            return Err(invalid(
                format!("{path}.{field}"),
                "a step starts when its dependencies are done; delays are not accepted in workflows",
            ));
        }
    }
    Ok(RawStep {
        path,
        name,
        depends_on,
        spec,
    })
}

/// Names to positions, result references to dependencies, cycle check, topological
/// order, and each step's spec validated as a single submit would be.
fn plan(
    raw: Vec<RawStep>,
    on_failure: FailurePolicy,
    limits: &Limits,
) -> Result<WorkflowRequest, ValidationError> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        if index.insert(s.name.as_str(), i).is_some() {
            return Err(invalid(
                format!("{}.name", s.path),
                format!("another step is already named {:?}", s.name),
            ));
        }
    }
    // Dependencies (by position in `raw`), result references included.
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(raw.len());
    let mut specs: Vec<(Value, Vec<(usize, usize)>)> = Vec::with_capacity(raw.len());
    for s in &raw {
        let mut d: Vec<usize> = Vec::new();
        for (field, name) in &s.depends_on {
            let j = *index
                .get(name.as_str())
                .ok_or_else(|| invalid(field.clone(), format!("no step is named {name:?}")))?;
            if !d.contains(&j) {
                d.push(j);
            }
        }
        let mut spec = s.spec.clone();
        // `{"result_of": "step"}` in a sum's input: a term standing for that result.
        let mut refs: Vec<(usize, usize)> = Vec::new();
        if let Some(Value::Array(terms)) = spec.get_mut("input") {
            for (t, term) in terms.iter_mut().enumerate() {
                let Some(target) = term.as_object().and_then(|o| o.get("result_of")) else {
                    continue;
                };
                let field = format!("{}.input[{t}].result_of", s.path);
                let name = target
                    .as_str()
                    .ok_or_else(|| invalid(field.clone(), "must be a step name"))?;
                let j = *index
                    .get(name)
                    .ok_or_else(|| invalid(field.clone(), format!("no step is named {name:?}")))?;
                refs.push((t, j));
                if !d.contains(&j) {
                    d.push(j);
                }
                *term = Value::from(0);
            }
        }
        let kind = spec.get("kind").and_then(Value::as_str).unwrap_or("");
        if !refs.is_empty() && kind != "sum" {
            return Err(invalid(
                format!("{}.input", s.path),
                "a result reference ({\"result_of\": step}) is accepted only in a sum's input",
            ));
        }
        deps.push(d);
        specs.push((Value::Object(spec), refs));
    }
    let order = topological(&raw, &deps)?;
    let mut position = vec![0u32; raw.len()];
    for (p, &i) in order.iter().enumerate() {
        position[i] = p as u32;
    }
    let mut steps = Vec::with_capacity(raw.len());
    for &i in &order {
        let (spec, refs) = &specs[i];
        let mut request = JobRequest::from_json(spec, limits).map_err(|e| ValidationError {
            field: format!("{}.{}", raw[i].path, e.field),
            message: e.message,
        })?;
        if let JobSpec::Sum { terms } = &mut request.spec {
            for &(t, j) in refs {
                if let Some(term) = terms.get_mut(t) {
                    *term = format!("{RESULT_REF}{}", position[j]);
                }
            }
        }
        steps.push(PlannedStep {
            name: raw[i].name.clone(),
            depends_on: deps[i].iter().map(|&j| position[j]).collect(),
            request,
        });
    }
    Ok(WorkflowRequest { on_failure, steps })
}

/// Kahn's order, stable (ready steps in the order written); a cycle is named.
fn topological(raw: &[RawStep], deps: &[Vec<usize>]) -> Result<Vec<usize>, ValidationError> {
    let n = raw.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &k in &dependents[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.insert(k);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk back along unfinished dependencies until a step repeats: that is a cycle.
    let start = (0..n).find(|&i| waiting[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    while let Some(&next) = deps[cur].iter().find(|&&j| waiting[j] > 0) {
        if let Some(p) = path.iter().position(|&x| x == next) {
            let names: Vec<&str> = path[p..]
                .iter()
                .chain(std::iter::once(&next))
                .map(|&i| raw[i].name.as_str())
                .collect();
            return Err(invalid(
                format!("{}.depends_on", raw[next].path),
                format!(
                    "the steps form a cycle (each waits for the next): {}",
                    names.join(" -> ")
                ),
            ));
        }
        path.push(next);
        cur = next;
    }
    Err(invalid(
        format!("{}.depends_on", raw[start].path),
        "the steps form a cycle",
    ))
}

impl WorkflowRequest {
    /// The stored workflow: ids for it and every step, each step's job message (result
    /// references become `@<job id>` terms).
    pub fn into_record(
        self,
        id: JobId,
        tenant: &str,
        submitted_at_ms: i64,
        created_at: OffsetDateTime,
    ) -> WorkflowRecord {
        let ids: Vec<JobId> = self.steps.iter().map(|_| JobId::new()).collect();
        let steps = self
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let mut spec = s.request.spec;
                if let JobSpec::FactorialCombine { parts, .. } = &mut spec {
                    *parts = s
                        .depends_on
                        .iter()
                        .filter_map(|&d| ids.get(d as usize).copied())
                        .collect();
                }
                if let JobSpec::Sum { terms } = &mut spec {
                    for t in terms.iter_mut() {
                        if let Some(pos) = t.strip_prefix(RESULT_REF) {
                            if let Some(job) = pos.parse::<usize>().ok().and_then(|p| ids.get(p)) {
                                *t = format!("{RESULT_REF}{job}");
                            }
                        }
                    }
                }
                let mut job = JobMessage::new(tenant, spec, submitted_at_ms);
                job.id = ids[i];
                job.priority = s.request.priority;
                job.max_attempts = s.request.max_attempts;
                job.timeout_ms = s.request.timeout_ms;
                job.chaos = s.request.chaos;
                job.retention_secs = s.request.retention_secs;
                job.workflow = Some(StepRef {
                    workflow: id,
                    step: i as u32,
                    name: s.name.clone(),
                });
                StepDef {
                    name: s.name,
                    depends_on: s.depends_on,
                    job,
                }
            })
            .collect();
        WorkflowRecord {
            id,
            tenant: tenant.into(),
            created_at,
            on_failure: self.on_failure,
            steps,
        }
    }
}

/// The job ids a sum's `@<job id>` terms refer to, in order (other terms: `None`).
pub fn result_refs(terms: &[String]) -> Vec<Option<JobId>> {
    terms
        .iter()
        .map(|t| t.strip_prefix(RESULT_REF).and_then(|id| id.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<WorkflowRequest, ValidationError> {
        WorkflowRequest::from_json(&v, &Limits::default())
    }

    fn names(r: &WorkflowRequest) -> Vec<&str> {
        r.steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn steps_are_ordered_after_their_dependencies_and_refs_are_dependencies() {
        let r = parse(json!({"steps": [
            {"name": "total", "kind": "sum", "input": [{"result_of": "a"}, {"result_of": "b"}, 7]},
            {"name": "b", "kind": "factorial", "input": 20, "depends_on": ["a"]},
            {"name": "a", "kind": "factorial", "input": 10},
        ]}))
        .expect("valid");
        assert_eq!(names(&r), ["a", "b", "total"]);
        assert_eq!(r.steps[1].depends_on, [0]);
        assert_eq!(r.steps[2].depends_on, [0, 1]);
        match &r.steps[2].request.spec {
            JobSpec::Sum { terms } => assert_eq!(terms, &["@0", "@1", "7"]),
            other => panic!("not a sum: {other:?}"),
        }
        let wf = r.into_record(JobId::new(), "t", 0, OffsetDateTime::now_utc());
        let JobSpec::Sum { terms } = &wf.steps[2].job.spec else {
            panic!("not a sum")
        };
        let refs = result_refs(terms);
        assert_eq!(refs[0], Some(wf.steps[0].job.id));
        assert_eq!(refs[1], Some(wf.steps[1].job.id));
        assert_eq!(refs[2], None);
        assert_eq!(wf.steps[2].job.workflow.as_ref().map(|s| s.step), Some(2));
        assert_eq!(wf.dependents()[0], [1, 2]);
    }

    #[test]
    fn cycles_unknown_names_and_oversize_graphs_are_named() {
        let e = parse(json!({"steps": [
            {"name": "a", "kind": "factorial", "input": 1, "depends_on": ["c"]},
            {"name": "b", "kind": "factorial", "input": 1, "depends_on": ["a"]},
            {"name": "c", "kind": "factorial", "input": 1, "depends_on": ["b"]},
        ]}))
        .expect_err("a cycle");
        assert!(e.field.ends_with(".depends_on"), "{e}");
        assert!(e.message.contains("cycle"), "{e}");
        for name in ["a", "b", "c"] {
            assert!(e.message.contains(name), "{e}");
        }
        let e = parse(json!({"steps": [
            {"name": "a", "kind": "factorial", "input": 1, "depends_on": ["a"]},
        ]}))
        .expect_err("a self-dependency");
        assert!(e.message.contains("cycle"), "{e}");
        let e = parse(json!({"steps": [
            {"name": "a", "kind": "factorial", "input": 1, "depends_on": ["x"]},
        ]}))
        .expect_err("unknown");
        assert_eq!(e.field, "steps[0].depends_on[0]");
        let e = parse(json!({"steps": [
            {"name": "a", "kind": "sum", "input": [{"result_of": "zz"}]},
        ]}))
        .expect_err("unknown ref");
        assert_eq!(e.field, "steps[0].input[0].result_of");
        let e = parse(json!({"steps": [
            {"name": "a", "kind": "factorial", "input": 1},
            {"name": "a", "kind": "factorial", "input": 2},
        ]}))
        .expect_err("duplicate");
        assert_eq!(e.field, "steps[1].name");
        let many: Vec<Value> = (0..=MAX_STEPS)
            .map(|_| json!({"kind": "factorial", "input": 1}))
            .collect();
        let e = parse(json!({ "fan_out": many })).expect_err("too many");
        assert_eq!(e.field, "steps");
        let e = parse(json!({"steps": [
            {"name": "a", "kind": "factorial", "input": -1},
        ]}))
        .expect_err("a bad spec");
        assert_eq!(e.field, "steps[0].input");
        let e = parse(json!({"chain": [{"kind": "factorial", "input": 1, "delay": "5s"}]}))
            .expect_err("delay");
        assert_eq!(e.field, "chain[0].delay");
        let e = parse(json!({"steps": [], "chain": []})).expect_err("two forms");
        assert_eq!(e.field, "steps");
    }

    #[test]
    fn chain_and_fan_out_shorthands() {
        let r = parse(json!({"chain": [
            {"kind": "factorial", "input": 5},
            {"kind": "factorial", "input": 6},
            {"name": "last", "kind": "fibonacci", "input": 7},
        ]}))
        .expect("chain");
        assert_eq!(names(&r), ["step-1", "step-2", "last"]);
        assert_eq!(r.steps[2].depends_on, [1]);
        let r = parse(json!({
            "fan_out": [{"kind": "factorial", "input": 5}, {"kind": "factorial", "input": 6}],
            "fan_in": {"kind": "sum"},
            "on_failure": "continue",
        }))
        .expect("fan");
        assert_eq!(names(&r), ["part-1", "part-2", "fan-in"]);
        assert_eq!(r.on_failure, FailurePolicy::Continue);
        assert_eq!(r.steps[2].depends_on, [0, 1]);
        match &r.steps[2].request.spec {
            JobSpec::Sum { terms } => assert_eq!(terms, &["@0", "@1"]),
            other => panic!("not a sum: {other:?}"),
        }
    }

    #[test]
    fn a_split_factorial_is_its_parts_then_a_combine_of_their_jobs() {
        let r = parse(json!({"factorial": {"input": 1000, "split": 4, "priority": "high"}}))
            .expect("valid");
        assert_eq!(
            names(&r),
            ["part-1", "part-2", "part-3", "part-4", "combine"]
        );
        assert_eq!(r.steps[4].depends_on, [0, 1, 2, 3]);
        assert_eq!(
            r.steps[1].request.spec,
            JobSpec::FactorialPart {
                n: 1000,
                part: 1,
                of: 4
            }
        );
        let wf = r.into_record(JobId::new(), "t", 0, OffsetDateTime::now_utc());
        let parts: Vec<JobId> = wf.steps[..4].iter().map(|s| s.job.id).collect();
        assert_eq!(
            wf.steps[4].job.spec,
            JobSpec::FactorialCombine { n: 1000, parts }
        );
        assert_eq!(wf.steps[4].job.priority, crate::Priority::High);
        for (body, field) in [
            (json!({"factorial": {"input": 1000}}), "factorial.split"),
            (
                json!({"factorial": {"input": 1000, "split": 65}}),
                "factorial.split",
            ),
            (
                json!({"factorial": {"input": 3, "split": 4}}),
                "factorial.split",
            ),
            (
                json!({"factorial": {"input": "x", "split": 4}}),
                "factorial.input",
            ),
            (
                json!({"factorial": {"input": 100, "split": 2}, "chain": []}),
                "steps",
            ),
        ] {
            assert_eq!(parse(body).expect_err("refused").field, field);
        }
    }

    #[test]
    fn gates_count_each_dependency_once() {
        let mut g = StepGate::default();
        assert!(g.mark(0));
        assert!(g.mark(9));
        assert!(!g.mark(9));
        assert_eq!(g.count(), 2);
        for i in 0..1000 {
            g.mark(i);
        }
        assert_eq!(g.count(), 1000);
    }

    #[test]
    fn status_is_derived_from_the_steps() {
        let r = parse(json!({"steps": [
            {"name": "a", "kind": "factorial", "input": 1},
            {"name": "b", "kind": "factorial", "input": 1, "depends_on": ["a"]},
            {"name": "c", "kind": "factorial", "input": 1},
        ], "on_failure": "continue"}))
        .expect("valid");
        let wf = r.into_record(JobId::new(), "t", 0, OffsetDateTime::now_utc());
        let (s, steps, _) = derive(&wf, None, &[None, None, None]);
        assert_eq!(s, WorkflowStatus::Pending);
        assert_eq!(steps, [StepStatus::Waiting; 3]);
        let (s, _, p) = derive(
            &wf,
            None,
            &[
                Some((JobStatus::Done, 1.0)),
                None,
                Some((JobStatus::Running, 0.5)),
            ],
        );
        assert_eq!(s, WorkflowStatus::Running);
        assert!((p - 0.5).abs() < 1e-9);
        let (s, steps, _) = derive(
            &wf,
            None,
            &[
                Some((JobStatus::Failed, 0.0)),
                None,
                Some((JobStatus::Done, 1.0)),
            ],
        );
        assert_eq!(steps[1], StepStatus::Skipped);
        assert_eq!(s, WorkflowStatus::Failed);
        let done = Some((JobStatus::Done, 1.0));
        assert_eq!(
            derive(&wf, None, &[done, done, done]).0,
            WorkflowStatus::Done
        );
        let halt = Halt {
            status: WorkflowStatus::Cancelled,
            step: None,
            at: OffsetDateTime::now_utc(),
        };
        let (s, steps, _) = derive(&wf, Some(&halt), &[done, None, None]);
        assert_eq!(s, WorkflowStatus::Cancelled);
        assert_eq!(steps[1], StepStatus::Skipped);
    }
}
