//! Batches: `POST /v1/jobs/batch` (up to [`MAX_BATCH`] jobs in one request),
//! `GET /v1/batches/{id}` (status counts, `?wait=` long-poll), `DELETE /v1/batches/{id}`
//! (cancel every unfinished job) and `GET /v1/jobs?batch=` (the batch's jobs).
//!
//! Each item is validated and admitted like a single `POST /v1/jobs` (disabled kind,
//! result cache, tenant quota, queue full) and answered on its own: a job id, or the
//! problem a single submit of it would have got, with its index. Invalid items never
//! block valid ones and nothing invalid is published.
//!
//! The fast path: every accepted job is sent to `JOBS` before any PubAck is awaited,
//! then the acks are awaited together; the `accepted` events and `pending` records are
//! written concurrently (at most [`WRITE_CONCURRENCY`] at once). The batch itself (its
//! per-item answers, so the job ids, and its creation time) is stored in KV `batches`
//! under `<tenant>.<batch_id>` once the jobs are committed, so any gateway can answer
//! for it. Each job also carries its batch id (message schema 2, record `batch`).

use super::jobs::{self, parse_id};
use crate::auth::Principal;
use crate::error::queue_full;
use crate::{cache, idempotency, ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use futures::{StreamExt, TryStreamExt};
use jetmill_natsx::{batches, jobs as natsx_jobs, ListQuery, NatsxError, Update};
use jetmill_proto::{
    now_ms, BatchCounts, BatchItem, BatchRecord, JobId, JobMessage, JobRecord, JobRequest,
    JobStatus, MAX_BATCH,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use time::OffsetDateTime;

/// KV writes (records, events, cache lookups, reads) in flight at once for one batch.
const WRITE_CONCURRENCY: usize = 64;
/// Content type of newline-delimited JSON bodies (one job spec per line).
const NDJSON: &str = "application/x-ndjson";

/// Answer to `POST /v1/jobs/batch`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchSubmitted {
    /// The batch id (UUIDv7).
    pub id: JobId,
    /// `GET` it for the batch's status counts.
    pub status_url: String,
    /// `GET` it for the batch's jobs.
    pub jobs_url: String,
    /// Items that became jobs.
    pub accepted: usize,
    /// Items refused (see their `problem`).
    pub rejected: usize,
    /// One answer per item, in request order.
    pub items: Vec<BatchItem>,
}

/// Answer to `GET /v1/batches/{id}` (and `DELETE`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchStatus {
    /// The batch id.
    pub id: JobId,
    /// The tenant that owns it.
    pub tenant: String,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Jobs in the batch (accepted items).
    pub total: usize,
    /// Items refused at submission (no job).
    pub rejected: usize,
    /// The jobs by status now.
    pub counts: BatchCounts,
    /// Every job is done, failed or cancelled.
    pub done: bool,
    /// `GET` it for the batch's jobs.
    pub jobs_url: String,
    /// `DELETE` only: jobs this request cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_now: Option<usize>,
}

/// Query of `GET /v1/batches/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct BatchParams {
    /// Long-poll: wait up to this long (`30s`, `500ms`, `2m`, or seconds) for every job to end.
    pub wait: Option<String>,
}

fn bad_body(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        status,
        field: Some("body".into()),
        message: message.into(),
    }
}

/// The items of a batch body: a JSON array, or NDJSON (one object per non-blank line)
/// with `Content-Type: application/x-ndjson`. A line of NDJSON that is not JSON is a
/// problem of that item only; a malformed array is a 400 for the whole request.
fn parse_items(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Result<serde_json::Value, String>>, ApiError> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(NDJSON));
    let items: Vec<Result<serde_json::Value, String>> = if ndjson {
        let text = std::str::from_utf8(body)
            .map_err(|_| bad_body(StatusCode::BAD_REQUEST, "the NDJSON body is not UTF-8"))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| format!("this line is not valid JSON: {e}"))
            })
            .collect()
    } else {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        match json {
            serde_json::Value::Array(items) => items.into_iter().map(Ok).collect(),
            other => {
                return Err(bad_body(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "a batch is a JSON array of job specs (or NDJSON with Content-Type: {NDJSON}), not a JSON {}",
                        json_type(&other)
                    ),
                ))
            }
        }
    };
    if items.is_empty() {
        return Err(bad_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the batch is empty; send 1 to 1000 job specs",
        ));
    }
    if items.len() > MAX_BATCH {
        return Err(bad_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the batch has {} items; at most {MAX_BATCH} are accepted in one request",
                items.len()
            ),
        ));
    }
    Ok(items)
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Fingerprint of a whole batch request, for `Idempotency-Key` reuse checks.
fn fingerprint(items: &[Result<serde_json::Value, String>]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"batch\n");
    for item in items {
        match item {
            Ok(v) => hash.update(v.to_string().as_bytes()),
            Err(e) => hash.update(format!("!{e}").as_bytes()),
        }
        hash.update(b"\n");
    }
    format!("{:x}", hash.finalize())
}

