//! Workflows: `POST /v1/workflows` (a DAG of job steps), `GET /v1/workflows/{id}`
//! (status and every step's, `?wait=` long-poll), `GET /v1/workflows/{id}/events`
//! (SSE: the status on every change), `DELETE /v1/workflows/{id}` (cancel the whole).
//!
//! The gateway validates and stores the workflow, then starts the steps without
//! dependencies; workers start the rest as dependencies finish
//! (`natsx::workflows::advance`). A reader derives the status from the steps' job
//! records (`proto::workflow::derive`), so no process owns a workflow.

use super::jobs::parse_id;
use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use jetmill_natsx::workflows;
use jetmill_proto::{
    now_ms, FailurePolicy, Halt, JobId, JobKind, JobStatus, StepStatus, WorkflowRecord,
    WorkflowRequest, WorkflowStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;
use time::OffsetDateTime;

/// A root step with no record this long after the workflow was stored was never
/// started (its gateway died in between): whoever reads the workflow starts it.
const ROOT_REPAIR_AFTER: Duration = Duration::from_secs(10);

/// Answer to `POST /v1/workflows`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowSubmitted {
    /// The workflow id (UUIDv7).
    pub id: JobId,
    /// `GET` it for the status; add `?wait=30s` to wait for the end.
    pub status_url: String,
    /// `GET` it for live status (server-sent events).
    pub events_url: String,
    /// Each step's name and job id, in the order they can run.
    pub steps: Vec<StepSubmitted>,
}

/// A step of a submitted workflow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepSubmitted {
    pub name: String,
    /// The step's job (`GET /v1/jobs/{job_id}` once it started).
    pub job_id: JobId,
}

/// Answer to `GET /v1/workflows/{id}` (and `DELETE`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowView {
    pub id: JobId,
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub status: WorkflowStatus,
    pub on_failure: FailurePolicy,
    /// Fraction done over all steps, 0 to 1.
    pub progress: f64,
    /// Steps by status.
    pub counts: BTreeMap<String, usize>,
    /// Why it stopped early (a failed step under fail-fast, or a cancel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<HaltView>,
    /// Every step, dependencies first.
    pub steps: Vec<StepView>,
    /// `DELETE` only: running or queued steps this request cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_now: Option<usize>,
}

/// Why a workflow stopped early.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HaltView {
    /// `failed` or `cancelled`.
    pub status: WorkflowStatus,
    /// The step whose failure stopped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One step's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub name: String,
    pub job_id: JobId,
    pub kind: JobKind,
    pub depends_on: Vec<String>,
    pub status: StepStatus,
    /// Fraction done, 0 to 1.
    pub progress: f64,
}

