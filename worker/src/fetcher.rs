//! The fetcher: pulls jobs only when a slot is free, one task per job, highest
//! priority first.
//!
//! A pull loop waits for a free slot and fills the free slots from the three priority
//! consumers (`workers-high`, `-normal`, `-low`) in that order, taking what is queued
//! now (no-wait fetches), so a queued `high` job gets the next free slot of any worker.
//! Only when nothing is queued at any level does it wait, with a pull open on all three
//! at once, taking jobs as they arrive. So that a steady stream of higher jobs cannot
//! starve the lower levels, after [`STARVING_ROUNDS`] rounds in a row that filled every
//! slot before asking every level, the next round starts from `normal`, the next such
//! from `low` (see [`Rotation`]). Each job's attempt (`execute::attempt`) runs on its
//! own task, holding its slot. Jobs are prefetched beyond free slots only while
//! kernels are quick (`--prefetch`), and then only briefly, so a worker busy with big
//! jobs leaves work to others. A slot is held until the job's kernel ends; the job's
//! last writes (record, event, ack) happen outside it, bounded by `--finishing-limit`.
//! If the loop itself panics (a bug), it is started again.

use crate::context::{Slot, WorkerCtx};
use crate::execute;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::{FutureExt, StreamExt};
use jetmill_proto::Priority;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

/// Longest a prefetched job waits for a slot before it is handed back.
const PREFETCH_WAIT: Duration = Duration::from_millis(500);
/// How long one pull request waits for messages before asking again.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Longest a no-wait fetch of what is queued may take before it is given up.
const FETCH_DEADLINE: Duration = Duration::from_secs(5);

/// Rounds in a row that may fill every slot before the lowest level was asked, before
/// a round starts from a lower level (see [`Rotation`]).
pub const STARVING_ROUNDS: u32 = 7;

/// Which levels a fetch round asks, in order (indices into `Priority::ALL`).
///
/// Highest first. A round that filled every slot before asking every level may have
/// left a lower level waiting; after [`STARVING_ROUNDS`] such rounds in a row, the next
/// round starts from `normal`, and the one after the next such run from `low`. Under a
/// backlog at every level, each lower level thus gets the first pick at least once in
/// every `2 * (STARVING_ROUNDS + 1)` rounds; with no backlog below, nothing changes.
#[derive(Debug, Default)]
pub struct Rotation {
    crowded: u32,
    rescues: u64,
}

impl Rotation {
    /// The order for the next round.
    pub fn order(&mut self) -> [usize; 3] {
        if self.crowded < STARVING_ROUNDS {
            return [0, 1, 2];
        }
        self.crowded = 0;
        self.rescues += 1;
        if self.rescues % 2 == 1 {
            [1, 2, 0]
        } else {
            [2, 1, 0]
        }
    }

    /// What the round did: whether its slots were all filled before it asked every level.
    pub fn record(&mut self, crowded: bool) {
        self.crowded = if crowded { self.crowded + 1 } else { 0 };
    }
}

