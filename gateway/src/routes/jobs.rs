//! `/v1/jobs`: submit, read, and download results.

use crate::auth::Principal;
use crate::error::queue_full;
use crate::{cache, idempotency, ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jetmill_natsx::{events, jobs, results};
use jetmill_proto::{
    now_ms, EventType, JobEvent, JobId, JobMessage, JobRecord, JobRequest, JobStatus,
    ResultLocation,
};
use serde::Serialize;

/// Answer to a successful submit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Submitted {
    pub id: JobId,
    pub status: JobStatus,
    pub status_url: String,
    /// Answered from an identical finished job's result; nothing was queued.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body(content = super::openapi::SubmitBody, description = "The job to run"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit return the first job (1-255 characters, kept 48 h)"),
        ("Cache-Control" = Option<String>, Header, description = "`no-cache` skips the result cache"),
    ),
    responses(
        (status = 202, description = "Queued", body = Submitted),
        (status = 200, description = "A repeated Idempotency-Key, or answered from the result cache (`cached: true`)", body = Submitted),
        (status = 400, description = "Malformed JSON or an unusable Idempotency-Key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "An Idempotency-Key whose job finished and expired (past its retention)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or an Idempotency-Key reused for another request", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Queue full or tenant over its quota (`Retry-After`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 507, description = "JetStream store full (`limit` names it, `Retry-After`)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/jobs`: validate, commit to JetStream (the PubAck is the commit), record, 202.
///
/// With an `Idempotency-Key` a repeat of the same request answers 200 with the job
/// the first one created. An identical computation that already finished answers 200
/// with a new `done` job (`cached: true`) unless the cache is off or the client sent
/// `Cache-Control: no-cache`. A kind the operator disabled is a 503 with `Retry-After`.
pub async fn submit(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, HeaderMap, Json<Submitted>), ApiError> {
    let idempotency_key = idempotency::key_from(&headers)?;
    let body = body_of(body)?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let req = JobRequest::from_json(&json, state.limits())?;
    let msg = JobMessage {
        id: JobId::new(),
        tenant: caller.tenant,
        spec: req.spec,
        priority: req.priority,
        submitted_at_ms: now_ms(),
        max_attempts: req.max_attempts,
        timeout_ms: req.timeout_ms,
        chaos: req.chaos,
        batch: None,
        run_at_ms: req.run_at_ms,
        schedule: None,
        retention_secs: req.retention_secs,
        workflow: None,
    };
    let jet = state.jet();
    let (mut claimed, mut healing) = (None, false);
    let msg = match &idempotency_key {
        None => msg,
        Some(key) => match idempotency::claim(&jet.idempotency, &jet.records, key, &msg).await? {
            idempotency::Claim::Replay(id) => return replay(&state, &msg.tenant, id).await,
            idempotency::Claim::Expired(id) => {
                return Err(ApiError::Conflict(format!(
                    "the job {id} this Idempotency-Key created is gone: it finished and its \
                     retention passed; send a new Idempotency-Key to run it again"
                )))
            }
            idempotency::Claim::New(owned) => {
                claimed = Some(owned);
                msg
            }
            // An earlier request claimed the key and never published: publish its job.
            idempotency::Claim::Heal(stored, owned) => {
                (claimed, healing) = (Some(owned), true);
                *stored
            }
        },
    };
    // From here on a claimed key must be released if certainly no job comes of this
    // request; after a failure that may have published, it stays for a retry to heal.
    let outcome = accept(&state, &headers, &msg).await;
    if let (Err(e), Some(owned)) = (&outcome, &claimed) {
        if e.published_nothing() {
            idempotency::release(&jet.idempotency, owned).await;
        }
    }
    let (status, cached) = outcome?;
    if healing {
        return replay(&state, &msg.tenant, msg.id).await;
    }
    let status_url = format!("/v1/jobs/{}", msg.id);
    Ok((
        if cached {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        location(&status_url),
        Json(Submitted {
            id: msg.id,
            status,
            status_url,
            cached,
        }),
    ))
}

/// The request body, or the 400/413 that says why it could not be read.
pub(crate) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| ApiError::BadRequest {
        status: rej.status(),
        field: Some("body".into()),
        message: format!("{} (limit is the gateway's --body-limit)", rej.body_text()),
    })
}

/// Admit `msg`: refuse a disabled kind, answer from the cache, or queue it.
/// Returns the new job's status and whether it came from the cache.
async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    msg: &JobMessage,
) -> Result<(JobStatus, bool), ApiError> {
    let kind = msg.spec.kind();
    if !state.runtime_config().kind_enabled(kind) {
        return Err(ApiError::KindDisabled {
            kind,
            retry_after_secs: state.options().disabled_retry_after_secs,
        });
    }
    let jet = state.jet();
    // A delayed job runs at its time: the cache answers only jobs that run now.
    let delayed = msg.scheduled_after(now_ms());
    let use_cache =
        state.options().result_cache && !delayed && cache::cacheable(msg) && !no_cache(headers);
    if use_cache && answer_from_cache(state, msg).await? {
        return Ok((JobStatus::Done, true));
    }
    if let Some(max) = state.options().max_in_flight_per_tenant {
        let in_flight = crate::usage::in_flight_now(state.index(), &msg.tenant).await?;
        if in_flight >= max {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "tenant {} has {} unfinished jobs, the most allowed is {max}; retry when some finish",
                    msg.tenant, in_flight
                ),
                retry_after_secs: state.options().busy_retry_after_secs,
            });
        }
    }
    jobs::publish(&jet.js, msg)
        .await
        .map_err(|e| queue_full(e, state.options().busy_retry_after_secs))?;
    let status = committed(state, msg, use_cache).await;
    Ok((status, false))
}

/// Answer `msg` from the result cache if an identical job is done: its own `done` record
/// and events. `Ok(false)` on a miss.
pub(crate) async fn answer_from_cache(
    state: &AppState,
    msg: &JobMessage,
) -> Result<bool, ApiError> {
    let jet = state.jet();
    let Some(source) = cache::lookup(&jet.result_cache, &jet.records, msg).await? else {
        return Ok(false);
    };
    let record = cache::hit_record(msg, &source);
    jet.records.create(&record).await?;
    for event in [EventType::Accepted, EventType::Done] {
        publish_event(jet, msg, event, 0).await;
    }
    tracing::info!(job_id = %msg.id, kind = %msg.spec.kind(), source = %source.id, "job answered from the result cache");
    Ok(true)
}

/// What follows a job's PubAck: metrics, the `accepted` event, the `pending` (or
/// `scheduled`) record and the result cache entry (`use_cache`). Best effort, never
/// fails the request. Returns the status the job was accepted in.
pub(crate) async fn committed(state: &AppState, msg: &JobMessage, use_cache: bool) -> JobStatus {
    let jet = state.jet();
    let kind = msg.spec.kind();
    state.metrics().jobs.submitted(kind.as_str());

    // The job is committed. The event and the record are conveniences a worker can
    // rebuild from the message, so their failure must not fail the request. The event
    // goes first: a worker that finds the record knows `accepted` is stored before its
    // `started` (one that finds none publishes `accepted` itself, deduplicated).
    publish_event(jet, msg, EventType::Accepted, 0).await;
    let mut record = JobRecord::accepted(msg, now_ms());
    record.trace_id = jetmill_natsx::trace::trace_id(&tracing::Span::current());
    if let Err(e) = jet.records.create(&record).await {
        tracing::warn!(job_id = %msg.id, error = %e, "could not create pending record; the worker will");
    }
    if use_cache {
        // Before answering, so a client that saw this job finish can count on a hit.
        cache::remember(&jet.result_cache, &jet.records, msg).await;
    }
    tracing::debug!(job_id = %msg.id, kind = %kind, "job accepted");
    record.status
}

/// The answer to a repeated `Idempotency-Key`: 200 with the job the first request made.
async fn replay(
    state: &AppState,
    tenant: &str,
    id: JobId,
) -> Result<(StatusCode, HeaderMap, Json<Submitted>), ApiError> {
    // The first request may still be between its claim and its record: pending then.
    let record = state.jet().records.get(tenant, &id).await?.map(|(r, _)| r);
    let status_url = format!("/v1/jobs/{id}");
    let mut headers = location(&status_url);
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok((
        StatusCode::OK,
        headers,
        Json(Submitted {
            id,
            status: record.as_ref().map_or(JobStatus::Pending, |r| r.status),
            status_url,
            cached: record.is_some_and(|r| r.cached),
        }),
    ))
}

fn location(url: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(url) {
        headers.insert(header::LOCATION, v);
    }
    headers
}

/// `Cache-Control: no-cache` (or `no-store`) asks for a fresh computation.
pub(crate) fn no_cache(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            matches!(
                d.trim().to_ascii_lowercase().as_str(),
                "no-cache" | "no-store"
            )
        })
}

/// Publish a gateway-side lifecycle event of `attempt` (0 for a submission; a retry's
/// `accepted` is the attempts so far); best effort (logged on failure).
pub(crate) async fn publish_event(
    jet: &jetmill_natsx::Jet,
    msg: &JobMessage,
    event: EventType,
    attempt: u32,
) {
    let e = JobEvent {
        job_id: msg.id,
        tenant: msg.tenant.clone(),
        event,
        at_ms: now_ms(),
        attempt,
        worker: None,
        progress: (event == EventType::Done).then_some(1.0),
        error: None,
        started_at_ms: None,
    };
    if let Err(err) = events::publish(&jet.js, &e).await {
        tracing::warn!(job_id = %msg.id, error = %err, event = event.as_str(), "could not publish event");
    }
}

pub(crate) fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("id".into()),
        message: format!(
            "{id:?} is not a job id (expected a UUID such as the one POST /v1/jobs returned)"
        ),
    })
}

/// The caller's job `id`; another tenant's job is a 404 (its existence is not revealed),
/// except to an admin.
pub(crate) async fn load(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<JobRecord, ApiError> {
    let id = parse_id(id)?;
    let records = &state.jet().records;
    let found = match records.get(&caller.tenant, &id).await? {
        Some((record, _)) => Some(record),
        None if caller.admin => records.find(&id).await?,
        None => None,
    };
    found
        .filter(|r| caller.can_see(&r.tenant))
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/result",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Decimal text (`text/plain`), or with `Accept: application/octet-stream` the magnitude as little-endian bytes (sign in `X-Jetmill-Sign`)",
         content((String = "text/plain"), (Vec<u8> = "application/octet-stream"))),
        (status = 400, description = "Not a job id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this caller", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 406, description = "Too large for the raw form", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not done", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/jobs/{id}/result`: the full decimal text, streamed, with its length; or with
/// `Accept: application/octet-stream` the magnitude as little-endian bytes.
pub async fn result(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = load(&state, &caller, &id).await?;
    let info = match (&record.status, &record.result_info) {
        (JobStatus::Done, Some(info)) => info.clone(),
        (status, _) => {
            return Err(ApiError::Conflict(format!(
                "job {} has no result: its status is {}",
                record.id,
                status.as_str()
            )))
        }
    };
    let sha = (
        header::HeaderName::from_static("x-jetmill-sha256"),
        HeaderValue::from_str(&info.sha256).unwrap_or(HeaderValue::from_static("")),
    );
    if wants_raw(&request_headers) {
        return raw_result(&state, record.result, &info, sha).await;
    }
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(info.bytes)),
        sha,
    ];
    match info.location {
        ResultLocation::Inline => {
            let text = record.result.unwrap_or_default();
            Ok((headers, text).into_response())
        }
        ResultLocation::Object { name, .. } => {
            let object = results::open(&state.jet().results, &name).await?;
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(object));
            Ok((headers, body).into_response())
        }
    }
}

