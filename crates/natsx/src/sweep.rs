//! The sweep: removes workflows and batches that outlived their jobs.
//!
//! Job records expire by the broker's per-message TTL, but a workflow's keys (it drives
//! its steps: gates, halt) and a batch's entry (its item ids) cannot carry one: nobody
//! knows at write time when their last job will finish. So a process (every gateway)
//! walks both buckets now and then and removes what is gone: a workflow none of whose
//! steps has a record and whose steps' retention has passed since it was stored
//! ([`workflows::expired`]); a batch past the deployment's retention none of whose jobs
//! has a record ([`batches::expired`]). Readers answer 404 for both by the same rules,
//! so the sweep changes nothing anyone can see; it frees the store.

use crate::{batches, listing, workflows, Jet, NatsxError};
use async_nats::jetstream::kv;
use jetmill_proto::JobId;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub workflows: usize,
    pub batches: usize,
}

/// The tenant, the id and the id's time (ms since the epoch, from the UUIDv7) of a
/// `<tenant>.<id>` key.
fn parse_key(key: &str) -> Option<(&str, JobId, i64)> {
    let (tenant, id) = key.rsplit_once('.')?;
    let id: JobId = id.parse().ok()?;
    let (secs, nanos) = id.0.get_timestamp()?.to_unix();
    let ms = i64::try_from(secs).ok()?.checked_mul(1000)? + i64::from(nanos / 1_000_000);
    Some((tenant, id, ms))
}

/// The `<tenant>.<id>` keys of `bucket` stored longer ago than the deployment's
/// retention: younger ones hold jobs that are kept still, not worth reading yet. (A step
/// or job with a shorter retention of its own is swept once the deployment's has passed;
/// readers already answer 404 for it.) Tenants are single subject tokens, so a
/// workflow's gates and halt (more tokens) do not match.
async fn old_keys(
    jet: &Jet,
    bucket: &kv::Store,
    what: &'static str,
) -> Result<Vec<(String, JobId)>, NatsxError> {
    let keys = listing::live_keys(&jet.client, bucket, "*.*", what).await?;
    Ok(keys
        .iter()
        .filter_map(|key| parse_key(key))
        .filter(|(_, _, stored_ms)| !jet.records.absence_means_unrecorded(*stored_ms, None))
        .map(|(tenant, id, _)| (tenant.to_string(), id))
        .collect())
}

/// Walk `workflows` and `batches` once and remove what expired.
pub async fn once(jet: &Jet) -> Result<Swept, NatsxError> {
    let mut swept = Swept::default();
    for (tenant, id) in old_keys(jet, &jet.workflows, "scan workflows").await? {
        let Some(wf) = workflows::get(jet, &tenant, &id).await? else {
            continue;
        };
        let jobs = workflows::step_jobs(jet, &wf).await?;
        if workflows::expired(jet, &wf, &jobs) {
            workflows::remove(jet, &wf).await?;
            swept.workflows += 1;
        }
    }
    for (tenant, id) in old_keys(jet, &jet.batches, "scan batches").await? {
        let Some(batch) = batches::get(jet, &tenant, &id).await? else {
            continue;
        };
        if batches::expired(jet, &batch).await? {
            batches::remove(jet, &batch).await?;
            swept.batches += 1;
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_id_and_the_time_in_it() {
        let id = JobId::new();
        let before = jetmill_proto::now_ms();
        let key = format!("acme.{id}");
        let (tenant, parsed, ms) = parse_key(&key).expect("a workflow key");
        assert_eq!((tenant, parsed), ("acme", id));
        assert!((ms - before).abs() < 1000, "{ms} vs {before}");
        assert!(parse_key(&format!("acme.{id}.halt")).is_none());
        assert!(parse_key("acme.not-an-id").is_none());
    }
}
