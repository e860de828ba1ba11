//! Listing job records: per-tenant key scans and cursor pages, newest first.
//!
//! Keys are `<tenant>.<job_id>` and ids are UUIDv7, so a tenant's keys come from one
//! subject-filtered, headers-only scan of the bucket's stream (no values are read),
//! sort by id to sort by submission time, and a page is "ids below the cursor".

use crate::{NatsxError, Records};
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv;
use futures::{StreamExt, TryStreamExt};
use jetmill_proto::{JobId, JobKind, JobRecord, JobStatus};
use std::time::Duration;

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this tenant's jobs (`None`: every tenant, for admins).
    pub tenant: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this kind.
    pub kind: Option<JobKind>,
    /// Only jobs made by this recurring schedule's firings.
    pub schedule: Option<JobId>,
    /// Only jobs older than this one (the previous page's cursor).
    pub before: Option<JobId>,
    /// Most jobs in the page.
    pub limit: usize,
}

impl ListQuery {
    /// Whether `r` passes this query's status and kind filters (tenant and cursor are
    /// positions, checked by whoever walks the ids).
    pub fn admits(&self, r: &JobRecord) -> bool {
        self.status.is_none_or(|s| s == r.status)
            && self.kind.is_none_or(|k| k == r.kind)
            && self.schedule.is_none_or(|s| r.schedule == Some(s))
    }
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// Matching records, newest first.
    pub jobs: Vec<JobRecord>,
    /// The last id of this page when more matching jobs may follow.
    pub next: Option<JobId>,
}

/// Records fetched concurrently while filling a page.
const FETCH_CONCURRENCY: usize = 16;
/// Longest a key scan may take before it is reported as a failure.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);

impl Records {
    /// Keys of live records whose key matches the NATS subject `filter` (`acme.*`, `*.<id>`).
    pub async fn keys_matching(&self, filter: &str) -> Result<Vec<String>, NatsxError> {
        live_keys(&self.client, self.kv(), filter, "list job records").await
    }

    /// One page of records matching `q`, newest first, starting below `q.before`.
    ///
    /// Scans every key of the tenant (every key for an admin) on each call: the
    /// fallback of [`JobIndex::page`](crate::JobIndex::page) and its benchmark baseline.
    pub async fn page(&self, q: &ListQuery) -> Result<Page, NatsxError> {
        let filter = match &q.tenant {
            Some(t) => format!("{t}.*"),
            None => "*.*".to_string(),
        };
        let mut ids: Vec<(JobId, String)> = self
            .keys_matching(&filter)
            .await?
            .into_iter()
            .filter_map(|k| {
                let (t, id) = k.split_once('.')?;
                Some((id.parse().ok()?, t.to_string()))
            })
            .filter(|(id, _)| q.before.is_none_or(|b| *id < b))
            .collect();
        ids.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));

        let limit = q.limit.max(1);
        let mut jobs = Vec::with_capacity(limit.min(ids.len()));
        let mut scanned = 0;
        // Read in chunks (concurrently within a chunk) until the page is full.
        for chunk in ids.chunks(limit.max(FETCH_CONCURRENCY)) {
            let records: Vec<Option<JobRecord>> = futures::stream::iter(chunk.to_vec())
                .map(|(id, t)| {
                    let this = self.clone();
                    async move { Ok::<_, NatsxError>(this.get(&t, &id).await?.map(|(r, _)| r)) }
                })
                .buffered(FETCH_CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await?;
            for record in records {
                scanned += 1;
                let Some(r) = record else { continue };
                if !q.admits(&r) {
                    continue;
                }
                jobs.push(r);
                if jobs.len() == limit {
                    let more = scanned < ids.len();
                    let next = if more {
                        jobs.last().map(|r| r.id)
                    } else {
                        None
                    };
                    return Ok(Page { jobs, next });
                }
            }
        }
        Ok(Page { jobs, next: None })
    }
}

/// Keys of live entries of bucket `kv` whose key matches the NATS subject `filter`, from
/// one headers-only scan (no values are read); `what` names the operation in errors.
///
/// Each call creates an ephemeral consumer and deletes it when done: left to expire
/// (30 s), a few hundred scans a second would hit the server's default limit of
/// 1,000 consumers per stream and fail every listing and admin lookup.
pub(crate) async fn live_keys(
    client: &async_nats::Client,
    kv: &kv::Store,
    filter: &str,
    what: &'static str,
) -> Result<Vec<String>, NatsxError> {
    let consumer = kv
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            description: Some(format!("jetmill key scan: {what}")),
            filter_subject: format!("{}{filter}", kv.prefix),
            headers_only: true,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(NatsxError::js(what))?;
    let name = consumer.cached_info().name.clone();
    let keys = scan_keys(kv, consumer, what).await;
    if let Err(e) = kv.stream.delete_consumer(&name).await {
        tracing::debug!(consumer = %name, error = %e, "key scan consumer not deleted; it expires by itself");
    }
    keys
}

async fn scan_keys(
    kv: &kv::Store,
    consumer: async_nats::jetstream::consumer::Consumer<push::OrderedConfig>,
    what: &'static str,
) -> Result<Vec<String>, NatsxError> {
    let mut keys = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(keys);
    }
    let mut messages = consumer.messages().await.map_err(NatsxError::js(what))?;
    let scan = async {
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(NatsxError::js(what))?;
            let info = NatsxError::info_of(&msg, "key scan")?;
            let pending = info.pending;
            let live = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_none_or(|op| op.as_str() == "PUT");
            if live {
                if let Some(key) = msg.subject.strip_prefix(kv.prefix.as_str()) {
                    keys.push(key.to_string());
                }
            }
            if pending == 0 {
                break;
            }
        }
        Ok::<_, NatsxError>(())
    };
    tokio::time::timeout(SCAN_TIMEOUT, scan)
        .await
        .map_err(NatsxError::js(what))??;
    Ok(keys)
}
