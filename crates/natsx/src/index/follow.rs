//! The task that keeps the index current: bootstrap from the bucket's stream, then
//! apply every write; rebuild from scratch with a backoff when the consumer fails.

use super::table::{Change, Meta, Table};
use super::{write, Phase, Progress};
use crate::{NatsxError, Records};
use async_nats::jetstream::consumer::push::OrderedErrorKind;
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use futures::StreamExt;
use jetmill_proto::{JobId, JobKind, JobStatus};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Messages applied under one write lock.
const APPLY_BATCH: usize = 512;
/// First wait before a failed index is rebuilt; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between rebuilds.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that stayed live this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The two fields the index needs; serde skips the rest of the record.
#[derive(serde::Deserialize)]
struct Indexed {
    status: JobStatus,
    kind: JobKind,
    #[serde(default)]
    schedule: Option<JobId>,
}

/// Turn one stream message into a change (no locks held: values may be large).
fn change_of(prefix: &str, msg: &async_nats::Message) -> Change {
    let Some((tenant, id)) = msg
        .subject
        .strip_prefix(prefix)
        .and_then(|key| key.split_once('.'))
    else {
        return Change::Skip;
    };
    let Ok(id) = id.parse::<JobId>() else {
        tracing::debug!(subject = %msg.subject, "job index: key is not <tenant>.<job id>; skipped");
        return Change::Skip;
    };
    let tenant = tenant.to_string();
    // A delete or purge, or the marker the server leaves when a record expires (its
    // retention's TTL: `Nats-Marker-Reason: MaxAge`, no `KV-Operation`).
    let removed = msg.headers.as_ref().is_some_and(|h| {
        h.get("KV-Operation").is_some_and(|op| op.as_str() != "PUT")
            || h.get("Nats-Marker-Reason").is_some()
    });
    if removed {
        return Change::Remove { tenant, id };
    }
    let (meta, schedule) = match serde_json::from_slice::<Indexed>(&msg.payload) {
        Ok(v) => (Meta(Some((v.status, v.kind))), v.schedule),
        Err(e) => {
            tracing::warn!(subject = %msg.subject, error = %e, "job index: record does not parse; listed unfiltered");
            (Meta(None), None)
        }
    };
    Change::Put {
        tenant,
        id,
        meta,
        schedule,
    }
}