/// A refused item from the error a single submit would have answered.
fn refused(index: usize, e: &ApiError) -> BatchItem {
    let p = e.problem();
    BatchItem::refused(index, p.kind, p.status, p.field, p.detail)
}

/// An item on its way through admission.
enum Slot {
    /// Answered (refused, or from the cache).
    Answered(BatchItem),
    /// Still to publish.
    Job(JobMessage),
}

#[utoipa::path(
    post,
    path = "/v1/jobs/batch",
    tag = "batches",
    request_body(content = Vec<super::openapi::SubmitBody>, description = "1 to 1000 job specs: a JSON array, or NDJSON (one per line) with `Content-Type: application/x-ndjson`",
        content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried batch return the first batch and its job ids (1-255 characters, kept 48 h)"),
        ("Cache-Control" = Option<String>, Header, description = "`no-cache` skips the result cache"),
    ),
    responses(
        (status = 202, description = "The batch; one answer per item (a job id, or the problem naming the item's index and field)", body = BatchSubmitted),
        (status = 200, description = "A repeated Idempotency-Key: the first batch", body = BatchSubmitted),
        (status = 400, description = "Malformed JSON, not an array, or an unusable Idempotency-Key", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty, over 1000 items, or an Idempotency-Key reused for another request", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `POST /v1/jobs/batch`: validate and admit every item, publish the accepted ones
/// pipelined, store the batch, 202 with an answer per item.
pub async fn submit(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, HeaderMap, Json<BatchSubmitted>), ApiError> {
    let idempotency_key = idempotency::key_from(&headers)?;
    let body = super::jobs::body_of(body)?;
    let items = parse_items(&headers, &body)?;
    let batch_id = JobId::new();
    let tenant = caller.tenant.clone();
    let submitted_at_ms = now_ms();
    let slots: Vec<Slot> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let json = match item {
                Ok(json) => json,
                Err(message) => {
                    return Slot::Answered(refused(
                        index,
                        &ApiError::MalformedJson(message.clone()),
                    ))
                }
            };
            match JobRequest::from_json(json, state.limits()) {
                Ok(req) => Slot::Job(JobMessage {
                    id: JobId::new(),
                    tenant: tenant.clone(),
                    spec: req.spec,
                    priority: req.priority,
                    submitted_at_ms,
                    max_attempts: req.max_attempts,
                    timeout_ms: req.timeout_ms,
                    chaos: req.chaos,
                    batch: Some(batch_id),
                    run_at_ms: req.run_at_ms,
                    schedule: None,
                    retention_secs: req.retention_secs,
                    workflow: None,
                }),
                Err(invalid) => Slot::Answered(refused(index, &ApiError::Invalid(invalid))),
            }
        })
        .collect();
    let jet = state.jet();
    let mut slots = slots;
    let mut batch_id = batch_id;
    let mut owned = None;
    if let Some(key) = &idempotency_key {
        match idempotency::claim_request(
            &jet.idempotency,
            &tenant,
            key,
            batch_id,
            fingerprint(&items),
        )
        .await?
        {
            idempotency::RequestClaim::New(o) => owned = Some(o),
            idempotency::RequestClaim::Replay {
                id,
                revision,
                stale,
            } => {
                let stored = read_batch(&state, &tenant, &id).await?.is_some();
                let retaken = match (stored, stale) {
                    (false, true) => {
                        idempotency::retake(&jet.idempotency, &tenant, key, revision).await?
                    }
                    _ => None,
                };
                let Some(o) = retaken else {
                    return replay(&state, &tenant, id).await;
                };
                // The first request died before storing its batch: submit again under
                // its batch id (jobs it may have queued before dying still run, listed
                // under no batch).
                tracing::warn!(batch = %id, "healing a stale batch claim: submitting it again");
                batch_id = id;
                for slot in &mut slots {
                    if let Slot::Job(msg) = slot {
                        msg.batch = Some(id);
                    }
                }
                owned = Some(o);
            }
        }
    }
    let answers = admit(&state, &headers, slots).await;
    let record = BatchRecord {
        id: batch_id,
        tenant: tenant.clone(),
        created_at: OffsetDateTime::now_utc(),
        items: answers,
    };
    if let Err(e) = store_batch(&state, &record).await {
        // Jobs already committed keep their key, so a retry cannot queue them twice.
        if let Some(owned) = &owned {
            if record.job_ids().next().is_none() {
                idempotency::release(&jet.idempotency, owned).await;
            }
        }
        tracing::error!(batch = %batch_id, jobs = record.job_ids().count(), error = %e, "batch committed but not stored");
        return Err(e);
    }
    tracing::info!(batch = %batch_id, jobs = record.job_ids().count(), items = record.items.len(), "batch accepted");
    Ok((
        StatusCode::ACCEPTED,
        location(&batch_id),
        Json(submitted(record)),
    ))
}

