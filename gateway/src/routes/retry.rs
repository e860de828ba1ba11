//! Dead letters: `POST /v1/jobs/{id}/retry`, and in bulk `POST /v1/dead-letters/retry`
//! and `POST /v1/dead-letters/purge`. A dead letter is a `failed` job; they are listed
//! with `GET /v1/jobs?status=failed`, each with its error trail (`failures`).
//!
//! A retry publishes again the job message its worker kept in the record when it
//! failed, with `Jetmill-Retry: <n>` (n = the record's `retries` + 1) and `Nats-Msg-Id`
//! `<id>.retry.<n>`: **that PubAck is the commit**, as for a submit, and the dedup id
//! makes two retries racing for the same `n` one message. Then `accepted` (event id
//! `<id>.accepted.<attempts>`, new for every retry) and the record reopened by
//! compare-and-set (`failed -> pending`, a fresh attempt budget, `JobRecord::reopen`).
//! A gateway that dies after the PubAck leaves the record `failed`: the worker that
//! takes the message sees the header and reopens the record itself, `accepted` first,
//! so no retry a client was told about is lost.

use super::jobs::{load, publish_event};
use crate::auth::Principal;
use crate::error::queue_full;
use crate::{ApiError, AppState};
use axum::extract::{rejection::JsonRejection, Path, State};
use axum::http::StatusCode;
use axum::Json;
use jetmill_natsx::{jobs, Update};
use jetmill_proto::{EventType, JobMessage, JobRecord, JobStatus};
use serde::{Deserialize, Serialize};

/// The most ids one bulk request takes.
pub const MAX_BULK: usize = 1000;

/// Which dead letters a bulk request is about.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterIds {
    /// Job ids, 1 to 1000 (`jetmill dlq retry --all` pages through
    /// `GET /v1/jobs?status=failed` and sends them in such chunks).
    #[schema(min_items = 1, max_items = 1000)]
    pub ids: Vec<String>,
}

/// What a bulk request did to each job, in request order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterResults {
    /// How many jobs it retried (or purged).
    pub applied: usize,
    /// One entry per requested id.
    pub items: Vec<DeadLetterResult>,
}

/// What a bulk request did to one job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterResult {
    /// The id as given.
    pub id: String,
    /// The HTTP status a single request would have got: 202 retried, 200 purged, 400
    /// not a job id, 404 no such job, 409 not a dead letter, 503 NATS unavailable.
    pub status: u16,
    /// Why it was not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry",
    tag = "dead letters",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Queued again; the reopened record (`pending`, `retries` counted)", body = JobRecord),
        (status = 400, description = "Not a job id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a dead letter (only `failed` jobs are retried)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "The queue is full", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable, or the kind is disabled", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 507, description = "The JetStream store is full", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// Run a failed job again, with a fresh attempt budget; 202 with the reopened record.
pub async fn retry_one(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobRecord>), ApiError> {
    let record = load(&state, &caller, &id).await?;
    let reopened = retry(&state, record).await?;
    Ok((StatusCode::ACCEPTED, Json(reopened)))
}

#[utoipa::path(
    post,
    path = "/v1/dead-letters/retry",
    tag = "dead letters",
    request_body = DeadLetterIds,
    responses(
        (status = 200, description = "Each job's outcome (a job that is not a dead letter is its own 409 item, not an error of the request)", body = DeadLetterResults),
        (status = 400, description = "Not JSON, or no ids / more than 1000", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// Retry many dead letters; one answer per id.
pub async fn retry_many(
    State(state): State<AppState>,
    caller: Principal,
    body: Result<Json<DeadLetterIds>, JsonRejection>,
) -> Result<Json<DeadLetterResults>, ApiError> {
    let ids = ids_of(body)?;
    let results = for_each(&ids, |id| {
        let (state, caller) = (&state, &caller);
        async move {
            let record = load(state, caller, &id).await?;
            retry(state, record).await.map(|_| StatusCode::ACCEPTED)
        }
    })
    .await;
    Ok(Json(results))
}

#[utoipa::path(
    post,
    path = "/v1/dead-letters/purge",
    tag = "dead letters",
    request_body = DeadLetterIds,
    responses(
        (status = 200, description = "Each job's outcome: 200 when its record was deleted (only `failed` records are)", body = DeadLetterResults),
        (status = 400, description = "Not JSON, or no ids / more than 1000", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// Delete dead letters' records for good; one answer per id.
pub async fn purge_many(
    State(state): State<AppState>,
    caller: Principal,
    body: Result<Json<DeadLetterIds>, JsonRejection>,
) -> Result<Json<DeadLetterResults>, ApiError> {
    let ids = ids_of(body)?;
    let results = for_each(&ids, |id| {
        let (state, caller) = (&state, &caller);
        async move {
            let record = load(state, caller, &id).await?;
            purge(state, &record).await.map(|_| StatusCode::OK)
        }
    })
    .await;
    Ok(Json(results))
}

/// The ids of a bulk request, or the 400 that says what is wrong with it.
fn ids_of(body: Result<Json<DeadLetterIds>, JsonRejection>) -> Result<Vec<String>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("body".into()),
        message: format!(
            "{}; expected {{\"ids\": [\"<job id>\", ...]}}",
            e.body_text()
        ),
    })?;
    if body.ids.is_empty() || body.ids.len() > MAX_BULK {
        return Err(ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            field: Some("ids".into()),
            message: format!(
                "{} ids given; send 1 to {MAX_BULK} per request",
                body.ids.len()
            ),
        });
    }
    Ok(body.ids)
}

/// Apply `op` to every id, 32 at a time, keeping request order in the answer.
async fn for_each<F, Fut>(ids: &[String], op: F) -> DeadLetterResults
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<StatusCode, ApiError>>,
{
    use futures::StreamExt;
    let items: Vec<DeadLetterResult> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let done = op(id.clone());
            async move {
                match done.await {
                    Ok(status) => DeadLetterResult {
                        id,
                        status: status.as_u16(),
                        error: None,
                    },
                    Err(e) => DeadLetterResult {
                        id,
                        status: e.status().as_u16(),
                        error: Some(e.problem().detail),
                    },
                }
            }
        })
        .buffered(32)
        .collect()
        .await;
    DeadLetterResults {
        applied: items.iter().filter(|i| i.status < 300).count(),
        items,
    }
}