/// Follow the bucket forever: build, serve, and rebuild after a failure.
pub(super) async fn keep_following(
    records: Records,
    table: Arc<RwLock<Table>>,
    tx: watch::Sender<Progress>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        tx.send_modify(|p| p.phase = Phase::Bootstrapping);
        let mut live_since = None;
        let err = follow(&records, &table, &tx, &mut live_since).await;
        tx.send_modify(|p| p.phase = Phase::Down);
        if live_since.is_some_and(|t: Instant| t.elapsed() >= HEALTHY_RUN) {
            backoff = MIN_BACKOFF;
        }
        tracing::warn!(
            error = %err,
            retry_in_ms = backoff.as_millis() as u64,
            "job index stopped; listings scan the bucket until it is rebuilt"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Bootstrap a fresh table, swap it in, then apply writes until the consumer fails.
async fn follow(
    records: &Records,
    table: &RwLock<Table>,
    tx: &watch::Sender<Progress>,
    live_since: &mut Option<Instant>,
) -> NatsxError {
    match follow_inner(records, table, tx, live_since).await {
        Ok(()) => NatsxError::JetStream {
            op: "follow the jobs bucket",
            source: "the consumer's message stream ended".into(),
        },
        Err(e) => e,
    }
}

async fn follow_inner(
    records: &Records,
    table: &RwLock<Table>,
    tx: &watch::Sender<Progress>,
    live_since: &mut Option<Instant>,
) -> Result<(), NatsxError> {
    const OP: &str = "follow the jobs bucket";
    let started = Instant::now();
    let kv = records.kv();
    // Everything up to here is in the bootstrap (the consumer is created after it).
    let floor = kv
        .stream
        .get_info()
        .await
        .map_err(NatsxError::js(OP))?
        .state
        .last_sequence;
    let consumer = kv
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: records.client.new_inbox(),
            description: Some("jetmill gateway job index".into()),
            filter_subject: format!("{}>", kv.prefix),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(NatsxError::js(OP))?;
    let mut caught_up = consumer.cached_info().num_pending == 0;
    let mut messages = consumer
        .messages()
        .await
        .map_err(NatsxError::js(OP))?
        .ready_chunks(APPLY_BATCH);
    let prefix = kv.prefix.clone();

    // Bootstrap into a private table: listings keep their old view (or scan) meanwhile.
    let mut fresh = Table::default();
    let mut applied = 0;
    while !caught_up {
        let Some(batch) = messages.next().await else {
            return Ok(());
        };
        for msg in batch {
            let Some(msg) = usable(msg)? else { continue };
            let info = NatsxError::info_of(&msg, "jobs stream message metadata")?;
            applied = info.stream_sequence;
            caught_up |= info.pending == 0;
            fresh.apply(change_of(&prefix, &msg));
        }
    }
    let jobs = fresh.len();
    *write(table) = fresh;
    tx.send_replace(Progress {
        phase: Phase::Live,
        applied: applied.max(floor),
    });
    *live_since = Some(Instant::now());
    tracing::info!(
        jobs,
        bootstrap_ms = started.elapsed().as_millis() as u64,
        "job index live"
    );

    while let Some(batch) = messages.next().await {
        let mut changes = Vec::with_capacity(batch.len());
        let mut last = None;
        for msg in batch {
            let Some(msg) = usable(msg)? else { continue };
            let info = NatsxError::info_of(&msg, "jobs stream message metadata")?;
            last = Some(info.stream_sequence);
            changes.push(change_of(&prefix, &msg));
        }
        {
            let mut t = write(table);
            for c in changes {
                t.apply(c);
            }
        }
        if let Some(seq) = last {
            tx.send_modify(|p| p.applied = p.applied.max(seq));
        }
    }
    Ok(())
}

/// A delivered message, `None` for a hiccup the ordered consumer repairs itself (it
/// recreates itself after the last delivered sequence), or the error that ends this run.
fn usable(
    msg: Result<async_nats::jetstream::Message, push::OrderedError>,
) -> Result<Option<async_nats::jetstream::Message>, NatsxError> {
    match msg {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == OrderedErrorKind::MissingHeartbeat => {
            tracing::debug!(error = %e, "job index consumer missed a heartbeat; it resumes by itself");
            Ok(None)
        }
        Err(e) => Err(NatsxError::js("follow the jobs bucket")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_changes_from_the_key_the_operation_and_two_fields() {
        let prefix = "$KV.jobs.";
        let x = JobId::new();
        let mut record = serde_json::json!({
            "id": x, "tenant": "acme", "kind": "sum", "status": "running",
            "result": "9".repeat(100_000), "unknown_future_field": [1, 2, 3]
        });
        let put = async_nats::Message {
            subject: format!("$KV.jobs.acme.{x}").into(),
            reply: None,
            payload: serde_json::to_vec(&record).expect("json").into(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        match change_of(prefix, &put) {
            Change::Put {
                tenant, id, meta, ..
            } => {
                assert_eq!((tenant.as_str(), id), ("acme", x));
                assert_eq!(meta, Meta(Some((JobStatus::Running, JobKind::Sum))));
            }
            other => panic!("expected a put, got {other:?}"),
        }
        record["status"] = serde_json::json!("exploded");
        let bad = async_nats::Message {
            payload: serde_json::to_vec(&record).expect("json").into(),
            ..put.clone()
        };
        assert!(matches!(
            change_of(prefix, &bad),
            Change::Put {
                meta: Meta(None),
                ..
            }
        ));
        for op in ["DEL", "PURGE"] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("KV-Operation", op);
            let del = async_nats::Message {
                headers: Some(headers),
                payload: Default::default(),
                ..put.clone()
            };
            assert!(
                matches!(change_of(prefix, &del), Change::Remove { id, .. } if id == x),
                "{op}"
            );
        }
        let odd = async_nats::Message {
            subject: "$KV.jobs.acme.not-a-uuid".into(),
            ..put.clone()
        };
        assert!(matches!(change_of(prefix, &odd), Change::Skip));
    }
}
