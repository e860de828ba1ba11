//! Applying the controller's runtime config live, and reporting this worker.
//!
//! The worker watches KV `config`; on every change it re-reads the global key and
//! its own overrides, applies them (freeze, concurrency, log filter, chaos, run
//! limits, the kinds: disabled ones are parked, enabled ones unparked), and only then reports the revision as applied, so a
//! `jetmill freeze` that returns means no new job will start.

use crate::context::WorkerCtx;
use futures::StreamExt;
use jetmill_natsx::control;
use jetmill_proto::{JobKind, RuntimeConfig, WorkerReport};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a worker refreshes its report (the bucket expires reports after 10 s).
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// Apply `config` (this worker's effective config) at `revision`, then report.
pub async fn apply(ctx: &Arc<WorkerCtx>, config: &RuntimeConfig, revision: u64) {
    ctx.set_concurrency(config.concurrency.unwrap_or(ctx.default_concurrency));
    if let Ok(mut chaos) = ctx.chaos.write() {
        // Set in the config (even "off") wins over the worker's flags.
        *chaos = match config.chaos {
            Some(c) => c.is_active().then_some(c),
            None => ctx.default_chaos,
        };
    }
    if let Some(level) = &config.log_level {
        if let Err(e) = ctx.log.set_filter(level) {
            tracing::warn!(error = %e, "ignoring the configured log level");
        }
    }
    if let Ok(mut d) = ctx.disabled_kinds.write() {
        *d = config.disabled_kinds.clone();
    }
    ctx.gate.set(config.limits.clone());
    // Jobs parked while their kind was disabled go back into the queue.
    for kind in JobKind::ALL.into_iter().filter(|k| config.kind_enabled(*k)) {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            match control::unpark(&ctx.jet, kind).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    kind = kind.as_str(),
                    jobs = n,
                    "parked jobs back in the queue"
                ),
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %e, "cannot move parked jobs back")
                }
            }
        });
    }
    let frozen = config.frozen.unwrap_or(false);
    ctx.frozen.send_replace(frozen);
    if frozen {
        // Wait until the pull loop has no pull request open (at most one pull expiry).
        let mut parked = ctx.parked.subscribe();
        if tokio::time::timeout(Duration::from_secs(10), parked.wait_for(|p| *p))
            .await
            .is_err()
        {
            tracing::warn!("pull loop did not park within 10 s");
        }
    }
    ctx.config_revision.fetch_max(revision, Ordering::Relaxed);
    tracing::info!(
        revision,
        frozen,
        concurrency = ctx.concurrency(),
        "runtime config applied"
    );
    send_report(ctx).await;
}

/// Read the effective config now (before the first fetch).
///
/// A worker must not start on defaults when the read fails: the fleet may be frozen,
/// or a kind disabled, and a worker scaled up into a busy cluster would then run what
/// the operator held back. So a failed read is retried (0.5 s doubling to 5 s) until it
/// succeeds; `None` if `stop` comes first. An absent config is the defaults, as it says.
pub async fn load(ctx: &WorkerCtx, stop: &CancellationToken) -> Option<(RuntimeConfig, u64)> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match control::effective(&ctx.jet.config, &ctx.worker_id).await {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot read the runtime config; not starting jobs until it is read");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How often the worker re-reads its config besides watching it, so a change is applied
/// even while the watch is recovering. After a cluster node dies the watch's consumer can
/// take 10 s to notice (two missed 5 s heartbeats) and more to be recreated while
/// streams elect leaders; meanwhile `jetmill freeze` would time out on this worker.
pub const RESYNC: Duration = Duration::from_secs(5);

/// Follow config changes until `stop`; every change (any key) is re-read and applied.
/// Every [`RESYNC`] the config is also read directly and applied if its revision is newer
/// than the one applied.
pub async fn watch(
    ctx: Arc<WorkerCtx>,
    mut changes: async_nats::jetstream::kv::Watch,
    stop: CancellationToken,
) {
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await; // the first tick is immediate; start() has just applied it
    loop {
        let entry = tokio::select! {
            _ = stop.cancelled() => return,
            _ = resync.tick() => {
                if let Ok((config, revision)) = control::effective(&ctx.jet.config, &ctx.worker_id).await {
                    if revision > ctx.config_revision.load(Ordering::Relaxed) {
                        tracing::info!(revision, "config changed without a watch event (the watch is recovering); applying it");
                        apply(&ctx, &config, revision).await;
                    }
                }
                continue;
            }
            e = changes.next() => e,
        };
        match entry {
            Some(Ok(e)) => match control::effective(&ctx.jet.config, &ctx.worker_id).await {
                Ok((config, _)) => apply(&ctx, &config, e.revision).await,
                // Never the defaults instead: that would unfreeze a frozen worker. The
                // next resync (within RESYNC) applies the change.
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the runtime config after a change; the next resync applies it")
                }
            },
            Some(Err(e)) => tracing::warn!(error = %e, "config watch error"),
            None => {
                tracing::warn!("config watch ended; restarting it");
                match ctx.jet.config.watch_all().await {
                    Ok(w) => changes = w,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot restart the config watch");
                        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                    }
                }
            }
        }
    }
}

fn report_of(ctx: &WorkerCtx) -> WorkerReport {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    WorkerReport {
        id: ctx.worker_id.clone(),
        host,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: ctx.started_at_ms,
        reported_at_ms: jetmill_proto::now_ms(),
        concurrency: ctx.concurrency(),
        running: ctx.running(),
        done: ctx.done.load(Ordering::Relaxed),
        failed: ctx.failed.load(Ordering::Relaxed),
        frozen: *ctx.frozen.borrow(),
        config_revision: ctx.config_revision.load(Ordering::Relaxed),
        memory_budget: ctx.memory_budget,
    }
}

async fn send_report(ctx: &WorkerCtx) {
    if let Err(e) = control::report(&ctx.jet, &report_of(ctx)).await {
        tracing::debug!(error = %e, "worker report failed");
    }
}

/// Report every [`HEARTBEAT`] until `stop`, then remove the report.
pub async fn heartbeat(ctx: Arc<WorkerCtx>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => send_report(&ctx).await,
        }
    }
    if let Err(e) = control::unreport(&ctx.jet, &ctx.worker_id).await {
        tracing::debug!(error = %e, "could not remove the worker report");
    }
}