/// Query of `GET /v1/workflows/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct WaitParams {
    /// Long-poll: wait up to this long (`30s`, `500ms`, `2m`, or seconds) for the end.
    pub wait: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/workflows",
    tag = "workflows",
    request_body(content = super::openapi::WorkflowBody, description = "Steps (a DAG), or the chain / fan_out + fan_in / factorial shorthands", content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit return the first workflow (1-255 characters, kept 48 h)"),
    ),
    responses(
        (status = 202, description = "Stored; the steps without dependencies are queued", body = WorkflowSubmitted),
        (status = 200, description = "A repeated Idempotency-Key: the first workflow", body = WorkflowSubmitted),
        (status = 409, description = "The first request with this Idempotency-Key is still being processed, or its workflow finished and expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cycle, an unknown or repeated step name, a bad step spec or too many steps (`field` names the step), or an Idempotency-Key reused for another request", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/workflows`: validate, store, queue the root steps, 202.
pub async fn submit(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, HeaderMap, Json<WorkflowSubmitted>), ApiError> {
    let idempotency_key = crate::idempotency::key_from(&headers)?;
    let body = super::jobs::body_of(body)?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let request = WorkflowRequest::from_json(&json, state.limits())?;
    let mut id = JobId::new();
    let jet = state.jet();
    let mut owned = None;
    if let Some(key) = &idempotency_key {
        use crate::idempotency::{claim_request, retake, RequestClaim};
        let fingerprint = {
            use sha2::{Digest, Sha256};
            format!(
                "{:x}",
                Sha256::digest(format!("workflow\n{json}").as_bytes())
            )
        };
        match claim_request(&jet.idempotency, &caller.tenant, key, id, fingerprint).await? {
            RequestClaim::New(o) => owned = Some(o),
            RequestClaim::Replay {
                id: first,
                revision,
                stale,
            } => {
                if let Some(wf) = workflows::get(jet, &caller.tenant, &first).await? {
                    let jobs = workflows::step_jobs(jet, &wf).await?;
                    if workflows::expired(jet, &wf, &jobs) {
                        return Err(ApiError::Conflict(format!(
                            "the workflow {first} this Idempotency-Key created is gone: it \
                             finished and its steps' retention passed; send a new \
                             Idempotency-Key to run it again"
                        )));
                    }
                    // Its roots may not all have started if the first request died
                    // (but a root that finished and expired must not run again).
                    for (i, _) in wf.roots() {
                        if workflows::may_be_unstarted(jet, &wf, i) {
                            workflows::start(jet, &wf, i).await?;
                        }
                    }
                    return Ok((StatusCode::OK, location(&first), Json(submitted(&wf))));
                }
                if !stale {
                    return Err(ApiError::Conflict(
                        "the first request with this Idempotency-Key is still being processed; retry shortly".into(),
                    ));
                }
                // The first request died before storing its workflow: store it now,
                // under the id its claim names.
                owned = retake(&jet.idempotency, &caller.tenant, key, revision).await?;
                if owned.is_none() {
                    return Err(ApiError::Conflict(
                        "another request with this Idempotency-Key is being processed; retry shortly".into(),
                    ));
                }
                id = first;
            }
        }
    }
    let wf = request.into_record(id, &caller.tenant, now_ms(), OffsetDateTime::now_utc());
    match workflows::create(jet, &wf).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "workflow id {id} exists already"
            )))
        }
        Err(e) => {
            if let Some(owned) = &owned {
                crate::idempotency::release(&jet.idempotency, owned).await;
            }
            return Err(e.into());
        }
    }
    workflows::start_roots(jet, &wf).await?;
    tracing::info!(workflow = %id, steps = wf.steps.len(), "workflow submitted");
    Ok((StatusCode::ACCEPTED, location(&id), Json(submitted(&wf))))
}

/// `Location: /v1/workflows/{id}`.
fn location(id: &JobId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/workflows/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    headers
}

/// The answer to a submit of `wf` (and to its replays).
fn submitted(wf: &WorkflowRecord) -> WorkflowSubmitted {
    let id = wf.id;
    let status_url = format!("/v1/workflows/{id}");
    WorkflowSubmitted {
        id,
        events_url: format!("{status_url}/events"),
        status_url,
        steps: wf
            .steps
            .iter()
            .map(|s| StepSubmitted {
                name: s.name.clone(),
                job_id: s.job.id,
            })
            .collect(),
    }
}

/// The caller's workflow `id`; another tenant's is a 404.
async fn load(state: &AppState, caller: &Principal, id: &str) -> Result<WorkflowRecord, ApiError> {
    let id = parse_id(id).map_err(|_| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("id".into()),
        message: format!(
            "{id:?} is not a workflow id (expected the UUID POST /v1/workflows returned)"
        ),
    })?;
    workflows::get(state.jet(), &caller.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workflow {id}")))
}

/// What a reader knows of a workflow now.
struct Snapshot {
    halt: Option<Halt>,
    /// Each step's job (status, progress, record revision), `None` before it started.
    jobs: Vec<Option<(JobStatus, f64, u64)>>,
}

impl Snapshot {
    async fn read(state: &AppState, wf: &WorkflowRecord) -> Result<Snapshot, ApiError> {
        let halt = workflows::halt(state.jet(), &wf.tenant, &wf.id).await?;
        let jobs = workflows::step_jobs(state.jet(), wf).await?;
        let snap = Snapshot { halt, jobs };
        if workflows::expired(state.jet(), wf, &snap.jobs) {
            // Gone from GET as its steps' jobs are (their own retention).
            return Err(ApiError::NotFound(format!(
                "no workflow {} (it finished and its steps' retention passed)",
                wf.id
            )));
        }
        snap.repair(state, wf).await;
        Ok(snap)
    }

    /// Start root steps a dead gateway stored but never started (best effort), while a
    /// missing record still means that ([`workflows::may_be_unstarted`]).
    async fn repair(&self, state: &AppState, wf: &WorkflowRecord) {
        let old = OffsetDateTime::now_utc() - wf.created_at >= ROOT_REPAIR_AFTER;
        if !old || self.halt.is_some() {
            return;
        }
        for (i, _) in wf.roots() {
            if self.jobs.get(i as usize).is_some_and(Option::is_none)
                && workflows::may_be_unstarted(state.jet(), wf, i)
            {
                if let Err(e) = workflows::start(state.jet(), wf, i).await {
                    tracing::warn!(workflow = %wf.id, error = %e, "cannot start a root step left unstarted");
                }
            }
        }
    }

    fn view(&self, wf: &WorkflowRecord) -> WorkflowView {
        let jobs: Vec<Option<(JobStatus, f64)>> = self
            .jobs
            .iter()
            .map(|j| j.map(|(s, p, _)| (s, p)))
            .collect();
        let (status, steps, progress) =
            jetmill_proto::workflow::derive(wf, self.halt.as_ref(), &jobs);
        let mut counts = BTreeMap::new();
        for s in &steps {
            *counts.entry(step_status_name(*s).to_string()).or_insert(0) += 1;
        }
        WorkflowView {
            id: wf.id,
            tenant: wf.tenant.clone(),
            created_at: wf.created_at,
            status,
            on_failure: wf.on_failure,
            progress,
            counts,
            halted: self.halt.as_ref().map(|h| HaltView {
                status: h.status,
                step: h.step.clone(),
                at: h.at,
            }),
            steps: wf
                .steps
                .iter()
                .zip(steps)
                .zip(&jobs)
                .map(|((def, status), job)| StepView {
                    name: def.name.clone(),
                    job_id: def.job.id,
                    kind: def.job.spec.kind(),
                    depends_on: def
                        .depends_on
                        .iter()
                        .filter_map(|&d| wf.steps.get(d as usize).map(|s| s.name.clone()))
                        .collect(),
                    status,
                    progress: match (status, job) {
                        (StepStatus::Done, _) => 1.0,
                        (_, Some((_, p))) => *p,
                        _ => 0.0,
                    },
                })
                .collect(),
            cancelled_now: None,
        }
    }

    /// Apply a watched record write to step `i` if it is newer than what was read.
    fn apply(&mut self, i: usize, status: JobStatus, progress: f64, revision: u64) -> bool {
        let Some(slot) = self.jobs.get_mut(i) else {
            return false;
        };
        if slot.is_some_and(|(_, _, rev)| rev >= revision) {
            return false;
        }
        *slot = Some((status, progress, revision));
        true
    }
}

fn step_status_name(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Waiting => "waiting",
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Done => "done",
        StepStatus::Failed => "failed",
        StepStatus::Cancelled => "cancelled",
        StepStatus::Skipped => "skipped",
    }
}

/// Only `status` and `progress` of a record (it may carry a large inline result).
#[derive(Deserialize)]
struct StatusOnly {
    status: JobStatus,
    #[serde(default)]
    progress: f64,
}

/// Follows a workflow: its steps' record writes, and its halt (read again whenever a
/// step changes, and on a quiet second).
struct Follower {
    wf: WorkflowRecord,
    steps: std::collections::HashMap<JobId, usize>,
    changes: jetmill_natsx::Watch<StatusOnly>,
    snap: Snapshot,
}

impl Follower {
    async fn start(state: &AppState, wf: WorkflowRecord) -> Result<Follower, ApiError> {
        // Watch first, then read: no change in between is missed.
        let changes = state
            .jet()
            .records
            .watch_tenant::<StatusOnly>(&wf.tenant)
            .await?;
        let snap = Snapshot::read(state, &wf).await?;
        let steps = wf
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.job.id, i))
            .collect();
        Ok(Follower {
            wf,
            steps,
            changes,
            snap,
        })
    }

    /// Wait until the view changes or `deadline`; `false` at the deadline or when the
    /// watch ended.
    async fn next_change(&mut self, state: &AppState, deadline: tokio::time::Instant) -> bool {
        loop {
            let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            match tokio::time::timeout_at(tick, self.changes.next()).await {
                Ok(None) => return false,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "workflow watch failed");
                    return false;
                }
                Ok(Some(Ok(change))) => {
                    let Some(&i) = self.steps.get(&change.id) else {
                        continue;
                    };
                    if self.snap.apply(
                        i,
                        change.record.status,
                        change.record.progress,
                        change.revision,
                    ) {
                        if change.record.status.is_terminal() {
                            self.reread_halt(state).await;
                        }
                        return true;
                    }
                }
                Err(_) if tokio::time::Instant::now() >= deadline => return false,
                Err(_) => {
                    // A quiet second: a cancel or a fail-fast halt may have come.
                    if self.reread_halt(state).await {
                        return true;
                    }
                }
            }
        }
    }

    /// Read the halt again; `true` if it appeared.
    async fn reread_halt(&mut self, state: &AppState) -> bool {
        if self.snap.halt.is_some() {
            return false;
        }
        match workflows::halt(state.jet(), &self.wf.tenant, &self.wf.id).await {
            Ok(Some(h)) => {
                self.snap.halt = Some(h);
                true
            }
            _ => false,
        }
    }

    fn view(&self) -> WorkflowView {
        self.snap.view(&self.wf)
    }
}

/// Whether nothing of the workflow will change any more.
fn settled(view: &WorkflowView) -> bool {
    view.status.is_terminal() && view.steps.iter().all(|s| s.status.is_settled())
}

#[utoipa::path(
    get,
    path = "/v1/workflows/{id}",
    tag = "workflows",
    params(
        ("id" = String, Path, description = "Workflow id"),
        ("wait" = Option<String>, Query, description = "Long-poll up to this long for the workflow to end: `30s`, `500ms`, `2m` or seconds"),
    ),
    responses(
        (status = 200, description = "The workflow's status, progress and every step's status", body = WorkflowView),
        (status = 400, description = "Not a workflow id, or a bad `wait`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow for this caller, or it finished and its steps' retention passed", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/workflows/{id}`: the derived status; with `?wait=` once it ended (every
/// step settled) or the wait is over (capped at `--max-wait-secs`).
pub async fn get_one(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Json<WorkflowView>, ApiError> {
    let Query(params) = params.map_err(|e| super::live::bad_wait(e.body_text()))?;
    let wait = super::live::wait_param(&state, params.wait.as_deref())?;
    let wf = load(&state, &caller, &id).await?;
    if wait.is_zero() {
        return Ok(Json(Snapshot::read(&state, &wf).await?.view(&wf)));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut follower = Follower::start(&state, wf).await?;
    while !settled(&follower.view()) {
        if !follower.next_change(&state, deadline).await {
            break;
        }
    }
    Ok(Json(follower.view()))
}

#[utoipa::path(
    get,
    path = "/v1/workflows/{id}/events",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    responses(
        (status = 200, description = "Server-sent events: a `workflow` event (the status, as `GET` answers it) at once and on every change; the stream ends when the workflow has ended", content_type = "text/event-stream", body = String),
        (status = 400, description = "Not a workflow id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/workflows/{id}/events`: the status now and after every change, as SSE.
pub async fn events(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let wf = load(&state, &caller, &id).await?;
    let follower = Follower::start(&state, wf).await?;
    let max_wait = state.options().max_wait;
    let deadline = tokio::time::Instant::now() + max_wait;
    let stream = futures::stream::unfold(
        (Some(follower), state, true),
        move |(follower, state, first)| async move {
            let mut follower = follower?;
            if !first && !follower.next_change(&state, deadline).await {
                return None;
            }
            let view = follower.view();
            let event = Event::default()
                .event("workflow")
                .json_data(&view)
                .unwrap_or_else(|_| Event::default().event("workflow"));
            let next = if settled(&view) { None } else { Some(follower) };
            Some((Ok(event), (next, state, false)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[utoipa::path(
    delete,
    path = "/v1/workflows/{id}",
    tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    responses(
        (status = 200, description = "Cancelled: running steps stopped, the rest never start", body = WorkflowView),
        (status = 400, description = "Not a workflow id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "It had ended already (done, failed or cancelled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `DELETE /v1/workflows/{id}`: halt it as cancelled and cancel its running steps.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    let wf = load(&state, &caller, &id).await?;
    let before = Snapshot::read(&state, &wf).await?.view(&wf);
    if before.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "workflow {} is already {}; only a pending or running workflow can be cancelled",
            wf.id,
            serde_json::to_value(before.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )));
    }
    let cancelled = workflows::cancel(state.jet(), &wf).await?;
    tracing::info!(workflow = %wf.id, cancelled = ?cancelled, "workflow cancelled");
    let mut view = Snapshot::read(&state, &wf).await?.view(&wf);
    view.cancelled_now = Some(cancelled.unwrap_or(0));
    Ok(Json(view))
}
