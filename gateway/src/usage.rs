//! Per-tenant usage counters, kept from the `EVENTS` stream.
//!
//! Every gateway pulls from one shared durable consumer (`usage`) that sees the
//! `accepted`, `done`, `failed` and `cancelled` events, so each event is counted by
//! exactly one gateway. A batch is folded per tenant and written to KV `usage` by
//! compare-and-set, then its messages are acked; a gateway that dies between the two
//! makes the batch count twice (at-least-once), which the docs state.

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::Message;
use futures::StreamExt;
use jetmill_natsx::{Jet, NatsxError};
use jetmill_proto::{names, JobEvent, Usage};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The durable consumer the gateways share.
async fn consumer(jet: &Jet) -> Result<pull::Stream, NatsxError> {
    let subjects = ["accepted", "done", "failed", "cancelled"]
        .map(|t| format!("jobs.events.*.{t}"))
        .to_vec();
    let consumer = jet
        .events
        .get_or_create_consumer(
            names::USAGE_CONSUMER,
            pull::Config {
                durable_name: Some(names::USAGE_CONSUMER.into()),
                description: Some("jetmill gateways counting per-tenant usage".into()),
                filter_subjects: subjects,
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(NatsxError::js("usage consumer"))?;
    consumer
        .messages()
        .await
        .map_err(NatsxError::js("usage consumer"))
}

/// Count events into KV `usage` until `stop`.
pub async fn keep_counting(jet: Jet, stop: CancellationToken) {
    loop {
        let messages = tokio::select! {
            _ = stop.cancelled() => return,
            m = consumer(&jet) => m,
        };
        match messages {
            Ok(messages) => {
                let mut batches = messages.ready_chunks(512);
                loop {
                    let batch = tokio::select! {
                        _ = stop.cancelled() => return,
                        b = batches.next() => b,
                    };
                    let Some(batch) = batch else { break };
                    let batch: Vec<Message> = batch
                        .into_iter()
                        .filter_map(|m| match m {
                            Ok(m) => Some(m),
                            Err(e) => {
                                tracing::debug!(error = %e, "usage consumer hiccup");
                                None
                            }
                        })
                        .collect();
                    count_batch(&jet.usage, batch).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "usage counting paused"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Fold `batch` per tenant, add each tenant's counts, ack what was counted.
async fn count_batch(store: &kv::Store, batch: Vec<Message>) {
    let mut per_tenant: HashMap<String, (Usage, Vec<Message>)> = HashMap::new();
    for message in batch {
        match serde_json::from_slice::<JobEvent>(&message.payload) {
            Ok(event) => {
                let (usage, messages) = per_tenant.entry(event.tenant.clone()).or_default();
                usage.count(event.event);
                messages.push(message);
            }
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "unreadable event skipped by usage");
                ack(&message).await;
            }
        }
    }
    for (tenant, (delta, messages)) in per_tenant {
        match add(store, &tenant, &delta).await {
            Ok(()) => {
                for m in &messages {
                    ack(m).await;
                }
            }
            // Unacked: redelivered after ack_wait and counted then.
            Err(e) => tracing::warn!(tenant, error = %e, "usage not updated; will retry"),
        }
    }
}

async fn ack(message: &Message) {
    if let Err(e) = message.ack().await {
        tracing::debug!(error = %e, "usage ack failed");
    }
}

/// Add `delta` to `tenant`'s counters by compare-and-set.
async fn add(store: &kv::Store, tenant: &str, delta: &Usage) -> Result<(), NatsxError> {
    loop {
        let current = store
            .entry(tenant)
            .await
            .map_err(NatsxError::js("read usage"))?;
        let (mut usage, revision) = match &current {
            Some(e) if e.operation == kv::Operation::Put => (
                serde_json::from_slice::<Usage>(&e.value).unwrap_or_default(),
                Some(e.revision),
            ),
            _ => (Usage::default(), None),
        };
        usage.tenant = tenant.to_string();
        usage.add(delta);
        let body = serde_json::to_vec(&usage).map_err(|e| NatsxError::Corrupt {
            what: "usage".into(),
            detail: e.to_string(),
        })?;
        let written = match revision {
            None => match store.create(tenant, body.into()).await {
                Ok(_) => true,
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => false,
                Err(e) => return Err(NatsxError::js("write usage")(e)),
            },
            Some(rev) => match store.update(tenant, body.into(), rev).await {
                Ok(_) => true,
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => false,
                Err(e) => return Err(NatsxError::js("write usage")(e)),
            },
        };
        if written {
            return Ok(());
        }
    }
}

/// `tenant`'s counters (all zero if it never submitted).
pub async fn read(store: &kv::Store, tenant: &str) -> Result<Usage, NatsxError> {
    let usage = match store
        .get(tenant)
        .await
        .map_err(NatsxError::js("read usage"))?
    {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| NatsxError::Corrupt {
            what: format!("usage of {tenant}"),
            detail: e.to_string(),
        })?,
        None => Usage::default(),
    };
    Ok(Usage {
        tenant: tenant.to_string(),
        ..usage
    })
}
