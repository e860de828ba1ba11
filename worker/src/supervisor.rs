//! The root actor: starts the fetcher and restarts it if it fails.

use crate::context::WorkerCtx;
use crate::fetcher::{self, Fetcher};
use async_nats::jetstream::consumer::PullConsumer;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Stateless handler; everything lives in [`Args`].
pub struct Supervisor;

/// What the supervisor needs to (re)start the fetcher.
#[derive(Clone)]
pub struct Args {
    pub ctx: Arc<WorkerCtx>,
    pub consumer: PullConsumer,
    /// Cancelled when the worker drains.
    pub stop_fetching: CancellationToken,
}

impl Actor for Supervisor {
    type Msg = ();
    type State = Args;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: Args,
    ) -> Result<Args, ActorProcessingErr> {
        start_fetcher(&myself, &args).await?;
        Ok(args)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut Args,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            tracing::error!(actor = ?cell.get_name(), error = %err, "fetcher failed; restarting it");
            if !state.stop_fetching.is_cancelled() {
                start_fetcher(&myself, state).await?;
            }
        }
        Ok(())
    }
}

async fn start_fetcher(myself: &ActorRef<()>, args: &Args) -> Result<(), ActorProcessingErr> {
    Actor::spawn_linked(
        None,
        Fetcher,
        fetcher::Args {
            ctx: args.ctx.clone(),
            consumer: args.consumer.clone(),
            stop: args.stop_fetching.clone(),
        },
        myself.get_cell(),
    )
    .await?;
    Ok(())
}
