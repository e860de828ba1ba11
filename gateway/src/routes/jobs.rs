//! `/v1/jobs`: submit, read, and download results.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jetmill_natsx::events;
use jetmill_proto::{
    names, now_ms, EventType, JobEvent, JobId, JobMessage, JobRecord, JobRequest, JobStatus,
    ResultLocation,
};
use serde::Serialize;

/// Answer to a successful submit.
#[derive(Debug, Serialize)]
pub struct Submitted {
    pub id: JobId,
    pub status: JobStatus,
    pub status_url: String,
}

/// `POST /v1/jobs`: validate, commit to JetStream (the PubAck is the commit), record, 202.
pub async fn submit(
    State(state): State<AppState>,
    caller: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, HeaderMap, Json<Submitted>), ApiError> {
    let body = body.map_err(|rej| ApiError::BadRequest {
        status: rej.status(),
        field: Some("body".into()),
        message: format!("{} (limit is the gateway's --body-limit)", rej.body_text()),
    })?;
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
    };
    let jet = state.jet();
    publish_job(&jet.js, &msg).await?;

    // The job is committed. The record and the event are conveniences a worker can
    // rebuild from the message, so their failure must not fail the request.
    let record = JobRecord::pending(&msg);
    if let Err(e) = jet.records.create(&record).await {
        tracing::warn!(job_id = %msg.id, error = %e, "could not create pending record; the worker will");
    }
    let accepted = JobEvent {
        job_id: msg.id,
        tenant: msg.tenant.clone(),
        event: EventType::Accepted,
        at_ms: msg.submitted_at_ms,
        attempt: 0,
        worker: None,
        progress: None,
        error: None,
    };
    if let Err(e) = events::publish(&jet.js, &accepted).await {
        tracing::warn!(job_id = %msg.id, error = %e, "could not publish accepted event");
    }
    tracing::info!(job_id = %msg.id, kind = %msg.spec.kind(), "job accepted");

    let status_url = format!("/v1/jobs/{}", msg.id);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        headers.insert(header::LOCATION, v);
    }
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(Submitted {
            id: msg.id,
            status: JobStatus::Pending,
            status_url,
        }),
    ))
}

async fn publish_job(
    js: &async_nats::jetstream::Context,
    msg: &JobMessage,
) -> Result<(), ApiError> {
    let payload = msg.encode().map_err(|e| ApiError::Internal(e.into()))?;
    let mut headers = async_nats::HeaderMap::new();
    let id = msg.id.to_string();
    headers.insert("Nats-Msg-Id", id.as_str());
    headers.insert(names::HDR_JOB_ID, id.as_str());
    headers.insert(names::HDR_KIND, msg.spec.kind().as_str());
    headers.insert(names::HDR_TENANT, msg.tenant.as_str());
    headers.insert(
        names::HDR_SCHEMA,
        jetmill_proto::SCHEMA_VERSION.to_string().as_str(),
    );
    headers.insert(names::HDR_CONTENT_TYPE, names::CONTENT_TYPE_POSTCARD);
    let subject = names::job_subject(msg.priority, msg.spec.kind());
    let ack = js
        .publish_with_headers(subject, headers, payload.into())
        .await
        .map_err(jetmill_natsx::NatsxError::js("publish job"))?;
    ack.await
        .map_err(jetmill_natsx::NatsxError::js("publish job"))?;
    Ok(())
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

/// `GET /v1/jobs/{id}`: the job record.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    Ok(Json(load(&state, &caller, &id).await?))
}

/// `GET /v1/jobs/{id}/result`: the full decimal text, streamed, with its length.
pub async fn result(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
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
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(info.bytes)),
        (
            header::HeaderName::from_static("x-jetmill-sha256"),
            HeaderValue::from_str(&info.sha256).unwrap_or(HeaderValue::from_static("")),
        ),
    ];
    match info.location {
        ResultLocation::Inline => {
            let text = record.result.unwrap_or_default();
            Ok((headers, text).into_response())
        }
        ResultLocation::Object { name, .. } => {
            let object = state
                .jet()
                .results
                .get(&name)
                .await
                .map_err(jetmill_natsx::NatsxError::js("read result object"))?;
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(object));
            Ok((headers, body).into_response())
        }
    }
}
