//! The task that keeps the index current: bootstrap from the bucket's stream, then
//! apply every write; follow again from the last applied write when the consumer
//! stalls, and rebuild from scratch with a backoff when that fails too.

use super::table::{Change, Meta, Table};
use super::{write, Phase, Progress};
use crate::stall::StallCheck;
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
/// How long the live index may go without a delivery before it compares its position
/// with the stream's head (two such checks behind in a row: stalled).
const STALL_CHECK: Duration = Duration::from_secs(1);
/// Pause between tries to follow again after a stall.
const RESUME_EVERY: Duration = Duration::from_millis(500);
/// How long a stalled index tries to follow again before it is rebuilt from scratch.
const RESUME_FOR: Duration = Duration::from_secs(30);
/// The operation named in this task's errors.
const OP: &str = "follow the jobs bucket";

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
            op: OP,
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
    let (mut messages, pending) = open(records, DeliverPolicy::LastPerSubject).await?;
    let mut caught_up = pending == 0;
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
    let mut applied = applied.max(floor);
    tx.send_replace(Progress {
        phase: Phase::Live,
        applied,
    });
    *live_since = Some(Instant::now());
    tracing::info!(
        jobs,
        bootstrap_ms = started.elapsed().as_millis() as u64,
        "job index live"
    );

    let mut stall = StallCheck::default();
    loop {
        let batch = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
            Ok(Some(batch)) => batch,
            Ok(None) => return Ok(()),
            Err(_) => {
                // Quiet: fine if nothing was written since; stalled if the stream moved
                // on (see `stall`). A head that cannot be read (an election) is checked
                // again at the next quiet spell.
                let head = match kv.stream.get_info().await {
                    Ok(info) => info.state.last_sequence,
                    Err(e) => {
                        tracing::debug!(error = %e, "job index: the stream's head is unreadable; checking again");
                        continue;
                    }
                };
                if stall.quiet(head, applied) {
                    tracing::warn!(
                        applied,
                        head,
                        "job index consumer stalled; following again after the last applied write"
                    );
                    messages = resume(records, applied).await?;
                    stall = StallCheck::default();
                }
                continue;
            }
        };
        let mut changes = Vec::with_capacity(batch.len());
        let mut gone = false;
        for msg in batch {
            let msg = match msg {
                Ok(m) => m,
                // The consumer is gone (its server died, or it was deleted): follow again
                // at once rather than wait for async-nats' own recreation, whose retries
                // are 10 s apart once four have failed.
                Err(e) if e.kind() == OrderedErrorKind::MissingHeartbeat => {
                    gone = true;
                    break;
                }
                Err(e) => return Err(NatsxError::js(OP)(e)),
            };
            let info = NatsxError::info_of(&msg, "jobs stream message metadata")?;
            applied = applied.max(info.stream_sequence);
            changes.push(change_of(&prefix, &msg));
        }
        if !changes.is_empty() {
            stall.delivered();
            let mut t = write(table);
            for c in changes {
                t.apply(c);
            }
        }
        tx.send_modify(|p| p.applied = p.applied.max(applied));
        if gone {
            tracing::warn!(applied, "job index consumer missed its heartbeats; following again after the last applied write");
            messages = resume(records, applied).await?;
            stall = StallCheck::default();
        }
    }
}

/// The deliveries of an ordered push consumer on the whole bucket, in chunks.
type Deliveries = futures::stream::ReadyChunks<push::Ordered>;

/// A new ordered consumer on the bucket's stream from `policy`, and how many messages
/// it had pending when created.
async fn open(records: &Records, policy: DeliverPolicy) -> Result<(Deliveries, u64), NatsxError> {
    let kv = records.kv();
    let consumer = kv
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: records.client.new_inbox(),
            description: Some("jetmill gateway job index".into()),
            filter_subject: format!("{}>", kv.prefix),
            deliver_policy: policy,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(NatsxError::js(OP))?;
    let pending = consumer.cached_info().num_pending;
    let messages = consumer
        .messages()
        .await
        .map_err(NatsxError::js(OP))?
        .ready_chunks(APPLY_BATCH);
    Ok((messages, pending))
}

/// Follow again from the write after `applied`, keeping the table: tries every
/// [`RESUME_EVERY`] for [`RESUME_FOR`] (a new stream leader takes seconds), then gives up
/// to a rebuild.
async fn resume(records: &Records, applied: u64) -> Result<Deliveries, NatsxError> {
    let policy = DeliverPolicy::ByStartSequence {
        start_sequence: applied + 1,
    };
    let deadline = Instant::now() + RESUME_FOR;
    loop {
        let tried = tokio::time::timeout(RESUME_EVERY * 4, open(records, policy)).await;
        match tried {
            Ok(Ok((messages, _))) => return Ok(messages),
            Ok(Err(e)) if Instant::now() >= deadline => return Err(e),
            Err(_) if Instant::now() >= deadline => {
                return Err(NatsxError::JetStream {
                    op: OP,
                    source: "no answer to creating the consumer".into(),
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "job index: following again failed; retrying")
            }
            Err(_) => tracing::debug!("job index: no answer to following again; retrying"),
        }
        tokio::time::sleep(RESUME_EVERY).await;
    }
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
        Err(e) => Err(NatsxError::js(OP)(e)),
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
