//! The runtime config as the gateway sees it: KV `config`, followed with a watch.
//!
//! Submits consult the latest value in memory (no NATS round trip per request);
//! a background task re-reads the global key on every change of the bucket (and every
//! 5 s, in case the watch is recovering), so an operator's `jetmill kind disable K`
//! reaches every gateway within moments.

use async_nats::jetstream::kv;
use futures::StreamExt;
use jetmill_natsx::control;
use jetmill_proto::config::GLOBAL_KEY;
use jetmill_proto::RuntimeConfig;
use std::time::Duration;
use tokio::sync::watch;

/// Start following the global config; the task ends when every receiver is gone.
///
/// The watch is opened before the first read so no change between the two is missed.
pub async fn follow(store: kv::Store) -> watch::Receiver<RuntimeConfig> {
    let changes = match store.watch(GLOBAL_KEY).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the runtime config yet; retrying");
            None
        }
    };
    let initial = read(&store).await.unwrap_or_default();
    let (tx, rx) = watch::channel(initial);
    tokio::spawn(run(store, tx, changes));
    rx
}

async fn read(store: &kv::Store) -> Option<RuntimeConfig> {
    match control::global(store).await {
        Ok(v) => Some(v.config),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the runtime config");
            None
        }
    }
}

/// How often the config is re-read besides the watch (see [`run`]).
const RESYNC: Duration = Duration::from_secs(5);

/// Follow the watch; every [`RESYNC`] also re-read the key, so a change made while the
/// watch is recovering from a lost server (a cluster node killed) lands within seconds.
async fn run(store: kv::Store, tx: watch::Sender<RuntimeConfig>, mut changes: Option<kv::Watch>) {
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(watch) = changes.as_mut() else {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            changes = store.watch(GLOBAL_KEY).await.ok();
            // Catch up on whatever changed while we were not watching.
            if changes.is_some() {
                if let Some(c) = read(&store).await {
                    tx.send_replace(c);
                }
            }
            continue;
        };
        let next = tokio::select! {
            _ = tx.closed() => return,
            _ = resync.tick() => {
                // A watch whose consumer died with a cluster node notices only after
                // missed heartbeats; meanwhile a direct read keeps the config current.
                if let Some(c) = read(&store).await {
                    if *tx.borrow() != c {
                        tracing::info!(disabled_kinds = ?c.disabled_kinds, "runtime config changed (seen by a re-read; the watch is recovering)");
                        tx.send_replace(c);
                    }
                }
                continue;
            }
            e = watch.next() => e,
        };
        match next {
            // Re-read rather than decode the entry: a delete or purge means defaults.
            Some(Ok(_)) => {
                if let Some(c) = read(&store).await {
                    if *tx.borrow() != c {
                        tracing::info!(disabled_kinds = ?c.disabled_kinds, "runtime config changed");
                    }
                    tx.send_replace(c);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "config watch error"),
            None => {
                tracing::warn!("config watch ended; restarting it");
                changes = None;
            }
        }
    }
}
