//! Live progress: `GET /v1/jobs/{id}?wait=30s` (long-poll) and
//! `GET /v1/jobs/{id}/events` (Server-Sent Events from the `EVENTS` stream).
//!
//! Both follow NATS, not the gateway's own state: the long-poll watches the job's KV
//! record and the SSE feeds come from `EVENTS` through the gateway's one shared
//! subscription ([`crate::feed`]), so any gateway instance can serve any client. An SSE
//! event's `id` is its `EVENTS` stream sequence, so a client reconnecting with
//! `Last-Event-ID` resumes right after the last one it saw.

use super::jobs::load;
use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use jetmill_proto::JobRecord;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// Query of `GET /v1/jobs/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct GetParams {
    /// Long-poll: wait up to this long (`30s`, `500ms`, `2m`, or seconds) for the job to end.
    pub wait: Option<String>,
}

/// A `?wait=` parameter (absent: no wait), cut to the gateway's `--max-wait-secs`.
pub(crate) fn wait_param(state: &AppState, wait: Option<&str>) -> Result<Duration, ApiError> {
    let wait = match wait {
        None => Duration::ZERO,
        Some(w) => jetmill_proto::parse_duration(w).map_err(|e| bad_wait(e.to_string()))?,
    };
    Ok(wait.min(state.options().max_wait))
}

pub(crate) fn bad_wait(message: String) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("wait".into()),
        message,
    }
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "Job id"),
        ("wait" = Option<String>, Query, description = "Long-poll up to this long for the job to end: `30s`, `500ms`, `2m` or seconds"),
    ),
    responses(
        (status = 200, description = "The job record", body = JobRecord),
        (status = 400, description = "Not a job id, or a bad `wait`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/jobs/{id}`: the job record; with `?wait=` once it ended or the wait is over
/// (capped at the gateway's `--max-wait-secs`), whichever comes first.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Result<Json<JobRecord>, ApiError> {
    let Query(params) = params.map_err(|e| bad_wait(e.body_text()))?;
    let wait = wait_param(&state, params.wait.as_deref())?;
    let record = load(&state, &caller, &id).await?;
    if wait.is_zero() || record.status.is_terminal() {
        return Ok(Json(record));
    }
    Ok(Json(wait_until_ended(&state, record, wait).await?))
}

/// Follow the record in KV until it is terminal or `wait` has passed; the latest record.
async fn wait_until_ended(
    state: &AppState,
    record: JobRecord,
    wait: Duration,
) -> Result<JobRecord, ApiError> {
    let records = &state.jet().records;
    // Watch first, then re-read: a change between the two is then never missed.
    let mut changes = records
        .watch_one::<JobRecord>(&record.tenant, &record.id)
        .await?;
    let mut latest = match records.get(&record.tenant, &record.id).await? {
        Some((r, _)) => r,
        None => record,
    };
    let deadline = tokio::time::Instant::now() + wait;
    while !latest.status.is_terminal() {
        let next = match tokio::time::timeout_at(deadline, changes.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(next)) => next,
        };
        latest = next?.record;
    }
    Ok(latest)
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "Job id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events; each `data` is a job event", content_type = "text/event-stream", body = String),
        (status = 400, description = "Not a job id, or a bad Last-Event-ID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/jobs/{id}/events`: the job's lifecycle as Server-Sent Events.
///
/// Each event is `event: <type>` (accepted, started, progress, retried, done, failed,
/// cancelled), `id: <EVENTS stream sequence>`, `data:` the event JSON plus `status` for
/// state changes and `result_url` on `done`. The stream ends after the final event.
/// Served from the gateway's shared fan-out ([`crate::feed`]), not a consumer per client.
pub async fn events(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let record = load(&state, &caller, &id).await?;
    let resume_after = last_event_id(&headers)?;
    let feed = state.feed();
    // Already over: send what the stream holds now, even if its final event is missing.
    let finished_head = match record.status.is_terminal() {
        true => Some(feed.stream_head().await?),
        false => None,
    };
    let follower = feed
        .follow_job(
            record.id.to_string(),
            resume_after.unwrap_or(0),
            finished_head,
        )
        .await?;
    Ok(Sse::new(follower.into_stream()).keep_alive(keep_alive()))
}

fn keep_alive() -> KeepAlive {
    KeepAlive::new().interval(Duration::from_secs(15))
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "jobs",
    responses(
        (status = 200, description = "Server-Sent Events: every lifecycle event of the caller's jobs from now on (or after `Last-Event-ID`)", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad Last-Event-ID", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/events`: one live feed of every event of the caller's jobs (all tenants'
/// for an admin), so a page with many jobs needs one connection, not one per job.
/// Starts at new events, or right after `Last-Event-ID`; it does not end by itself.
pub async fn feed(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume_after = last_event_id(&headers)?;
    let follower = state
        .feed()
        .follow_all(resume_after, move |tenant| caller.can_see(tenant))
        .await?;
    Ok(Sse::new(follower.into_stream()).keep_alive(keep_alive()))
}

/// The `Last-Event-ID` a reconnecting SSE client sends: the EVENTS sequence it saw last.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            field: Some("Last-Event-ID".into()),
            message: "Last-Event-ID must be the id of an event this stream sent".into(),
        })
}
