//! The job message as published on `JOBS`: its headers, shared by the gateway's submits
//! and the workers' firings of recurring schedules.

use async_nats::HeaderMap;
use jetmill_proto::{names, JobMessage};

/// The headers of `msg` on `JOBS`: `Nats-Msg-Id` (the job id: publish dedup) and the
/// readable `Jetmill-*` ones `nats stream view` shows.
pub fn headers(msg: &JobMessage) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let id = msg.id.to_string();
    headers.insert("Nats-Msg-Id", id.as_str());
    headers.insert(names::HDR_JOB_ID, id.as_str());
    headers.insert(names::HDR_KIND, msg.spec.kind().as_str());
    headers.insert(names::HDR_TENANT, msg.tenant.as_str());
    headers.insert(names::HDR_SCHEMA, msg.schema().to_string().as_str());
    if let Some(batch) = &msg.batch {
        headers.insert(names::HDR_BATCH_ID, batch.to_string().as_str());
    }
    if let Some(schedule) = &msg.schedule {
        headers.insert(names::HDR_SCHEDULE_ID, schedule.to_string().as_str());
    }
    headers.insert(names::HDR_CONTENT_TYPE, names::CONTENT_TYPE_POSTCARD);
    headers
}
