//! `GET /v1/workers`: the live workers' reports and the queue depth, read-only.

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
