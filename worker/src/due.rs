//! Delayed jobs whose time came wait on `SCHEDULES` (`jobs.due.>`): every worker moves
//! them into `JOBS`, where they queue like any other job (priorities, parking and
//! backpressure included). The broker does the timing; this only carries them over.

use crate::context::WorkerCtx;
use async_nats::jetstream::consumer::PullConsumer;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most due jobs moved per pull.
const BATCH: usize = 64;
/// How long one pull waits for a due job (and so how long a stop may wait for it).
const WAIT: Duration = Duration::from_secs(1);
/// Longest pause after a failed move (NATS away, `JOBS` full).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Move due jobs until `stop`; failures back off and retry (a job not moved stays on
/// `SCHEDULES`, unacked or given back, and is moved later by this or another worker).
pub async fn run(ctx: Arc<WorkerCtx>, consumer: PullConsumer, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        match jetmill_natsx::control::move_due(&ctx.jet, &consumer, BATCH, WAIT).await {
            Ok(0) => {}
            Ok(moved) => {
                backoff = Duration::from_millis(100);
                tracing::debug!(moved, "due delayed jobs moved to the queue");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "could not move due delayed jobs");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
