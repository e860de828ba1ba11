//! Publishing lifecycle events to the `EVENTS` stream.

use crate::NatsxError;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use jetmill_proto::{names, JobEvent};

/// Publish `event` and wait for the stream to store it.
///
/// The `Nats-Msg-Id` makes a retried publish of the same event a no-op.
pub async fn publish(js: &Context, event: &JobEvent) -> Result<(), NatsxError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.msg_id().as_str());
    headers.insert(names::HDR_JOB_ID, event.job_id.to_string().as_str());
    headers.insert(names::HDR_TENANT, event.tenant.as_str());
    headers.insert(names::HDR_CONTENT_TYPE, names::CONTENT_TYPE_JSON);
    crate::trace::inject_current(&mut headers);
    let body = serde_json::to_vec(event).map_err(|e| NatsxError::Corrupt {
        what: "event".into(),
        detail: e.to_string(),
    })?;
    js.publish_with_headers(
        names::event_subject(&event.job_id, event.event),
        headers,
        body.into(),
    )
    .await
    .map_err(NatsxError::js("publish event"))?
    .await
    .map_err(NatsxError::js("publish event"))?;
    Ok(())
}
