//! The fetcher: pulls jobs only when a slot is free, one task per job.
//!
//! A pull loop waits for a free slot, asks the consumer for as many messages as
//! there are free slots, and starts each message's attempt (`execute::attempt`) on
//! its own task, holding its slot. Jobs are prefetched beyond free slots only while
//! kernels are quick (`--prefetch`), and then only briefly, so a worker busy with big
//! jobs leaves work to others. A slot is held until the job's kernel ends; the job's
//! last writes (record, event, ack) happen outside it, bounded by `--finishing-limit`.
//! If the loop itself panics (a bug), it is started again.

use crate::context::{Slot, WorkerCtx};
use crate::execute;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::{FutureExt, StreamExt};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest a prefetched job waits for a slot before it is handed back.
const PREFETCH_WAIT: Duration = Duration::from_millis(500);
/// How long one pull request waits for messages before asking again.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Pull and start jobs until `stop` (the drain); a panicking pull loop is restarted.
pub async fn run(ctx: Arc<WorkerCtx>, consumer: PullConsumer, stop: CancellationToken) {
    loop {
        let pulling = tokio::spawn(pull_loop(ctx.clone(), consumer.clone(), stop.clone()));
        match pulling.await {
            Err(e) if e.is_panic() && !stop.is_cancelled() => {
                tracing::error!("the pull loop panicked; restarting it");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            _ => return,
        }
    }
}

/// Start one delivery's attempt on its own task. A panic outside the kernel (a bug)
/// is logged; the message, never acked, is delivered again after `ack_wait`.
fn start(ctx: &Arc<WorkerCtx>, message: Message, slot: Slot) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let cancel = Arc::new(AtomicBool::new(false));
        let attempt = AssertUnwindSafe(execute::attempt(&ctx, message, cancel, slot))
            .catch_unwind()
            .await;
        if attempt.is_err() {
            tracing::error!("job attempt panicked outside the kernel; it will be delivered again");
        }
    });
}

/// Give back a job that arrived for a pull request opened before a freeze or a
/// concurrency cut. The delay keeps it from coming straight back to the same request.
async fn hand_back(message: &Message, why: &str) {
    tracing::info!(why, "handing a just-delivered job back to the queue");
    let _ = message.ack_with(AckKind::Nak(Some(PULL_EXPIRES))).await;
}

async fn pull_loop(ctx: Arc<WorkerCtx>, consumer: PullConsumer, stop: CancellationToken) {
    let mut frozen = ctx.frozen.subscribe();
    loop {
        if *frozen.borrow_and_update() {
            // Parked: no pull request is open, so no job can arrive until resume.
            ctx.parked.send_replace(true);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = frozen.wait_for(|f| !*f) => {}
            }
            ctx.parked.send_replace(false);
            continue;
        }
        ctx.parked.send_if_modified(|p| std::mem::replace(p, false));
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            _ = frozen.changed() => continue,
            p = ctx.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        // Each job also needs room to finish after its slot; that room is plentiful
        // unless NATS is slow to take results, and then fetching more would not help.
        let first_finish = tokio::select! {
            _ = stop.cancelled() => return,
            p = ctx.finishing.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let mut permits = vec![(first, first_finish)];
        while let Ok(p) = ctx.slots.clone().try_acquire_owned() {
            match ctx.finishing.clone().try_acquire_owned() {
                Ok(f) => permits.push((p, f)),
                Err(_) => break,
            }
        }
        // While kernels are quick, ask for a few more than the free slots: they wait
        // briefly for a slot instead of costing a fetch round trip each.
        let mut spare = Vec::new();
        for _ in 0..ctx.extra_pull() {
            match ctx.finishing.clone().try_acquire_owned() {
                Ok(f) => spare.push(f),
                Err(_) => break,
            }
        }
        let batch = consumer
            .batch()
            .max_messages(permits.len() + spare.len())
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "pull request failed; retrying");
                drop(permits);
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => None,
                m = batch.next() => Some(m),
            };
            match next {
                Some(Some(Ok(message))) => {
                    if *frozen.borrow() {
                        // Frozen while this pull was open: hand the job back untouched
                        // (the freeze is reported applied only once no pull is open).
                        hand_back(&message, "frozen").await;
                        continue;
                    }
                    let (permit, finish) = match permits.pop() {
                        Some(p) => p,
                        None => {
                            let Some(finish) = spare.pop() else {
                                // More messages than asked for cannot happen; hand any back.
                                let _ = message.ack_with(AckKind::Nak(None)).await;
                                continue;
                            };
                            // A prefetched job: wait a little for a slot, else give it back.
                            let slot = tokio::select! {
                                _ = stop.cancelled() => None,
                                p = tokio::time::timeout(PREFETCH_WAIT, ctx.slots.clone().acquire_owned()) => p.ok().and_then(Result::ok),
                            };
                            match slot {
                                Some(p) if !*frozen.borrow() => (p, finish),
                                _ => {
                                    hand_back(&message, "no slot freed for a prefetched job").await;
                                    continue;
                                }
                            }
                        }
                    };
                    let Some(slot) = ctx.take_slot(permit, finish) else {
                        hand_back(&message, "concurrency lowered").await;
                        continue;
                    };
                    start(&ctx, message, slot);
                }
                Some(Some(Err(e))) => {
                    tracing::debug!(error = %e, "pull batch ended with an error");
                    break;
                }
                Some(None) => break,
                None => {
                    // Draining: anything still delivered to this request goes straight back.
                    while let Ok(Some(Ok(m))) =
                        tokio::time::timeout(Duration::from_millis(50), batch.next()).await
                    {
                        let _ = m.ack_with(AckKind::Nak(None)).await;
                    }
                    return;
                }
            }
        }
    }
}
