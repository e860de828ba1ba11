//! The runner actor: one per job attempt; its attempt holds the job's slot until the
//! kernel ends and its finishing room until the attempt ends.

use crate::context::WorkerCtx;
use crate::execute;
use async_nats::jetstream::Message;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Stateless handler.
pub struct Runner;

/// One delivered job and the slot it occupies.
pub struct Args {
    pub ctx: Arc<WorkerCtx>,
    pub message: Message,
    pub permit: crate::context::Slot,
}

/// Messages to a runner.
pub enum RunnerMsg {
    /// Stop the kernel at its next check (the attempt ends as cancelled).
    Cancel,
}

/// A runner's state: the cancel flag and the attempt's task (which owns the slot).
pub struct State {
    cancel: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Actor for Runner {
    type Msg = RunnerMsg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<RunnerMsg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let cancel = Arc::new(AtomicBool::new(false));
        let ctx = args.ctx.clone();
        let flag = cancel.clone();
        let message = args.message;
        let slot = args.permit;
        let task = tokio::spawn(async move {
            let attempt = AssertUnwindSafe(execute::attempt(&ctx, message, flag, slot))
                .catch_unwind()
                .await;
            if attempt.is_err() {
                // A bug outside the kernel; the message was not acked and will be redelivered.
                tracing::error!("job attempt panicked outside the kernel");
            }
            myself.stop(None);
        });
        Ok(State { cancel, task })
    }

    async fn handle(
        &self,
        _: ActorRef<RunnerMsg>,
        msg: RunnerMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RunnerMsg::Cancel => state.cancel.store(true, Ordering::Relaxed),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<RunnerMsg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if !state.task.is_finished() {
            state.cancel.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}
