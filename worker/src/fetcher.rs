//! The fetcher actor: pulls jobs only when a slot is free, one runner per job.
//!
//! A pull loop (a task owned by the actor) waits for a free slot, asks the
//! consumer for as many messages as there are free slots, and hands each
//! message with its slot permit to the actor, which starts a runner. Jobs are
//! prefetched beyond free slots only while kernels are quick (`--prefetch`), and
//! then only briefly, so a worker busy with big jobs leaves work to others.
//! A slot is held until the job's kernel ends; the job's last writes (record,
//! event, ack) happen outside it, bounded by `--finishing-limit`.

use crate::context::{Slot, WorkerCtx};
use crate::runner::{self, Runner};
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest a prefetched job waits for a slot before it is handed back.
const PREFETCH_WAIT: Duration = Duration::from_millis(500);
/// How long one pull request waits for messages before asking again.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Stateless handler.
pub struct Fetcher;

/// What the fetcher is started with.
pub struct Args {
    pub ctx: Arc<WorkerCtx>,
    pub consumer: PullConsumer,
    /// Cancelled when the worker drains: stop pulling.
    pub stop: CancellationToken,
}

/// Messages to the fetcher.
pub enum FetcherMsg {
    /// A job arrived; start a runner holding `slot` (released when its kernel ends).
    Delivered(Box<Message>, Slot),
}

/// The fetcher's state: the shared context and the pull loop's task.
pub struct State {
    ctx: Arc<WorkerCtx>,
    pull: tokio::task::JoinHandle<()>,
}

impl Actor for Fetcher {
    type Msg = FetcherMsg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<FetcherMsg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let pull = tokio::spawn(pull_loop(
            args.ctx.clone(),
            args.consumer,
            args.stop,
            myself,
        ));
        Ok(State {
            ctx: args.ctx,
            pull,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<FetcherMsg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.pull.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<FetcherMsg>,
        msg: FetcherMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FetcherMsg::Delivered(message, permit) => {
                let args = runner::Args {
                    ctx: state.ctx.clone(),
                    message: *message,
                    permit,
                };
                if let Err(e) = Actor::spawn_linked(None, Runner, args, myself.get_cell()).await {
                    // The message was moved into the failed spawn; it is redelivered after ack_wait.
                    tracing::error!(error = %e, "could not start a job runner");
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<FetcherMsg>,
        event: SupervisionEvent,
        _: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        // A runner ending (or failing) is routine: its job's fate is already in the record.
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            tracing::error!(actor = ?cell.get_id(), error = %err, "job runner failed");
        }
        Ok(())
    }
}

/// Give back a job that arrived for a pull request opened before a freeze or a
/// concurrency cut. The delay keeps it from coming straight back to the same request.
async fn hand_back(message: &Message, why: &str) {
    tracing::info!(why, "handing a just-delivered job back to the queue");
    let _ = message.ack_with(AckKind::Nak(Some(PULL_EXPIRES))).await;
}

async fn pull_loop(
    ctx: Arc<WorkerCtx>,
    consumer: PullConsumer,
    stop: CancellationToken,
    fetcher: ActorRef<FetcherMsg>,
) {
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
                    if let Err(e) =
                        fetcher.send_message(FetcherMsg::Delivered(Box::new(message), slot))
                    {
                        tracing::error!(error = %e, "fetcher is gone; stopping the pull loop");
                        return;
                    }
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
