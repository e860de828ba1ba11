//! Live progress: `GET /v1/jobs/{id}?wait=30s` (long-poll) and
//! `GET /v1/jobs/{id}/events` (Server-Sent Events from the `EVENTS` stream).
//!
//! Both follow NATS, not the gateway: the long-poll watches the job's KV record and the
//! SSE reads the job's subjects of `EVENTS` with an ordered consumer, so any gateway
//! instance can serve any client. An SSE event's `id` is its `EVENTS` stream sequence,
//! so a client reconnecting with `Last-Event-ID` resumes right after the last one it saw.

use super::jobs::load;
use crate::auth::Principal;
use crate::{ApiError, AppState};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::Operation;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use jetmill_natsx::NatsxError;
use jetmill_proto::{names, EventType, JobEvent, JobRecord};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// Query of `GET /v1/jobs/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct GetParams {
    /// Long-poll: wait up to this long (`30s`, `500ms`, `2m`, or seconds) for the job to end.
    pub wait: Option<String>,
}

/// `30s`, `500ms`, `2m` or a plain number of seconds.
fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

fn bad_wait(message: String) -> ApiError {
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
    let wait = match params.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => parse_wait(w).ok_or_else(|| {
            bad_wait(format!(
                "{w:?} is not a duration (use e.g. 30s, 500ms or 2m)"
            ))
        })?,
    }
    .min(state.options().max_wait);
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
    let key = names::record_key(&record.tenant, &record.id);
    // Watch first, then re-read: a change between the two is then never missed.
    let mut changes = records
        .kv()
        .watch(&key)
        .await
        .map_err(NatsxError::js("watch job record"))?;
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
        let entry = next.map_err(NatsxError::js("watch job record"))?;
        if entry.operation != Operation::Put {
            continue;
        }
        match serde_json::from_slice::<JobRecord>(&entry.value) {
            Ok(r) => latest = r,
            Err(e) => tracing::warn!(key, error = %e, "unreadable job record in watch"),
        }
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
pub async fn events(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let record = load(&state, &caller, &id).await?;
    let resume_after = last_event_id(&headers)?;
    let js = &state.jet().js;
    let stream = js
        .get_stream(names::EVENTS_STREAM)
        .await
        .map_err(NatsxError::js("open events stream"))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("jobs.events.{}.*", record.id),
            deliver_policy: match resume_after {
                Some(seq) => DeliverPolicy::ByStartSequence {
                    start_sequence: seq + 1,
                },
                None => DeliverPolicy::All,
            },
            ..Default::default()
        })
        .await
        .map_err(NatsxError::js("follow job events"))?;
    let pending_at_start = consumer.cached_info().num_pending;
    // Already over and nothing left to send (e.g. a reconnect after the final event).
    let finished_before = record.status.is_terminal();
    let messages = consumer
        .messages()
        .await
        .map_err(NatsxError::js("follow job events"))?;
    let done = finished_before && pending_at_start == 0;
    let events = futures::stream::unfold(
        (messages, done, finished_before),
        |(mut messages, done, finished_before)| async move {
            if done {
                return None;
            }
            loop {
                let message = match messages.next().await {
                    None => return None,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "job event stream failed");
                        return None;
                    }
                    Some(Ok(m)) => m,
                };
                let Ok(info) = message.info() else { continue };
                let (seq, pending) = (info.stream_sequence, info.pending);
                let Ok(event) = serde_json::from_slice::<JobEvent>(&message.payload) else {
                    continue;
                };
                let last = event.event.status().is_some_and(|s| s.is_terminal())
                    || (finished_before && pending == 0);
                let sse = to_sse(seq, &event);
                return Some((Ok(sse), (messages, last, finished_before)));
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
    let stream = state
        .jet()
        .js
        .get_stream(names::EVENTS_STREAM)
        .await
        .map_err(NatsxError::js("open events stream"))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: names::EVENTS_SUBJECTS.into(),
            deliver_policy: match resume_after {
                Some(seq) => DeliverPolicy::ByStartSequence {
                    start_sequence: seq + 1,
                },
                None => DeliverPolicy::New,
            },
            ..Default::default()
        })
        .await
        .map_err(NatsxError::js("follow events"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(NatsxError::js("follow events"))?;
    let events = messages.filter_map(move |m| {
        let caller = caller.clone();
        async move {
            let m = m.ok()?;
            let seq = m.info().ok()?.stream_sequence;
            let event = serde_json::from_slice::<JobEvent>(&m.payload).ok()?;
            caller
                .can_see(&event.tenant)
                .then(|| Ok(to_sse(seq, &event)))
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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

/// One lifecycle event as an SSE event.
fn to_sse(seq: u64, event: &JobEvent) -> Event {
    let mut data = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = data.as_object_mut() {
        if let Some(status) = event.event.status() {
            obj.insert("status".into(), status.as_str().into());
        }
        if event.event == EventType::Done {
            obj.insert(
                "result_url".into(),
                format!("/v1/jobs/{}/result", event.job_id).into(),
            );
        }
    }
    Event::default()
        .id(seq.to_string())
        .event(event.event.as_str())
        .data(data.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_wait;
    use std::time::Duration;

    #[test]
    fn waits_parse_with_or_without_a_unit() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_wait("soon"), None);
        assert_eq!(parse_wait("5h"), None);
        assert_eq!(parse_wait(""), None);
    }
}
