//! `GET /v1/workers`, `/v1/activity` and `/v1/limits`: read-only views of the system.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use jetmill_natsx::{control, NatsxError};
use jetmill_proto::WorkerReport;
use serde::Serialize;

/// Answer of `GET /v1/workers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkersView {
    /// Every live worker's latest report, by id (a stopped worker's report expires).
    pub workers: Vec<WorkerReport>,
    /// Messages in the `JOBS` stream: jobs queued, in flight, or parked.
    pub queue_depth: u64,
}

#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "workers",
    responses(
        (status = 200, description = "Live workers and the queue depth", body = WorkersView),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/workers`: every live worker's report and the `JOBS` stream's message
/// count. Any authenticated caller may read it (it names hosts, not jobs).
pub async fn list(
    State(state): State<AppState>,
    _caller: Principal,
) -> Result<Json<WorkersView>, ApiError> {
    let jet = state.jet();
    let workers = control::workers(jet).await?;
    let info = jet
        .jobs
        .get_info()
        .await
        .map_err(NatsxError::js("read JOBS stream info"))?;
    Ok(Json(WorkersView {
        workers,
        queue_depth: info.state.messages,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/activity",
    tag = "workers",
    responses(
        (status = 200, description = "The last minutes of queue depth, jobs finished per second and live workers, sampled by this gateway", body = crate::activity::ActivityView),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/activity`: what the web page charts. Any authenticated caller may read it
/// (system-wide totals, like `GET /v1/workers`); answered from memory.
pub async fn activity(
    State(state): State<AppState>,
    _caller: Principal,
) -> Json<crate::activity::ActivityView> {
    Json(state.activity().view())
}

/// Answer of `GET /v1/limits`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitsView {
    /// The run limits that apply to the caller's jobs (every limit, for an admin), with
    /// what each has in use now. Operators set them with `jetmill limits set`.
    pub limits: Vec<jetmill_proto::LimitView>,
}

#[utoipa::path(
    get,
    path = "/v1/limits",
    tag = "workers",
    responses(
        (status = 200, description = "The cluster-wide run limits and what they have in use", body = LimitsView),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/limits`: the run limits (at most N running, at most R starts per period,
/// per kind and/or tenant) and their counts. A caller sees the limits its own jobs
/// count against, with its own tenant's counts under a per-tenant (`*`) limit; an
/// admin sees every limit and every tenant's counts.
pub async fn limits(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<Json<LimitsView>, ApiError> {
    let config = state.runtime_config();
    let tenant = (!caller.admin).then_some(caller.tenant.as_str());
    let limits = jetmill_natsx::limits::views(state.jet(), &config.limits, tenant).await?;
    Ok(Json(LimitsView { limits }))
}
