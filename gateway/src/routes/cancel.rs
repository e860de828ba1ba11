//! `DELETE /v1/jobs/{id}`: cancel a queued or running job.
//!
//! The record moves to `cancelled` by compare-and-set (so it cannot race a
//! worker's `done`), then a core NATS broadcast tells the worker running it to
//! raise the kernel's cancel flag at once; workers also notice the record on
//! their next progress check-in, so a missed broadcast costs at most a second.
//! A queued job is dropped when a worker fetches it and finds it cancelled. A
//! scheduled (delayed) job's schedule is purged from `SCHEDULES` first, so it never fires.

use super::jobs::load;
use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::Json;
use jetmill_natsx::{jobs, Update};
use jetmill_proto::{JobId, JobRecord};

#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled; the record", body = JobRecord),
        (status = 400, description = "Not a job id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// Cancel the job; 200 with the cancelled record, 409 if it already finished.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    // Another tenant's job is a 404 here too (an admin may cancel any job).
    let found = load(&state, &caller, &id).await?;
    let id = found.id;
    let record = match cancel_job(&state, &found.tenant, &id).await? {
        Update::Missing => return Err(ApiError::NotFound(format!("no job {id}"))),
        Update::Unchanged(r) => {
            return Err(ApiError::Conflict(format!(
                "job {id} is already {}; only pending, scheduled or running jobs can be cancelled",
                r.status.as_str()
            )))
        }
        Update::Applied(r) => r,
    };
    Ok(Json(record))
}

/// Cancel job `id` of `tenant` (see `natsx::jobs::cancel`).
pub(crate) async fn cancel_job(
    state: &AppState,
    tenant: &str,
    id: &JobId,
) -> Result<Update, ApiError> {
    Ok(jobs::cancel(state.jet(), tenant, id).await?)
}
