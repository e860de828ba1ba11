//! Things a worker hears besides jobs: cancel broadcasts.

use crate::context::WorkerCtx;
use futures::StreamExt;
use jetmill_proto::{names, JobId};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Raise the cancel flag of any job named on `jetmill.cancel.<id>` that runs here.
pub async fn cancels(ctx: Arc<WorkerCtx>, stop: CancellationToken) {
    let mut sub = match ctx.jet.client.subscribe(names::CANCEL_SUBJECTS).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to cancel broadcasts; cancels apply at the next progress check-in");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let id = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<JobId>().ok());
        if let Some(id) = id {
            if ctx.cancel(&id) {
                tracing::info!(job_id = %id, "cancel received; stopping the kernel");
            }
        }
    }
}
