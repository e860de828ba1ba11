//! The runtime control plane: desired config in KV `config`, reports in KV `workers`.

use crate::{Jet, NatsxError};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use futures::TryStreamExt;
use jetmill_proto::config::{report_key, worker_key, GLOBAL_KEY};
use jetmill_proto::{JobKind, RuntimeConfig, WorkerReport};

/// A config value and the bucket revision it was written at (0: never written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Versioned {
    pub config: RuntimeConfig,
    pub revision: u64,
}

async fn read(kv: &kv::Store, key: &str) -> Result<Versioned, NatsxError> {
    match kv.entry(key).await.map_err(NatsxError::js("read config"))? {
        Some(e) if e.operation == Operation::Put => {
            let config = serde_json::from_slice(&e.value).map_err(|err| NatsxError::Corrupt {
                what: format!("config key {key}"),
                detail: err.to_string(),
            })?;
            Ok(Versioned {
                config,
                revision: e.revision,
            })
        }
        Some(e) => Ok(Versioned {
            config: RuntimeConfig::default(),
            revision: e.revision,
        }),
        None => Ok(Versioned::default()),
    }
}

/// The global config, and this worker's effective config (global + its overrides).
pub async fn effective(
    kv: &kv::Store,
    worker_id: &str,
) -> Result<(RuntimeConfig, u64), NatsxError> {
    let global = read(kv, GLOBAL_KEY).await?;
    let own = read(kv, &worker_key(worker_id)).await?;
    Ok((
        global.config.merged(&own.config),
        global.revision.max(own.revision),
    ))
}

/// The global config alone.
pub async fn global(kv: &kv::Store) -> Result<Versioned, NatsxError> {
    read(kv, GLOBAL_KEY).await
}

/// Change the global config (or one worker's overrides) by compare-and-set, so two
/// operators changing different settings at once both land. Returns the new revision.
pub async fn update<F>(
    kv: &kv::Store,
    worker: Option<&str>,
    mut change: F,
) -> Result<Versioned, NatsxError>
where
    F: FnMut(&mut RuntimeConfig),
{
    let key = worker
        .map(worker_key)
        .unwrap_or_else(|| GLOBAL_KEY.to_string());
    loop {
        let current = read(kv, &key).await?;
        let mut config = current.config.clone();
        change(&mut config);
        let body = serde_json::to_vec(&config).map_err(|e| NatsxError::Corrupt {
            what: "config".into(),
            detail: e.to_string(),
        })?;
        let written = if current.revision == 0 {
            match kv.create(&key, body.into()).await {
                Ok(rev) => Some(rev),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => None,
                Err(e) => return Err(NatsxError::js("write config")(e)),
            }
        } else {
            match kv.update(&key, body.into(), current.revision).await {
                Ok(rev) => Some(rev),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                Err(e) => return Err(NatsxError::js("write config")(e)),
            }
        };
        if let Some(revision) = written {
            return Ok(Versioned { config, revision });
        }
    }
}

/// Every live worker's latest report (expired ones are gone from the bucket).
pub async fn workers(jet: &Jet) -> Result<Vec<WorkerReport>, NatsxError> {
    let keys: Vec<String> = jet
        .workers
        .keys()
        .await
        .map_err(NatsxError::js("list workers"))?
        .try_collect()
        .await
        .map_err(NatsxError::js("list workers"))?;
    let mut out = Vec::new();
    for key in keys {
        if let Some(bytes) = jet
            .workers
            .get(&key)
            .await
            .map_err(NatsxError::js("read worker report"))?
        {
            match serde_json::from_slice::<WorkerReport>(&bytes) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(key, error = %e, "unreadable worker report"),
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Publish this worker's report.
pub async fn report(jet: &Jet, report: &WorkerReport) -> Result<(), NatsxError> {
    let body = serde_json::to_vec(report).map_err(|e| NatsxError::Corrupt {
        what: "report".into(),
        detail: e.to_string(),
    })?;
    jet.workers
        .put(report_key(&report.id), body.into())
        .await
        .map_err(NatsxError::js("write worker report"))?;
    Ok(())
}

/// Remove this worker's report (clean shutdown).
pub async fn unreport(jet: &Jet, worker_id: &str) -> Result<(), NatsxError> {
    jet.workers
        .delete(report_key(worker_id))
        .await
        .map_err(NatsxError::js("delete worker report"))
}

/// Subject filters of the workers' consumer for `config`: every subject, or only
/// enabled kinds, so jobs of a disabled kind wait in the stream untouched.
pub fn consumer_filters(config: &RuntimeConfig) -> Vec<String> {
    if config.disabled_kinds.is_empty() {
        return vec![jetmill_proto::names::JOBS_SUBJECTS.to_string()];
    }
    let enabled: Vec<String> = JobKind::ALL
        .iter()
        .filter(|k| config.kind_enabled(**k))
        .map(|k| format!("jobs.run.*.{}", k.as_str()))
        .collect();
    if enabled.is_empty() {
        // Every kind disabled: a subject no job is published on.
        vec!["jobs.run.disabled.none".to_string()]
    } else {
        enabled
    }
}
