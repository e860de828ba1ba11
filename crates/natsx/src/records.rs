//! Job records in the `jobs` KV bucket, updated only by compare-and-set.
//!
//! Every writer reads the record with its revision, decides, and writes back
//! with "expect this revision". If someone else wrote in between, it re-reads
//! and decides again, so a late `running` can never overwrite `done`.

use crate::NatsxError;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use jetmill_proto::{names, now_ms, JobId, JobRecord};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Clock difference between the processes that compare a claim's or workflow's age
/// with a retention (gateways on different hosts): a margin, not a correction.
const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// The JetStream API error code in `e`'s chain, if the server answered with one.
fn api_code(e: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(js) = c.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code().0);
        }
        cur = c.source();
    }
    None
}

/// Whether `e` is the server refusing a TTL on a stream that does not allow them.
fn ttl_disabled(e: &NatsxError) -> bool {
    api_code(e) == Some(10166) || e.to_string().contains("per-message TTL is disabled")
}

/// What an update function decided, and what the record is now.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The change was written; the record as stored.
    Applied(JobRecord),
    /// The function declined (e.g. the record is already terminal); the current record.
    Unchanged(JobRecord),
    /// No record exists and no fallback was given.
    Missing,
}

/// A record as read (or as last written by this process) and the revision a
/// compare-and-set over it must expect (`None`: no record exists yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// The record at that revision.
    pub record: JobRecord,
    revision: Option<u64>,
}

impl Version {
    /// Whether the record exists in the bucket (`false`: this is a fallback).
    pub fn stored(&self) -> bool {
        self.revision.is_some()
    }

    /// A record not stored yet: writing it creates it.
    pub fn absent(record: JobRecord) -> Self {
        Version {
            record,
            revision: None,
        }
    }
}

/// The `jobs` bucket, typed.
#[derive(Clone)]
pub struct Records {
    kv: kv::Store,
    /// For inboxes of the key-listing consumers.
    pub(crate) client: async_nats::Client,
    /// For compare-and-set writes with a TTL (the KV API has none for updates).
    js: async_nats::jetstream::Context,
    /// How long a finished record is kept when it names no retention of its own.
    retention: Duration,
    /// Set once a TTL write was refused because the bucket does not allow TTLs (an
    /// older deployment whose `jetmill provision` has not run since): records are then
    /// written without one, kept for good, as before.
    ttl_refused: Arc<AtomicBool>,
}

impl Records {
    /// Wrap the `jobs` bucket; finished records expire after `retention` unless they
    /// say otherwise.
    pub fn new(
        kv: kv::Store,
        client: async_nats::Client,
        js: async_nats::jetstream::Context,
        retention: Duration,
    ) -> Self {
        Records {
            kv,
            client,
            js,
            retention,
            ttl_refused: Arc::new(AtomicBool::new(false)),
        }
    }

    /// How long `record` is kept once stored: `None` while it is not finished.
    pub fn ttl_of(&self, record: &JobRecord) -> Option<Duration> {
        record
            .status
            .is_terminal()
            .then(|| self.kept_for(record.retention_secs))
    }

    /// How long a finished record with `retention_secs` (its job's own, if any) is kept.
    pub fn kept_for(&self, retention_secs: Option<u64>) -> Duration {
        retention_secs
            .map(Duration::from_secs)
            .unwrap_or(self.retention)
            .max(Duration::from_secs(1))
    }

    /// Whether a job with `retention_secs`, published no earlier than `since_ms` (ms
    /// since the epoch) and without a record now, surely never had one: had it been
    /// recorded and finished, its record would still be kept. Past that a missing record
    /// may be one that expired, and whoever would publish the job again (an idempotency
    /// heal, a workflow's root repair) must not: that would run a finished job twice.
    pub fn absence_means_unrecorded(&self, since_ms: i64, retention_secs: Option<u64>) -> bool {
        if self.ttl_refused.load(Ordering::Relaxed) {
            return true; // records are kept for good here
        }
        let age =
            Duration::from_millis(u64::try_from(now_ms().saturating_sub(since_ms)).unwrap_or(0));
        age + CLOCK_SKEW < self.kept_for(retention_secs)
    }