/// Pull and start jobs until `stop` (the drain); a panicking pull loop is restarted.
/// `consumers` are the three priority levels' consumers, highest first.
pub async fn run(
    ctx: Arc<WorkerCtx>,
    consumers: Vec<(Priority, PullConsumer)>,
    stop: CancellationToken,
) {
    let consumers: Arc<[PullConsumer]> = consumers.into_iter().map(|(_, c)| c).collect();
    loop {
        let pulling = tokio::spawn(pull_loop(ctx.clone(), consumers.clone(), stop.clone()));
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

/// A slot and its room to finish, held for one job.
type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// Start `message` in a slot already held (`permits`), or in one freed within
/// [`PREFETCH_WAIT`] (a prefetched job: `spare` finishing room, or a job beyond what
/// was asked for); otherwise, or when frozen or stopping, hand it back.
async fn dispatch(
    ctx: &Arc<WorkerCtx>,
    frozen: &watch::Receiver<bool>,
    stop: &CancellationToken,
    message: Message,
    permits: &mut Vec<Permits>,
    spare: &mut Vec<OwnedSemaphorePermit>,
) {
    if stop.is_cancelled() {
        // Draining: straight back, for another worker to take now.
        let _ = message.ack_with(AckKind::Nak(None)).await;
        return;
    }
    if *frozen.borrow() {
        // Frozen while this pull was open: hand the job back untouched (the freeze is
        // reported applied only once no pull is open).
        hand_back(&message, "frozen").await;
        return;
    }
    let (permit, finish) = match permits.pop() {
        Some(p) => p,
        None => {
            // A prefetched job, or one of a wait on several levels that brought more
            // than free slots: wait a little for a slot, else give it back at once.
            let finish = match spare.pop() {
                Some(f) => Some(f),
                None => ctx.finishing.clone().try_acquire_owned().ok(),
            };
            let slot = match finish {
                None => None,
                Some(finish) => tokio::select! {
                    _ = stop.cancelled() => None,
                    p = tokio::time::timeout(PREFETCH_WAIT, ctx.slots.clone().acquire_owned()) => {
                        p.ok().and_then(Result::ok).map(|p| (p, finish))
                    }
                },
            };
            match slot {
                Some(p) if !*frozen.borrow() => p,
                _ => {
                    tracing::debug!(
                        "no slot freed for a job beyond the free slots; handing it back"
                    );
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    return;
                }
            }
        }
    };
    let Some(slot) = ctx.take_slot(permit, finish) else {
        hand_back(&message, "concurrency lowered").await;
        return;
    };
    start(ctx, message, slot);
}

/// Take what is queued now, up to `want`, from the levels in `order`: a no-wait fetch
/// per level, stopping once `want` are taken. Also says whether `want` was reached
/// before every level was asked, and whether a fetch failed.
async fn fetch_queued(
    consumers: &[PullConsumer],
    order: [usize; 3],
    want: usize,
) -> (Vec<Message>, bool, bool) {
    let mut got = Vec::new();
    for (asked, &level) in order.iter().enumerate() {
        let room = want.saturating_sub(got.len());
        if room == 0 {
            return (got, asked < order.len(), false);
        }
        // async-nats gives a no-wait fetch no deadline of its own: a request the server
        // never answers (sent as nats-server restarts) would stall this loop for good.
        let fetched = tokio::time::timeout(FETCH_DEADLINE, async {
            let mut batch = consumers[level]
                .fetch()
                .max_messages(room)
                .messages()
                .await?;
            while let Some(m) = batch.next().await {
                match m {
                    Ok(m) => got.push(m),
                    Err(e) => {
                        tracing::debug!(error = %e, "fetch ended with an error");
                        break;
                    }
                }
            }
            Ok::<(), async_nats::jetstream::consumer::pull::BatchError>(())
        })
        .await;
        match fetched {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "pull request failed; retrying");
                return (got, false, true);
            }
            Err(_) => {
                // What the lost request still brings comes back after `ack_wait`.
                tracing::warn!(deadline = ?FETCH_DEADLINE, "a fetch got no answer in time (NATS restarting?); retrying");
                return (got, false, true);
            }
        }
    }
    (got, false, false)
}