fn submitted(record: BatchRecord) -> BatchSubmitted {
    let accepted = record.job_ids().count();
    BatchSubmitted {
        id: record.id,
        status_url: format!("/v1/batches/{}", record.id),
        jobs_url: format!("/v1/jobs?batch={}", record.id),
        accepted,
        rejected: record.items.len() - accepted,
        items: record.items,
    }
}

fn location(id: &JobId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/batches/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    headers
}

/// A repeated `Idempotency-Key`: 200 with the first batch's answers.
async fn replay(
    state: &AppState,
    tenant: &str,
    id: JobId,
) -> Result<(StatusCode, HeaderMap, Json<BatchSubmitted>), ApiError> {
    let record = read_batch(state, tenant, &id).await?.ok_or_else(|| {
        ApiError::Conflict(
            "the batch of this Idempotency-Key is still being submitted; retry shortly".into(),
        )
    })?;
    let mut headers = location(&id);
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok((StatusCode::OK, headers, Json(submitted(record))))
}

/// Admit every job slot as [`jobs::submit`] would, one answer per item in order.
async fn admit(state: &AppState, headers: &HeaderMap, slots: Vec<Slot>) -> Vec<BatchItem> {
    let config = state.runtime_config();
    let options = state.options();
    let use_cache = options.result_cache && !jobs::no_cache(headers);
    let mut answers: Vec<Option<BatchItem>> = vec![None; slots.len()];
    let mut todo: Vec<(usize, JobMessage)> = Vec::new();
    for (index, slot) in slots.into_iter().enumerate() {
        match slot {
            Slot::Answered(item) => answers[index] = Some(item),
            Slot::Job(msg) => {
                let kind = msg.spec.kind();
                if config.kind_enabled(kind) {
                    todo.push((index, msg));
                } else {
                    let e = ApiError::KindDisabled {
                        kind,
                        retry_after_secs: options.disabled_retry_after_secs,
                    };
                    answers[index] = Some(refused(index, &e));
                }
            }
        }
    }

    // The result cache, concurrently: a hit is a `done` job and nothing is published.
    let looked: Vec<(usize, JobMessage, bool, Result<bool, ApiError>)> =
        futures::stream::iter(todo)
            .map(|(index, msg)| async move {
                // A delayed job runs at its time, never from the cache.
                let cacheable = use_cache
                    && cache::cacheable(&msg)
                    && !msg.scheduled_after(jetmill_proto::now_ms());
                let hit = if cacheable {
                    jobs::answer_from_cache(state, &msg).await
                } else {
                    Ok(false)
                };
                (index, msg, cacheable, hit)
            })
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await;
    let mut todo = Vec::with_capacity(looked.len());
    for (index, msg, cacheable, hit) in looked {
        match hit {
            Ok(true) => {
                answers[index] = Some(BatchItem::accepted(index, msg.id, JobStatus::Done, true))
            }
            Ok(false) => todo.push((index, msg, cacheable)),
            Err(e) => answers[index] = Some(refused(index, &e)),
        }
    }

    // The tenant's quota: the unfinished jobs it has now plus those of this batch.
    if let (Some(max), Some(first)) = (options.max_in_flight_per_tenant, todo.first()) {
        let tenant = first.1.tenant.clone();
        let room = match crate::usage::in_flight_now(state.index(), &tenant).await {
            Ok(in_flight) => max.saturating_sub(in_flight),
            Err(e) => {
                let e = ApiError::from(e);
                for (index, ..) in todo.drain(..) {
                    answers[index] = Some(refused(index, &e));
                }
                0
            }
        };
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        if todo.len() > room {
            let e = ApiError::TooManyRequests {
                message: format!(
                    "tenant {tenant} may have at most {max} unfinished jobs; this batch had room for {room}; retry the rest when some finish"
                ),
                retry_after_secs: options.busy_retry_after_secs,
            };
            for (index, ..) in todo.drain(room..) {
                answers[index] = Some(refused(index, &e));
            }
        }
    }

    // Send every job, then await the PubAcks together: one round trip for the batch.
    let js = &state.jet().js;
    let busy = options.busy_retry_after_secs;
    let mut sent = Vec::with_capacity(todo.len());
    for (index, msg, cacheable) in todo {
        match natsx_jobs::send(js, &msg, None).await {
            Ok(ack) => sent.push((index, msg, cacheable, ack)),
            Err(e) => answers[index] = Some(refused(index, &queue_full(e, busy))),
        }
    }
    let (meta, acks): (Vec<_>, Vec<_>) = sent
        .into_iter()
        .map(|(index, msg, cacheable, ack)| ((index, msg, cacheable), ack))
        .unzip();
    let acked = futures::future::join_all(acks.into_iter().map(natsx_jobs::acked)).await;
    let mut committed = Vec::with_capacity(meta.len());
    for ((index, msg, cacheable), ack) in meta.into_iter().zip(acked) {
        match ack {
            Ok(()) => committed.push((index, msg, cacheable)),
            Err(e) => answers[index] = Some(refused(index, &queue_full(e, busy))),
        }
    }

    // Committed: events, records and cache entries, concurrently and best effort.
    let committed_ref = &committed;
    let statuses: Vec<JobStatus> = futures::stream::iter(0..committed.len())
        .map(|i| {
            let (_, msg, cacheable) = &committed_ref[i];
            jobs::committed(state, msg, *cacheable)
        })
        .buffered(WRITE_CONCURRENCY)
        .collect()
        .await;
    for ((index, msg, _), status) in committed.into_iter().zip(statuses) {
        answers[index] = Some(BatchItem::accepted(index, msg.id, status, false));
    }
    answers
        .into_iter()
        .enumerate()
        .map(|(index, a)| {
            a.unwrap_or_else(|| {
                refused(
                    index,
                    &ApiError::Internal(anyhow::anyhow!("item not admitted")),
                )
            })
        })
        .collect()
}