/// The client asked for `application/octet-stream` (and not for text first).
fn wants_raw(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .find(|m| m == "application/octet-stream" || m.starts_with("text/"))
        .is_some_and(|m| m == "application/octet-stream")
}

/// The result as little-endian bytes (sign in `X-Jetmill-Sign`), converted on request.
async fn raw_result(
    state: &AppState,
    inline: Option<String>,
    info: &jetmill_proto::ResultInfo,
    sha: (header::HeaderName, HeaderValue),
) -> Result<Response, ApiError> {
    if info.bytes > crate::raw::MAX_DECIMAL_BYTES {
        return Err(ApiError::BadRequest {
            status: StatusCode::NOT_ACCEPTABLE,
            field: Some("Accept".into()),
            message: format!(
                "results over {} decimal bytes are served only as text; this one has {}",
                crate::raw::MAX_DECIMAL_BYTES,
                info.bytes
            ),
        });
    }
    let text = match (&info.location, inline) {
        (ResultLocation::Inline, Some(text)) => text,
        (ResultLocation::Inline, None) => String::new(),
        (ResultLocation::Object { name, .. }, _) => {
            let size = usize::try_from(info.bytes).unwrap_or(0);
            results::read_text(&state.jet().results, name, size).await?
        }
    };
    let (negative, bytes) =
        tokio::task::spawn_blocking(move || crate::raw::decimal_to_le_bytes(&text))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
            .map_err(|e| ApiError::Internal(e.into()))?;
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(bytes.len())),
        (
            header::HeaderName::from_static("x-jetmill-sign"),
            HeaderValue::from_static(if negative { "-" } else { "+" }),
        ),
        sha,
    ];
    Ok((headers, bytes).into_response())
}