async fn pull_loop(ctx: Arc<WorkerCtx>, consumers: Arc<[PullConsumer]>, stop: CancellationToken) {
    let mut frozen = ctx.frozen.subscribe();
    let mut rotation = Rotation::default();
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
        let want = permits.len() + spare.len();

        // What is queued now, highest level first.
        let (queued, crowded, failed) = fetch_queued(&consumers, rotation.order(), want).await;
        rotation.record(crowded);
        if !queued.is_empty() {
            for message in queued {
                dispatch(&ctx, &frozen, &stop, message, &mut permits, &mut spare).await;
            }
            continue;
        }
        if failed {
            drop(permits);
            tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
            continue;
        }

        // Nothing queued at any level: wait on all of them at once and take jobs as they
        // arrive (all were empty a moment ago, so arrival order is the right order).
        let mut batches = Vec::with_capacity(consumers.len());
        for consumer in consumers.iter() {
            match consumer
                .batch()
                .max_messages(want)
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(b) => batches.push(b),
                Err(e) => tracing::warn!(error = %e, "pull request failed; retrying"),
            }
        }
        if batches.is_empty() {
            drop(permits);
            tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
            continue;
        }
        let mut arriving = futures::stream::select_all(batches);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => None,
                m = arriving.next() => Some(m),
            };
            match next {
                Some(Some(Ok(message))) => {
                    dispatch(&ctx, &frozen, &stop, message, &mut permits, &mut spare).await;
                    if permits.is_empty() && spare.is_empty() {
                        // This round has what it asked for (typically from one level);
                        // the other levels' pulls stay open until they expire. Go on
                        // with the next round now, and let a task hand back anything
                        // those pulls still bring (dropping them would strand it until
                        // ack_wait).
                        tokio::spawn(async move {
                            while let Some(m) = arriving.next().await {
                                if let Ok(m) = m {
                                    let _ = m.ack_with(AckKind::Nak(None)).await;
                                }
                            }
                        });
                        break;
                    }
                }
                Some(Some(Err(e))) => {
                    // One level's pull ended with an error; the others go on.
                    tracing::debug!(error = %e, "pull batch ended with an error");
                }
                Some(None) => break,
                None => {
                    // Draining: anything still delivered to these requests goes straight back.
                    while let Ok(Some(Ok(m))) =
                        tokio::time::timeout(Duration::from_millis(50), arriving.next()).await
                    {
                        let _ = m.ack_with(AckKind::Nak(None)).await;
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds of one slot each against a backlog at the levels in `backlog`: which level
    /// each round served.
    fn serve(rounds: usize, backlog: [bool; 3]) -> [usize; 3] {
        let mut rotation = Rotation::default();
        let mut served = [0; 3];
        for _ in 0..rounds {
            let order = rotation.order();
            let mut crowded = false;
            for (asked, &level) in order.iter().enumerate() {
                if backlog[level] {
                    served[level] += 1;
                    crowded = asked + 1 < order.len();
                    break;
                }
            }
            rotation.record(crowded);
        }
        served
    }

    #[test]
    fn higher_levels_go_first_but_never_starve_the_lower_ones() {
        // A backlog everywhere: high takes most, normal and low at least 1 round in 16 each.
        let [high, normal, low] = serve(1600, [true, true, true]);
        assert!(normal >= 100 && low >= 100, "{high} {normal} {low}");
        assert!(high >= 1300, "high keeps over 80%: {high} {normal} {low}");
        // High and low only: low still gets its share.
        let [_, normal, low] = serve(1600, [true, false, true]);
        assert_eq!(normal, 0);
        assert!(low >= 100, "{low}");
        // Nothing above: normal takes nearly every round, low its share.
        let [high, normal, low] = serve(160, [false, true, true]);
        assert_eq!(high, 0);
        assert!(normal >= 140 && low >= 5, "{normal} {low}");
    }

    #[test]
    fn the_first_round_after_a_quiet_spell_is_highest_first() {
        let mut rotation = Rotation::default();
        for _ in 0..3 {
            assert_eq!(rotation.order(), [0, 1, 2]);
            rotation.record(false);
        }
        // A crowded run, then a round that reached every level, resets the count.
        for _ in 0..STARVING_ROUNDS - 1 {
            assert_eq!(rotation.order(), [0, 1, 2]);
            rotation.record(true);
        }
        rotation.record(false);
        assert_eq!(rotation.order(), [0, 1, 2]);
    }
}
