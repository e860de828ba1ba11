//! Per-tenant usage counters, read from the gateway's live index of the job records.
//!
//! Every gateway already follows the `jobs` bucket's change stream for listings
//! ([`JobIndex`]), and that index keeps, per tenant, how many stored records are in
//! each status. Usage and the per-tenant quota are read from those counts: no consumer,
//! no delivery or ack per job, no counter writes, and exact (a record is counted once,
//! whatever the retries or gateway crashes), where the old counters were kept from
//! lifecycle events at least once. What they count is the records stored: deleting a
//! job's record (or its expiry) takes it out of the counts.

use jetmill_natsx::{JobIndex, NatsxError, NotReady, StatusCounts};
use jetmill_proto::Usage;

/// The durable consumer on `EVENTS` that gateways before this design pulled usage
/// events from; deleted at start so the broker stops keeping its pending messages.
const LEGACY_CONSUMER: &str = jetmill_proto::names::USAGE_CONSUMER;

fn usage_of(tenant: &str, c: StatusCounts) -> Usage {
    Usage {
        tenant: tenant.to_string(),
        submitted: c.total(),
        done: c.done,
        failed: c.failed,
        cancelled: c.cancelled,
        in_flight: c.in_flight(),
    }
}

fn unavailable(e: NotReady) -> NatsxError {
    NatsxError::JetStream {
        op: "count the tenant's jobs",
        source: Box::new(e),
    }
}

/// `tenant`'s counters including every write acknowledged before the call
/// (`GET /v1/usage`: the same barrier as a listing).
pub async fn read(index: &JobIndex, tenant: &str) -> Result<Usage, NatsxError> {
    let counts = index.counts(tenant).await?.map_err(unavailable)?;
    Ok(usage_of(tenant, counts))
}

/// `tenant`'s unfinished jobs as the index holds them now (a submit's quota check:
/// no round trip, so a burst through several gateways can overshoot by the records
/// not yet applied, a few milliseconds' worth).
pub async fn in_flight_now(index: &JobIndex, tenant: &str) -> Result<u64, NatsxError> {
    let counts = index.counts_now(tenant).await.map_err(unavailable)?;
    Ok(counts.in_flight())
}

/// Delete the usage consumer older gateways kept on `EVENTS`, if it is there (best effort).
/// Looked up first, so a gateway whose NATS user may not delete it (there is nothing
/// to delete on a system provisioned by this version) makes no refused request.
pub async fn drop_legacy_consumer(events: &async_nats::jetstream::stream::Stream) {
    if let Err(e) = events.consumer_info(LEGACY_CONSUMER).await {
        tracing::debug!(error = %e, "no old usage consumer to delete");
        return;
    }
    match events.delete_consumer(LEGACY_CONSUMER).await {
        Ok(_) => tracing::info!(
            consumer = LEGACY_CONSUMER,
            "deleted the old usage consumer on EVENTS (usage now comes from the job index)"
        ),
        Err(e) => tracing::debug!(error = %e, "no old usage consumer to delete"),
    }
}