    /// Write `value` over revision `rev` (or create it when `rev` is `None`) expiring
    /// after `ttl`; `Ok(None)` when another write came first.
    async fn write_with_ttl(
        &self,
        key: &str,
        value: bytes::Bytes,
        rev: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<u64>, NatsxError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            rev.unwrap_or(0).to_string().as_str(),
        );
        headers.insert("Nats-TTL", ttl.as_secs().to_string().as_str());
        let subject = format!("$KV.{}.{key}", names::JOBS_BUCKET);
        let ack = self
            .js
            .publish_with_headers(subject, headers, value)
            .await
            .map_err(NatsxError::js("write job record"))?
            .await;
        match ack {
            Ok(a) => Ok(Some(a.sequence)),
            Err(e) => match api_code(&e) {
                // "wrong last sequence": someone else wrote first.
                Some(10071) => Ok(None),
                // A create over a deleted or expired record: expect its marker.
                _ if rev.is_none() => Err(NatsxError::js("create job record")(e)),
                _ => Err(NatsxError::js("write job record")(e)),
            },
        }
    }

    /// The raw bucket (for watchers and inspection).
    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }

    /// The record and its revision, if it exists.
    pub async fn get(
        &self,
        tenant: &str,
        id: &JobId,
    ) -> Result<Option<(JobRecord, u64)>, NatsxError> {
        Ok(self
            .read_version(tenant, id, None)
            .await?
            .and_then(|v| Some((v.record, v.revision?))))
    }

    /// Delete `tenant`'s record `id` if `keep_going` says so of its current content, by
    /// its revision (a write in between refuses the delete). `false` when it was not
    /// deleted: missing, refused by `keep_going`, or changed meanwhile.
    pub async fn delete_if(
        &self,
        tenant: &str,
        id: &JobId,
        keep_going: impl Fn(&JobRecord) -> bool,
    ) -> Result<bool, NatsxError> {
        let Some((record, revision)) = self.get(tenant, id).await? else {
            return Ok(false);
        };
        if !keep_going(&record) {
            return Ok(false);
        }
        let key = names::record_key(tenant, id);
        match self.kv.delete_expect_revision(&key, Some(revision)).await {
            Ok(()) => Ok(true),
            Err(e) => match self.get(tenant, id).await? {
                // Refused because it was written (or deleted) meanwhile.
                Some((_, now)) if now != revision => Ok(false),
                None => Ok(false),
                Some(_) => Err(NatsxError::js("delete job record")(e)),
            },
        }
    }

    /// Store a new record; returns `false` (and writes nothing) if one already exists.
    pub async fn create(&self, record: &JobRecord) -> Result<bool, NatsxError> {
        // A compare-and-set from "absent": a record found there is left alone.
        let mut first = true;
        let (update, _) = self
            .update_from(
                &record.tenant,
                &record.id,
                Some(Version::absent(record.clone())),
                None,
                |_| std::mem::replace(&mut first, false),
            )
            .await?;
        Ok(matches!(update, Update::Applied(_)))
    }

    /// Read-decide-write under compare-and-set until it sticks.
    ///
    /// `decide` gets the current record (or `fallback` when none exists yet, e.g. a
    /// worker that overtook the gateway) and returns `true` to write its changes.
    pub async fn update<F>(
        &self,
        tenant: &str,
        id: &JobId,
        fallback: Option<&JobRecord>,
        decide: F,
    ) -> Result<Update, NatsxError>
    where
        F: FnMut(&mut JobRecord) -> bool,
    {
        Ok(self
            .update_from(tenant, id, None, fallback, decide)
            .await?
            .0)
    }

    /// The record as stored now (or `fallback` when none exists), with the revision a
    /// compare-and-set must expect; `None` when there is no record and no fallback.
    pub async fn read_version(
        &self,
        tenant: &str,
        id: &JobId,
        fallback: Option<&JobRecord>,
    ) -> Result<Option<Version>, NatsxError> {
        let key = names::record_key(tenant, id);
        let entry = self
            .kv
            .entry(key.clone())
            .await
            .map_err(NatsxError::js("read job record"))?;
        Ok(match &entry {
            Some(e) if e.operation == Operation::Put => Some(Version {
                record: parse(&key, &e.value)?,
                revision: Some(e.revision),
            }),
            // Deleted or purged: a write must expect the marker's revision.
            Some(e) => fallback.map(|f| Version {
                record: f.clone(),
                revision: Some(e.revision),
            }),
            None => fallback.map(|f| Version {
                record: f.clone(),
                revision: None,
            }),
        })
    }

    /// The one compare-and-set loop every record write goes through ([`Records::update`]
    /// and [`Records::create`] are this with no known version / an absent one).
    ///
    /// Starts from `known` when the caller holds a version (saves the read when nobody
    /// wrote since), else reads. On a conflicting write it re-reads and calls `decide`
    /// again, so `decide` always sees the latest record. Returns the version after it,
    /// so a next write needs no read either.
    pub async fn update_from<F>(
        &self,
        tenant: &str,
        id: &JobId,
        known: Option<Version>,
        fallback: Option<&JobRecord>,
        mut decide: F,
    ) -> Result<(Update, Option<Version>), NatsxError>
    where
        F: FnMut(&mut JobRecord) -> bool,
    {
        let key = names::record_key(tenant, id);
        let mut current = known;
        loop {
            let version = match current.take() {
                Some(v) => v,
                None => match self.read_version(tenant, id, fallback).await? {
                    Some(v) => v,
                    None => return Ok((Update::Missing, None)),
                },
            };
            let mut record = version.record.clone();
            if !decide(&mut record) {
                return Ok((Update::Unchanged(version.record.clone()), Some(version)));
            }
            let value: bytes::Bytes = record.to_json().into();
            let ttl = self
                .ttl_of(&record)
                .filter(|_| !self.ttl_refused.load(Ordering::Relaxed));
            if let Some(ttl) = ttl {
                match self
                    .write_with_ttl(&key, value.clone(), version.revision, ttl)
                    .await
                {
                    Ok(Some(new)) => {
                        let after = Version {
                            record: record.clone(),
                            revision: Some(new),
                        };
                        return Ok((Update::Applied(record), Some(after)));
                    }
                    Ok(None) => continue,
                    Err(e) if ttl_disabled(&e) => {
                        tracing::warn!("the jobs bucket takes no per-message TTL: finished records are kept for good; run `jetmill provision` to enable retention");
                        self.ttl_refused.store(true, Ordering::Relaxed);
                    }
                    // A create where a deleted record's marker is: the plain create
                    // below knows how to expect it.
                    Err(_) if version.revision.is_none() => {}
                    Err(e) => return Err(e),
                }
            }
            let written = match version.revision {
                Some(rev) => match self.kv.update(&key, value, rev).await {
                    Ok(new) => Some(new),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                    Err(e) => return Err(NatsxError::js("update job record")(e)),
                },
                None => match self.kv.create(&key, value).await {
                    Ok(new) => Some(new),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => None,
                    Err(e) => return Err(NatsxError::js("create job record")(e)),
                },
            };
            if let Some(new) = written {
                let after = Version {
                    record: record.clone(),
                    revision: Some(new),
                };
                return Ok((Update::Applied(record), Some(after)));
            }
            // Someone else wrote first: read again and decide again.
        }
    }

    /// Find a job by id when the tenant is not known (admin and operator paths).
    pub async fn find(&self, id: &JobId) -> Result<Option<JobRecord>, NatsxError> {
        let keys = self.keys_matching(&format!("*.{id}")).await?;
        for key in keys {
            if let Some((tenant, _)) = key.split_once('.') {
                if let Some((r, _)) = self.get(tenant, id).await? {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// Follow `tenant`'s records from now on (a watch of `<tenant>.*`): each record
    /// written, decoded as `T` (e.g. a part of it) with its job id and revision.
    /// Deletes and purges are skipped, and so (logged) is a value that does not decode.
    pub async fn watch_tenant<T>(&self, tenant: &str) -> Result<Watch<T>, NatsxError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.watch(format!("{tenant}.*"), "watch job records").await
    }

    /// Follow `tenant`'s record `id` from now on, as [`Records::watch_tenant`] does.
    pub async fn watch_one<T>(&self, tenant: &str, id: &JobId) -> Result<Watch<T>, NatsxError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.watch(names::record_key(tenant, id), "watch job record")
            .await
    }

    async fn watch<T>(&self, filter: String, op: &'static str) -> Result<Watch<T>, NatsxError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        use futures::StreamExt;
        let changes = self.kv.watch(filter).await.map_err(NatsxError::js(op))?;
        Ok(changes
            .filter_map(move |next| {
                futures::future::ready(match next {
                    Err(e) => Some(Err(NatsxError::js(op)(e))),
                    Ok(entry) if entry.operation != Operation::Put => None,
                    Ok(entry) => entry
                        .key
                        .split_once('.')
                        .and_then(|(_, id)| id.parse::<JobId>().ok())
                        .and_then(|id| match serde_json::from_slice::<T>(&entry.value) {
                            Ok(record) => Some(Ok(Watched {
                                id,
                                revision: entry.revision,
                                record,
                            })),
                            Err(e) => {
                                tracing::warn!(key = %entry.key, error = %e, "unreadable job record in watch");
                                None
                            }
                        }),
                })
            })
            .boxed())
    }
}

/// The records a watch of [`Records`] yields, in the order they were written.
pub type Watch<T> = futures::stream::BoxStream<'static, Result<Watched<T>, NatsxError>>;

/// A record written, as a watch of [`Records`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched<T> {
    /// The job (from the key).
    pub id: JobId,
    /// The KV revision of this write.
    pub revision: u64,
    /// The record as written, decoded.
    pub record: T,
}

fn parse(key: &str, bytes: &[u8]) -> Result<JobRecord, NatsxError> {
    JobRecord::from_json(bytes).map_err(|e| NatsxError::Corrupt {
        what: format!("job record {key}"),
        detail: e.to_string(),
    })
}