/// Store the batch (a KV create; retried, since its jobs are committed already).
async fn store_batch(state: &AppState, record: &BatchRecord) -> Result<(), ApiError> {
    Ok(batches::store(state.jet(), record).await?)
}

/// The stored batch `id` of `tenant`, if it exists.
async fn read_batch(
    state: &AppState,
    tenant: &str,
    id: &JobId,
) -> Result<Option<BatchRecord>, ApiError> {
    Ok(batches::get(state.jet(), tenant, id).await?)
}

/// The caller's batch `id`; another tenant's is a 404, except to an admin.
async fn load(state: &AppState, caller: &Principal, id: &str) -> Result<BatchRecord, ApiError> {
    let id = parse_id(id).map_err(|_| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        field: Some("id".into()),
        message: format!(
            "{id:?} is not a batch id (expected the UUID POST /v1/jobs/batch returned)"
        ),
    })?;
    let mut found = read_batch(state, &caller.tenant, &id).await?;
    if found.is_none() && caller.admin {
        // Rare (an admin looking at another tenant's batch): find the key.
        found = batches::find(state.jet(), &id).await?;
    }
    match found {
        // Gone with its jobs, as they are from GET (the sweep removes it later).
        Some(batch) if batches::expired(state.jet(), &batch).await? => Err(ApiError::NotFound(
            format!("no batch {id} (its jobs finished and their retention passed)"),
        )),
        Some(batch) => Ok(batch),
        None => Err(ApiError::NotFound(format!("no batch {id}"))),
    }
}

