//! Every `--sweep-interval-secs`, remove workflows and batches whose jobs all finished
//! and expired ([`jetmill_natsx::sweep`]): readers answer 404 for them already; this
//! frees their keys. A failed sweep is logged and tried again at the next interval.

use crate::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sweep every `every` until `shutdown`; the first sweep runs one interval after start.
pub async fn run(state: AppState, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sweep = jetmill_natsx::sweep::once(state.jet());
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = sweep => outcome,
        };
        match outcome {
            Ok(s) if s.workflows + s.batches > 0 => tracing::info!(
                workflows = s.workflows,
                batches = s.batches,
                "removed expired workflows and batches"
            ),
            Ok(_) => tracing::debug!("sweep found nothing expired"),
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired workflows and batches failed; trying again later")
            }
        }
    }
}
