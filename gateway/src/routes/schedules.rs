//! `/v1/schedules`: recurring schedules (create, list, get, pause, resume, delete).
//!
//! The record (KV `schedules`) is the truth about a schedule; nats-server's message
//! schedule on `SCHEDULES` (`jobs.sched.<id>`) is its clock. A firing becomes a job only
//! if the record exists and is not paused (the worker that moves it checks), so every
//! order of writes here errs on the side of not firing: a new schedule is stored paused,
//! then given its clock, then unpaused; pause writes the record first; delete removes
//! the clock first.

use crate::auth::Principal;
use crate::error::broker_refusal;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use jetmill_natsx::schedules::{self, SetPaused};
use jetmill_proto::{JobId, ScheduleRecord, ScheduleRequest};
use serde::Serialize;
use time::OffsetDateTime;

/// Answer of `GET /v1/schedules`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    /// The caller's schedules, oldest first.
    pub schedules: Vec<ScheduleRecord>,
}

#[utoipa::path(
    post,
    path = "/v1/schedules",
    tag = "schedules",
    request_body(content = super::openapi::ScheduleBody, description = "The schedule"),
    responses(
        (status = 201, description = "Created (`Location` names it)", body = ScheduleRecord),
        (status = 400, description = "Malformed JSON", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field: `cron`, `time_zone`, `paused` or `job.<field>`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 507, description = "JetStream store full", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/schedules`: store the schedule and start its clock (unless `paused`).
pub async fn create(
    State(state): State<AppState>,
    caller: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, HeaderMap, Json<ScheduleRecord>), ApiError> {
    let body = super::jobs::body_of(body)?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let req = ScheduleRequest::from_json(&json, state.limits())?;
    let now = OffsetDateTime::now_utc();
    let record = ScheduleRecord {
        id: JobId::new(),
        tenant: caller.tenant.clone(),
        cron: req.cron.clone(),
        time_zone: req.time_zone.clone(),
        job: req.job_json.clone(),
        // Stored paused until its clock is set: a crash in between leaves a paused
        // schedule the user can see and resume, never one that claims to run and does not.
        paused: true,
        created_at: now,
        updated_at: now,
    };
    let jet = state.jet();
    schedules::create(jet, &record).await?;
    let record = if req.paused {
        record
    } else {
        if let Err(e) = start_clock(&state, &record, &req).await {
            let _ = schedules::delete(jet, &record.tenant, &record.id).await;
            return Err(e);
        }
        set_paused(&state, &record.tenant, &record.id, false).await?
    };
    tracing::info!(schedule = %record.id, cron = %record.cron, paused = record.paused, "schedule created");
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/schedules/{}", record.id)) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(record)))
}

#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    responses(
        (status = 200, description = "The caller's schedules", body = ScheduleList),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/schedules`: the caller's schedules, oldest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = schedules::list(state.jet(), &caller.tenant).await?;
    Ok(Json(ScheduleList { schedules }))
}

#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleRecord),
        (status = 400, description = "Not a schedule id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/schedules/{id}`.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<ScheduleRecord>, ApiError> {
    let id = parse_id(&id)?;
    let (record, _) = found(&state, &caller.tenant, &id).await?;
    Ok(Json(record))
}

#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/pause",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "Paused (also when it already was)", body = ScheduleRecord),
        (status = 400, description = "Not a schedule id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/schedules/{id}/pause`: no firing becomes a job from now on.
pub async fn pause(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<ScheduleRecord>, ApiError> {
    let id = parse_id(&id)?;
    found(&state, &caller.tenant, &id).await?;
    // The record first: from this write on, the workers drop its firings.
    let record = set_paused(&state, &caller.tenant, &id, true).await?;
    if let Err(e) = stop_clock(&state, &id).await {
        tracing::warn!(schedule = %id, error = %e, "paused, but its clock could not be removed; its firings are dropped");
    }
    tracing::info!(schedule = %id, "schedule paused");
    Ok(Json(record))
}

#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/resume",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "Running (also when it already was)", body = ScheduleRecord),
        (status = 400, description = "Not a schedule id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/schedules/{id}/resume`: fire again from the next matching time (firings
/// missed while paused are not made up).
pub async fn resume(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<ScheduleRecord>, ApiError> {
    let id = parse_id(&id)?;
    let (record, _) = found(&state, &caller.tenant, &id).await?;
    let req = ScheduleRequest::from_json(
        &serde_json::json!({"cron": record.cron, "time_zone": record.time_zone, "job": record.job}),
        state.limits(),
    )?;
    // The clock first (replacing any), then the record: a crash in between leaves it
    // paused, its firings dropped.
    stop_clock(&state, &id).await?;
    start_clock(&state, &record, &req).await?;
    let record = set_paused(&state, &caller.tenant, &id, false).await?;
    tracing::info!(schedule = %id, "schedule resumed");
    Ok(Json(record))
}

#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "Deleted; the schedule as it was (its jobs stay)", body = ScheduleRecord),
        (status = 400, description = "Not a schedule id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `DELETE /v1/schedules/{id}`: stop and forget the schedule; the jobs it made stay.
pub async fn delete(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<ScheduleRecord>, ApiError> {
    let id = parse_id(&id)?;
    let (record, _) = found(&state, &caller.tenant, &id).await?;
    stop_clock(&state, &id).await?;
    schedules::delete(state.jet(), &caller.tenant, &id).await?;
    tracing::info!(schedule = %id, "schedule deleted");
    Ok(Json(record))
}

fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("id".into()),
        message: format!(
            "{id:?} is not a schedule id (a UUID such as POST /v1/schedules returned)"
        ),
    })
}

async fn found(
    state: &AppState,
    tenant: &str,
    id: &JobId,
) -> Result<(ScheduleRecord, u64), ApiError> {
    schedules::get(state.jet(), tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no schedule {id}")))
}

/// Set `paused` by compare-and-set; a schedule gone meanwhile is a 404, one others
/// keep changing a 409.
async fn set_paused(
    state: &AppState,
    tenant: &str,
    id: &JobId,
    paused: bool,
) -> Result<ScheduleRecord, ApiError> {
    match schedules::set_paused(state.jet(), tenant, id, paused).await? {
        SetPaused::Written(record) => Ok(record),
        SetPaused::Missing => Err(ApiError::NotFound(format!("no schedule {id}"))),
        SetPaused::Contended => Err(ApiError::Conflict(format!(
            "schedule {id} is being changed by others; retry"
        ))),
    }
}

/// Publish the schedule's clock ([`schedules::start_clock`]). The broker's own check of
/// the pattern and the time zone is answered as a 422 on that field.
async fn start_clock(
    state: &AppState,
    record: &ScheduleRecord,
    req: &ScheduleRequest,
) -> Result<(), ApiError> {
    schedules::start_clock(state.jet(), record, req)
        .await
        .map_err(|e| broker_refusal(&e).unwrap_or_else(|| ApiError::from(e)))
}

/// Remove the schedule's clock (nothing to do when there is none).
async fn stop_clock(state: &AppState, id: &JobId) -> Result<(), ApiError> {
    Ok(schedules::stop_clock(state.jet(), id).await?)
}
