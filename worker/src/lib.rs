//! The jetmill worker: pulls jobs from JetStream and computes them.
//!
//! The [`fetcher`] pulls from the shared durable consumer only when a slot is free
//! and starts one task per job. The task drives [`execute`], the attempt pipeline
//! (read the record, compute off the async runtime, mark running when slow, store a
//! large result), which ends in one [`settle::Verdict`]; [`settle`] is the one place
//! that writes the record's outcome, publishes the event and acks, naks or terminates.
//!
//! [`run`] is the whole worker until its shutdown token fires, then it drains.
//! [`observe`] holds its tracing helpers and the optional `/metrics` listener.

pub mod chaos;
pub mod config;
pub mod context;
pub mod control;
pub mod due;
pub mod execute;
pub mod fetcher;
pub mod limits;
pub mod listeners;
pub mod memory;
pub mod observe;
pub mod settle;
pub mod workflow;

pub use config::WorkerArgs;

use anyhow::Context as _;
use context::WorkerCtx;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Run a worker until `shutdown` is cancelled, then drain: stop fetching, let
/// running jobs finish for up to the grace period, hand the rest back (nak).
pub async fn run(args: WorkerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_log(args, shutdown, jetmill_runtime::LogHandle::disabled()).await
}

/// [`run`], with a handle through which the controller's `log-level` changes the filter.
/// Serves `/metrics` when `--metrics-listen` is set.
pub async fn run_with_log(
    args: WorkerArgs,
    shutdown: CancellationToken,
    log: jetmill_runtime::LogHandle,
) -> anyhow::Result<()> {
    let metrics_listener = match args.metrics_listen {
        Some(addr) => Some(observe::bind_metrics(addr).await?),
        None => None,
    };
    run_with(args, shutdown, log, metrics_listener).await
}

/// [`run_with_log`], serving `/metrics` on `metrics_listener` when given (whatever
/// `--metrics-listen` says), so a caller that bound port 0 knows the address.
pub async fn run_with(
    args: WorkerArgs,
    shutdown: CancellationToken,
    log: jetmill_runtime::LogHandle,
    metrics_listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<()> {
    let client =
        jetmill_natsx::connect(&args.nats, &format!("jetmill-worker {}", args.worker_id()))
            .await
            .context("connecting the worker to NATS")?;
    // JetStream may deliver a job any number of times: a hand-back (a drain, a full
    // store, NATS out of reach) is a delivery but not an attempt, so the worker counts
    // attempts in the record and enforces `--max-deliver` itself (see `settle`).
    let mut settings = args.queue.settings();
    settings.max_deliver = -1;
    // Under a NATS user that may not create streams, wait for `jetmill provision`.
    let provisioning = jetmill_natsx::until_provisioned(|| {
        jetmill_natsx::provision(client.clone(), settings.clone())
    });
    let jet = tokio::select! {
        jet = provisioning => jet.context("provisioning JetStream")?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let ctx = Arc::new(WorkerCtx::new(jet, &args, log));

    // Watch first, then read: a change made in between is seen by the watch.
    let changes = ctx
        .jet
        .config
        .watch_all()
        .await
        .context("watching the runtime config")?;
    let Some((config, revision)) = control::load(&ctx, &shutdown).await else {
        return Ok(());
    };
    control::apply(&ctx, &config, revision).await;
    let consumers = tokio::select! {
        c = jetmill_natsx::until_provisioned(|| ctx.jet.workers_consumers())
            => c.context("creating the workers consumers")?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let (due_consumer, _) = tokio::select! {
        c = jetmill_natsx::until_provisioned(|| ctx.jet.ensure_due_consumer())
            => c.context("creating the due delayed jobs consumer")?,
        () = shutdown.cancelled() => return Ok(()),
    };
    if let Some(listener) = metrics_listener {
        observe::spawn_metrics(listener, ctx.metrics.clone(), shutdown.clone());
    }

    let listening = CancellationToken::new();
    let cancels = tokio::spawn(listeners::cancels(ctx.clone(), listening.clone()));
    let watcher = tokio::spawn(control::watch(ctx.clone(), changes, listening.clone()));
    let heartbeat = tokio::spawn(control::heartbeat(ctx.clone(), listening.clone()));
    let renewing = tokio::spawn(limits::renew(ctx.clone(), listening.clone()));
    let stop_fetching = CancellationToken::new();
    let moving_due = tokio::spawn(due::run(ctx.clone(), due_consumer, stop_fetching.clone()));
    let fetching = tokio::spawn(fetcher::run(ctx.clone(), consumers, stop_fetching.clone()));
    tracing::info!(worker = %ctx.worker_id, concurrency = ctx.concurrency(), frozen = *ctx.frozen.borrow(), "worker started");

    shutdown.cancelled().await;
    tracing::info!("draining: no new jobs; waiting for running jobs");
    stop_fetching.cancel();
    let grace = Duration::from_secs_f64(args.drain_grace_secs.max(0.0));
    let idle = ctx.wait_idle(grace).await;
    // After the grace period, everything left gets one short bound, whether NATS
    // answers or not: what could not be settled by then JetStream redelivers.
    let deadline = tokio::time::Instant::now() + LAST_WRITES;
    if !idle {
        tracing::warn!(
            running = ctx.running(),
            "grace period over; handing running jobs back to the queue"
        );
        ctx.abandon_all();
        if !ctx.wait_idle(LAST_WRITES).await {
            tracing::warn!(
                running = ctx.running(),
                "jobs could not be settled in time (is NATS reachable?); JetStream delivers them again"
            );
        }
    }
    listening.cancel();
    let last_writes = async {
        let _ = tokio::join!(cancels, watcher, heartbeat, renewing, moving_due, fetching);
        ctx.jet.client.flush().await.ok();
    };
    if tokio::time::timeout_at(deadline, last_writes)
        .await
        .is_err()
    {
        tracing::warn!("NATS did not take the worker's last writes in time; stopping anyway");
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// How long a stopping worker waits, after its grace period, for its last writes
/// (hand-backs, its report's removal, the flush).
pub const LAST_WRITES: Duration = Duration::from_secs(5);