/// Retry `record` (the caller may see it): publish its kept message as retry
/// `retries + 1`, then `accepted`, then reopen the record. The reopened record.
pub(crate) async fn retry(state: &AppState, record: JobRecord) -> Result<JobRecord, ApiError> {
    let id = record.id;
    if record.status != JobStatus::Failed {
        return Err(ApiError::Conflict(format!(
            "job {id} is {}; only failed jobs (dead letters) can be retried",
            record.status.as_str()
        )));
    }
    let msg = kept_message(&record)?;
    let kind = msg.spec.kind();
    if !state.runtime_config().kind_enabled(kind) {
        return Err(ApiError::KindDisabled {
            kind,
            retry_after_secs: state.options().disabled_retry_after_secs,
        });
    }
    let n = record.retries + 1;
    let jet = state.jet();
    jobs::publish_retry(&jet.js, &msg, n)
        .await
        .map_err(|e| queue_full(e, state.options().busy_retry_after_secs))?;
    // Committed. The event before the record, as for a submit: a worker that finds the
    // record reopened knows `accepted` is stored.
    publish_event(jet, &msg, EventType::Accepted, record.attempts).await;
    let reopened = jet
        .records
        .update(&record.tenant, &id, None, |r| r.reopen(n).is_ok())
        .await;
    tracing::info!(job_id = %id, retry = n, "dead letter retried");
    match reopened {
        Ok(Update::Applied(r) | Update::Unchanged(r)) => Ok(r),
        // Purged meanwhile: the worker recreates it from the message.
        Ok(Update::Missing) => Ok(record),
        Err(e) => {
            // Committed all the same: the worker reopens it when it takes the message.
            tracing::warn!(job_id = %id, error = %e, "retry queued; the worker will reopen the record");
            Ok(record)
        }
    }
}

/// The job message a failed record keeps for its retry.
fn kept_message(record: &JobRecord) -> Result<JobMessage, ApiError> {
    let kept = record.message.as_deref().ok_or_else(|| {
        ApiError::Conflict(format!(
            "job {} has no stored job message to retry (it failed on an older worker); submit it again",
            record.id
        ))
    })?;
    hex::decode(kept)
        .ok()
        .and_then(|bytes| JobMessage::decode(&bytes).ok())
        .filter(|m| m.id == record.id)
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "job {}'s stored job message is unreadable; submit it again",
                record.id
            ))
        })
}

/// Delete a dead letter's record (only if it is still `failed`).
async fn purge(state: &AppState, record: &JobRecord) -> Result<(), ApiError> {
    if record.status != JobStatus::Failed {
        return Err(ApiError::Conflict(format!(
            "job {} is {}; only failed jobs (dead letters) are purged",
            record.id,
            record.status.as_str()
        )));
    }
    let deleted = state
        .jet()
        .records
        .delete_if(&record.tenant, &record.id, |r| {
            r.status == JobStatus::Failed
        })
        .await?;
    if deleted {
        tracing::info!(job_id = %record.id, "dead letter purged");
        Ok(())
    } else {
        Err(ApiError::Conflict(format!(
            "job {} changed meanwhile (retried?); not purged",
            record.id
        )))
    }
}
