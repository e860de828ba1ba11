//! What run limits have in use, in KV `limits`: one [`LimitUse`] per scope key,
//! changed only by compare-and-set, so every worker counts against the same places.

use crate::{Jet, NatsxError};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use jetmill_proto::limit::EACH_TENANT;
use jetmill_proto::{names, now_ms, Decision, LimitUse, LimitView, RunLimit, ScopeUsage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A scope's use and the revision it was read at (0: never written).
async fn read_at(kv: &kv::Store, key: &str) -> Result<(LimitUse, u64), NatsxError> {
    match kv
        .entry(key)
        .await
        .map_err(NatsxError::js("read a limit"))?
    {
        Some(e) if e.operation == Operation::Put => {
            let used = serde_json::from_slice(&e.value).map_err(|err| NatsxError::Corrupt {
                what: format!("limits key {key}"),
                detail: err.to_string(),
            })?;
            Ok((used, e.revision))
        }
        Some(e) => Ok((LimitUse::default(), e.revision)),
        None => Ok((LimitUse::default(), 0)),
    }
}

/// What one scope key has in use now (empty if nothing ever counted there).
pub async fn read(kv: &kv::Store, key: &str) -> Result<LimitUse, NatsxError> {
    read_at(kv, key).await.map(|(u, _)| u)
}

/// `limits` with what each has in use now. `tenant`: only what that tenant's jobs
/// count against (limits on other named tenants are left out, and a `*` limit shows
/// that tenant's counts alone); `None`: everything.
pub async fn views(
    jet: &Jet,
    limits: &[RunLimit],
    tenant: Option<&str>,
) -> Result<Vec<LimitView>, NatsxError> {
    // Scope keys come from one snapshot of the bucket only when some `*` limit needs them.
    let mut keys: Option<Vec<String>> = None;
    let now = now_ms();
    let mut out = Vec::new();
    for limit in limits {
        // Another named tenant's limit is not this caller's business.
        if matches!((limit.tenant.as_deref(), tenant), (Some(t), Some(me)) if t != EACH_TENANT && t != me)
        {
            continue;
        }
        let scope_keys: Vec<String> = match (limit.tenant.as_deref(), tenant) {
            (Some(EACH_TENANT), None) => {
                if keys.is_none() {
                    keys = Some(crate::control::bucket_keys(jet, names::LIMITS_BUCKET).await?);
                }
                let mut mine: Vec<String> = keys
                    .iter()
                    .flatten()
                    .filter(|k| limit.tenant_of_key(k).is_some())
                    .cloned()
                    .collect();
                mine.sort();
                mine
            }
            (Some(EACH_TENANT), Some(me)) => limit.key_of_tenant(me).into_iter().collect(),
            (Some(t), _) => limit.key_of_tenant(t).into_iter().collect(),
            (None, _) => limit.key_of_tenant("all").into_iter().collect(),
        };
        let mut usage = Vec::with_capacity(scope_keys.len());
        for key in scope_keys {
            let used = read(&jet.limits, &key).await?;
            let counted = limit.tenant_of_key(&key).flatten();
            usage.push(ScopeUsage::of(counted, &used, now));
        }
        out.push(LimitView {
            limit: limit.clone(),
            scope: limit.scope(),
            usage,
        });
    }
    Ok(out)
}

/// The last use of each scope key this process read or wrote, with its revision: a
/// change is tried against it without reading first (the compare-and-set rejects it if
/// it is stale, and only then is the key read), so an uncontended admission or release
/// costs one round trip, not two.
///
/// Changes this process makes to one key are also taken in turn (one lock per key), so
/// its own tasks never conflict with each other, only with other processes.
#[derive(Debug, Default)]
pub struct Known {
    last: Mutex<HashMap<String, (LimitUse, u64)>>,
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Known {
    fn turn(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.turns.lock() {
            Ok(mut t) => t.entry(key.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    fn get(&self, key: &str) -> Option<(LimitUse, u64)> {
        self.last.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: &str, used: &LimitUse, revision: u64) {
        if let Ok(mut k) = self.last.lock() {
            k.insert(key.to_string(), (used.clone(), revision));
        }
    }
}

/// Change `key`'s use with `change` by compare-and-set, retrying on a conflict.
/// `change` returns its answer and whether it changed anything (no write otherwise).
/// It first runs on what `known` holds; an answer that writes nothing (a wait) is only
/// trusted from a fresh read.
async fn modify<R>(
    kv: &kv::Store,
    known: &Known,
    key: &str,
    mut change: impl FnMut(&mut LimitUse) -> (R, bool),
) -> Result<R, NatsxError> {
    let turn = known.turn(key);
    let _turn = turn.lock().await;
    let (mut current, mut fresh) = match known.get(key) {
        Some(k) => (k, false),
        None => (read_at(kv, key).await?, true),
    };
    loop {
        let (mut used, revision) = current;
        let (answer, changed) = change(&mut used);
        if !changed {
            if fresh {
                known.put(key, &used, revision);
                return Ok(answer);
            }
            current = read_at(kv, key).await?;
            fresh = true;
            continue;
        }
        let body = serde_json::to_vec(&used).map_err(|e| NatsxError::Corrupt {
            what: format!("limits key {key}"),
            detail: e.to_string(),
        })?;
        let written = if revision == 0 {
            match kv.create(key, body.into()).await {
                Ok(rev) => Some(rev),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => None,
                Err(e) => return Err(NatsxError::js("write a limit")(e)),
            }
        } else {
            match kv.update(key, body.into(), revision).await {
                Ok(rev) => Some(rev),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                Err(e) => return Err(NatsxError::js("write a limit")(e)),
            }
        };
        match written {
            Some(rev) => {
                known.put(key, &used, rev);
                return Ok(answer);
            }
            None => {
                current = read_at(kv, key).await?;
                fresh = true;
            }
        }
    }
}

/// Admit `job` (run by `worker`) under `limit`, counted at `key`: take its place and
/// its start, or say why it waits (a wait writes nothing).
pub async fn admit(
    kv: &kv::Store,
    known: &Known,
    key: &str,
    limit: &RunLimit,
    job: &str,
    worker: &str,
) -> Result<Decision, NatsxError> {
    modify(kv, known, key, |used| {
        let decision = used.admit(limit, job, worker, now_ms());
        (decision, decision == Decision::Admit)
    })
    .await
}

/// Give back `job`'s place at `key` (nothing is written if it held none).
pub async fn release(
    kv: &kv::Store,
    known: &Known,
    key: &str,
    job: &str,
) -> Result<(), NatsxError> {
    modify(kv, known, key, |used| ((), used.release(job))).await
}

/// Renew the leases of `jobs`, run by `worker`, at `key`.
pub async fn renew(
    kv: &kv::Store,
    known: &Known,
    key: &str,
    worker: &str,
    jobs: &[String],
) -> Result<(), NatsxError> {
    modify(kv, known, key, |used| {
        (
            (),
            used.renew(worker, jobs.iter().map(String::as_str), now_ms()),
        )
    })
    .await
}