/// Each job's status and record revision now (a job whose record is not written yet is
/// `pending`: it is committed, and its gateway or worker writes the record shortly).
async fn statuses(
    state: &AppState,
    batch: &BatchRecord,
) -> Result<HashMap<JobId, (JobStatus, u64)>, ApiError> {
    let records = &state.jet().records;
    let tenant = batch.tenant.as_str();
    futures::stream::iter(batch.job_ids())
        .map(|id| async move {
            let found = records.get(tenant, &id).await?;
            Ok::<_, NatsxError>((
                id,
                found.map_or((JobStatus::Pending, 0), |(r, rev)| (r.status, rev)),
            ))
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect()
        .await
        .map_err(ApiError::from)
}

fn count(statuses: &HashMap<JobId, (JobStatus, u64)>) -> BatchCounts {
    let mut counts = BatchCounts::default();
    for (status, _) in statuses.values() {
        counts.add(*status);
    }
    counts
}

fn status_of(batch: &BatchRecord, counts: BatchCounts) -> BatchStatus {
    let total = batch.job_ids().count();
    BatchStatus {
        id: batch.id,
        tenant: batch.tenant.clone(),
        created_at: batch.created_at,
        total,
        rejected: batch.items.len() - total,
        counts,
        done: counts.all_terminal(),
        jobs_url: format!("/v1/jobs?batch={}", batch.id),
        cancelled_now: None,
    }
}

/// Only `status` of a record (it may carry a large inline result).
#[derive(Deserialize)]
struct StatusOnly {
    status: JobStatus,
}

#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(
        ("id" = String, Path, description = "Batch id"),
        ("wait" = Option<String>, Query, description = "Long-poll up to this long for every job to end: `30s`, `500ms`, `2m` or seconds"),
    ),
    responses(
        (status = 200, description = "The batch's jobs counted by status; `done` when all ended", body = BatchStatus),
        (status = 400, description = "Not a batch id, or a bad `wait`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this caller, or its jobs finished and expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `GET /v1/batches/{id}`: counts by status; with `?wait=` once every job ended or the
/// wait is over (capped at the gateway's `--max-wait-secs`), whichever comes first.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    params: Result<Query<BatchParams>, QueryRejection>,
) -> Result<Json<BatchStatus>, ApiError> {
    let Query(params) = params.map_err(|e| super::live::bad_wait(e.body_text()))?;
    let wait = super::live::wait_param(&state, params.wait.as_deref())?;
    let batch = load(&state, &caller, &id).await?;
    if wait.is_zero() {
        let now = statuses(&state, &batch).await?;
        return Ok(Json(status_of(&batch, count(&now))));
    }
    // Watch the tenant's records first, then read: no change in between is missed. A
    // watched write applies only if it is newer (by KV revision) than what was read.
    let mut changes = state
        .jet()
        .records
        .watch_tenant::<StatusOnly>(&batch.tenant)
        .await?;
    let mut now = statuses(&state, &batch).await?;
    let mut counts = count(&now);
    let deadline = tokio::time::Instant::now() + wait;
    while !counts.all_terminal() {
        let next = match tokio::time::timeout_at(deadline, changes.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(next)) => next,
        };
        let change = next?;
        let Some(known) = now.get_mut(&change.id) else {
            continue;
        };
        if change.revision <= known.1 {
            continue;
        }
        *known = (change.record.status, change.revision);
        counts = count(&now);
    }
    Ok(Json(status_of(&batch, counts)))
}

#[utoipa::path(
    delete,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "Every unfinished job cancelled (`cancelled_now` of them); the counts after", body = BatchStatus),
        (status = 400, description = "Not a batch id", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this caller, or its jobs finished and expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token (`WWW-Authenticate: Bearer`)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "No answer within the request timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "NATS/JetStream unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
/// `DELETE /v1/batches/{id}`: cancel every job of the batch that has not finished, each
/// as `DELETE /v1/jobs/{id}` does; finished jobs stay as they are (no 409 here).
pub async fn cancel(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<BatchStatus>, ApiError> {
    let batch = load(&state, &caller, &id).await?;
    let state = &state;
    let tenant = batch.tenant.as_str();
    let outcomes: Vec<Option<(JobStatus, bool)>> = futures::stream::iter(batch.job_ids())
        .map(|id| async move {
            Ok::<_, ApiError>(match super::cancel::cancel_job(state, tenant, &id).await? {
                Update::Applied(r) => Some((r.status, true)),
                Update::Unchanged(r) => Some((r.status, false)),
                // Committed but no record yet: nothing to cancel by compare-and-set.
                Update::Missing => None,
            })
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect()
        .await?;
    let mut counts = BatchCounts::default();
    let mut cancelled = 0;
    for outcome in outcomes {
        let (status, now) = outcome.unwrap_or((JobStatus::Pending, false));
        counts.add(status);
        cancelled += usize::from(now);
    }
    tracing::info!(batch = %batch.id, cancelled, "batch cancelled");
    let mut status = status_of(&batch, counts);
    status.cancelled_now = Some(cancelled);
    Ok(Json(status))
}

/// `GET /v1/jobs?batch=<id>`: a page of the batch's jobs, newest first, from its stored
/// item list (records re-read, filters and cursor as for any listing).
pub(crate) async fn list_jobs(
    state: &AppState,
    caller: &Principal,
    batch: &str,
    q: &ListQuery,
) -> Result<(Vec<JobRecord>, Option<JobId>), ApiError> {
    let batch = load(state, caller, batch).await.map_err(|e| match e {
        ApiError::BadRequest { message, .. } => ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            field: Some("batch".into()),
            message,
        },
        other => other,
    })?;
    let mut ids: Vec<JobId> = batch
        .job_ids()
        .filter(|id| q.before.is_none_or(|b| *id < b))
        .collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let records = &state.jet().records;
    let tenant = batch.tenant.as_str();
    let limit = q.limit.max(1);
    let mut jobs = Vec::with_capacity(limit.min(ids.len()));
    let mut scanned = 0;
    for chunk in ids.chunks(limit.max(WRITE_CONCURRENCY)) {
        let found: Vec<Option<JobRecord>> = futures::stream::iter(chunk.iter().copied())
            .map(|id| async move {
                Ok::<_, NatsxError>(records.get(tenant, &id).await?.map(|(r, _)| r))
            })
            .buffered(WRITE_CONCURRENCY)
            .try_collect()
            .await?;
        for record in found {
            scanned += 1;
            let Some(r) = record else { continue };
            if !q.admits(&r) {
                continue;
            }
            jobs.push(r);
            if jobs.len() == limit {
                let next = (scanned < ids.len())
                    .then(|| jobs.last().map(|r| r.id))
                    .flatten();
                return Ok((jobs, next));
            }
        }
    }
    Ok((jobs, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(
        content_type: Option<&str>,
        body: &str,
    ) -> Result<Vec<Result<serde_json::Value, String>>, ApiError> {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(ct).expect("header"),
            );
        }
        parse_items(&headers, body.as_bytes())
    }

    #[test]
    fn bodies_must_be_a_non_empty_array_of_at_most_a_thousand() {
        assert_eq!(
            items(None, r#"[{"kind":"sum"}, 3]"#).expect("array").len(),
            2
        );
        let status = |r: Result<_, ApiError>| r.err().map(|e| e.problem().status);
        assert_eq!(status(items(None, "[]")), Some(422));
        assert_eq!(
            status(items(None, r#"{"kind":"factorial","input":5}"#)),
            Some(400)
        );
        assert_eq!(status(items(None, "[1,")), Some(400));
        let big = format!("[{}1]", "1,".repeat(MAX_BATCH));
        assert_eq!(status(items(None, &big)), Some(422));
        let full = format!("[{}1]", "1,".repeat(MAX_BATCH - 1));
        assert_eq!(items(None, &full).expect("1000 items").len(), MAX_BATCH);
    }

    #[test]
    fn ndjson_lines_are_items_and_a_bad_line_is_only_its_own_problem() {
        let got = items(
            Some("application/x-ndjson; charset=utf-8"),
            "{\"kind\":\"factorial\",\"input\":5}\n\n  not json\n{\"kind\":\"sum\",\"input\":[1]}\n",
        )
        .expect("ndjson");
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_err() && got[2].is_ok());
        assert!(items(Some("application/x-ndjson"), "\n\n").is_err());
    }

    #[test]
    fn the_fingerprint_ignores_formatting_but_not_content() {
        let a = items(None, r#"[{"kind":"factorial","input":5}]"#).expect("a");
        let b = items(None, r#"[ { "input": 5, "kind": "factorial" } ]"#).expect("b");
        let c = items(None, r#"[{"kind":"factorial","input":6}]"#).expect("c");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
