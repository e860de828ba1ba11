//! Read-only commands: `jetmill workers`, `jetmill stats`, `jetmill config show`.

use crate::cli::{human_age, print_json, table, ReadArgs};
use crate::control::{connect, describe};
use anyhow::Context;
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures::TryStreamExt;
use jetmill_natsx::control;
use jetmill_proto::names;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `jetmill workers`: every live worker's latest report.
pub async fn workers(args: &ReadArgs) -> anyhow::Result<()> {
    let jet = connect(&args.nats).await?;
    let reports = control::workers(&jet)
        .await
        .context("reading worker reports")?;
    if args.json {
        return print_json(&reports);
    }
    if reports.is_empty() {
        println!("no live workers (reports expire 10 s after a worker stops)");
        return Ok(());
    }
    let now = jetmill_proto::now_ms();
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.host.clone(),
                r.pid.to_string(),
                r.version.clone(),
                human_age(now - r.started_at_ms),
                r.concurrency.to_string(),
                r.running.to_string(),
                r.done.to_string(),
                r.failed.to_string(),
                if r.frozen { "yes" } else { "no" }.to_string(),
                r.config_revision.to_string(),
                format!("{} ago", human_age(now - r.reported_at_ms)),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "WORKER", "HOST", "PID", "VERSION", "UPTIME", "SLOTS", "RUNNING", "DONE", "FAILED",
                "FROZEN", "CONFIG", "SEEN"
            ],
            &rows
        )
    );
    Ok(())
}

/// `jetmill config show`: the stored global config and every worker override.
pub async fn config_show(args: &ReadArgs) -> anyhow::Result<()> {
    let jet = connect(&args.nats).await?;
    let global = control::global(&jet.config)
        .await
        .context("reading the config")?;
    let overrides = control::overrides(&jet)
        .await
        .context("reading worker overrides")?;
    if args.json {
        #[derive(Serialize)]
        struct Shown<'a> {
            revision: u64,
            global: &'a jetmill_proto::RuntimeConfig,
            workers: BTreeMap<&'a str, &'a jetmill_proto::RuntimeConfig>,
        }
        return print_json(&Shown {
            revision: global.revision,
            global: &global.config,
            workers: overrides
                .iter()
                .map(|(w, v)| (w.as_str(), &v.config))
                .collect(),
        });
    }
    println!(
        "global (revision {}): {}",
        global.revision,
        describe(&global.config)
    );
    for (worker, v) in &overrides {
        println!(
            "worker {worker} (revision {}): {}",
            v.revision,
            describe(&v.config)
        );
    }
    Ok(())
}

/// What `jetmill stats` reports.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Jobs in the JOBS stream (queued or in flight) per `priority.kind`.
    pub queued: BTreeMap<String, u64>,
    /// Jobs of disabled kinds set aside until enabled, per `priority.kind`.
    pub parked: BTreeMap<String, u64>,
    /// Delayed jobs whose time has not come (their schedules on `SCHEDULES`).
    pub scheduled: u64,
    /// Delayed jobs that are due and not yet moved into `JOBS` (no worker running?).
    pub due: u64,
    /// Jobs not yet delivered to any worker (every priority; `queued` has them by level).
    pub undelivered: u64,
    /// Jobs delivered and not yet acknowledged (running, or waiting for redelivery).
    pub pending_acks: usize,
    /// Jobs delivered more than once and not yet acknowledged.
    pub redeliveries: usize,
    /// Pull requests waiting, over the three priority consumers (an idle worker has one
    /// open on each).
    pub waiting_pulls: usize,
    /// Jobs that ended (done or failed) in the last minute.
    pub finished_last_minute: u64,
    /// `finished_last_minute / 60`.
    pub jobs_per_second: f64,
    pub live_workers: usize,
    /// JetStream storage: used, reserved, the account limit, and the limit that refuses
    /// writes when the store is full (then every submit fails with a 507).
    pub store: jetmill_gateway::store::StoreReport,
    /// The run limits set and what they have in use: a queued job a full limit covers
    /// waits in the queue (and counts in `pending_acks` while it waits).
    pub limits: Vec<jetmill_proto::LimitView>,
}

/// `jetmill stats`: queue depth, acks, redeliveries and throughput, from JetStream.
pub async fn stats(args: &ReadArgs) -> anyhow::Result<()> {
    let jet = connect(&args.nats).await?;
    let stats = gather(&jet).await?;
    if args.json {
        return print_json(&stats);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (state, map) in [
        ("queued", &stats.queued),
        ("parked (kind disabled)", &stats.parked),
    ] {
        for (subject, n) in map {
            let (prio, kind) = subject.split_once('.').unwrap_or((subject.as_str(), ""));
            rows.push(vec![
                prio.to_string(),
                kind.to_string(),
                n.to_string(),
                state.to_string(),
            ]);
        }
    }
    if rows.is_empty() {
        rows.push(vec![
            "-".into(),
            "-".into(),
            "0".into(),
            "queue empty".into(),
        ]);
    }
    println!("{}", table(&["PRIORITY", "KIND", "JOBS", "STATE"], &rows));
    println!();
    println!("scheduled (delayed) {}", stats.scheduled);
    if stats.due > 0 {
        println!(
            "due, not yet queued {} (moved by running workers)",
            stats.due
        );
    }
    println!("not yet delivered   {}", stats.undelivered);
    println!("pending acks        {}", stats.pending_acks);
    println!("redelivered         {}", stats.redeliveries);
    println!("waiting pulls       {}", stats.waiting_pulls);
    println!("live workers        {}", stats.live_workers);
    println!(
        "finished last min   {} ({:.1} jobs/s)",
        stats.finished_last_minute, stats.jobs_per_second
    );
    println!("{}", store_lines(&stats.store));
    if let Some(lines) = limit_lines(&stats.limits) {
        println!("{lines}");
    }
    Ok(())
}

/// The run-limit lines of `jetmill stats`: how many are set, and each scope at its
/// `max_running` (the jobs it covers wait in the queue meanwhile).
fn limit_lines(views: &[jetmill_proto::LimitView]) -> Option<String> {
    if views.is_empty() {
        return None;
    }
    let mut out = format!(
        "run limits          {} set (details: jetmill limits list)",
        views.len()
    );
    for v in views {
        let Some(max) = v.limit.max_running else {
            continue;
        };
        for u in v.usage.iter().filter(|u| u.running >= max as usize) {
            let tenant = u
                .tenant
                .as_deref()
                .map(|t| format!(", tenant {t}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "\nlimit full          {}{tenant}: {} of {max} running; the queued jobs it covers wait",
                v.scope, u.running
            ));
        }
    }
    Some(out)
}

/// The store lines of `jetmill stats`: use, limit, and a warning when full or near it.
fn store_lines(store: &jetmill_gateway::store::StoreReport) -> String {
    let limit = match (store.account_limit_bytes, store.used_share()) {
        (Some(l), Some(share)) => format!(
            "of {} account limit ({:.0}%)",
            human_bytes(l),
            share * 100.0
        ),
        _ => "(no account limit; the server's max_file_store is not visible to clients)".into(),
    };
    let mut out = format!(
        "store used          {} {limit}, {} reserved",
        human_bytes(store.used_bytes),
        human_bytes(store.reserved_bytes)
    );
    if let Some(full) = &store.full {
        out.push_str(&format!(
            "\nWARNING: store FULL: {} (JetStream error {}, limit {}); \
             new submits are refused with 507 until space is freed",
            full.reason, full.err_code, full.limit
        ));
    } else if store.near_full() {
        out.push_str("\nWARNING: store nearly full: submits will be refused at the limit");
    }
    out
}

/// `1.5 MiB`: a byte count for people.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

async fn gather(jet: &jetmill_natsx::Jet) -> anyhow::Result<Stats> {
    let (mut queued, mut parked) = (BTreeMap::new(), BTreeMap::new());
    let mut subjects = jet
        .jobs
        .info_with_subjects("jobs.>")
        .await
        .context("reading the JOBS stream")?;
    while let Some((subject, n)) = subjects
        .try_next()
        .await
        .context("reading the JOBS stream")?
    {
        if let Some(key) = subject.strip_prefix("jobs.run.") {
            queued.insert(key.to_string(), n as u64);
        } else if let Some(key) = subject.strip_prefix("jobs.parked.") {
            parked.insert(key.to_string(), n as u64);
        }
    }
    let (mut undelivered, mut pending_acks, mut redeliveries, mut waiting_pulls) = (0, 0, 0, 0);
    for priority in jetmill_proto::Priority::ALL {
        let name = names::workers_consumer(priority);
        let c =
            jet.jobs.consumer_info(&name).await.with_context(|| {
                format!("reading the consumer {name} (has a worker ever started?)")
            })?;
        undelivered += c.num_pending;
        pending_acks += c.num_ack_pending;
        redeliveries += c.num_redelivered;
        waiting_pulls += c.num_waiting;
    }
    let mut schedules = jet.schedules.clone();
    let held = schedules
        .info()
        .await
        .context("reading the SCHEDULES stream")?
        .state
        .messages;
    let due = jet
        .schedules
        .consumer_info(names::DUE_CONSUMER)
        .await
        .context("reading the consumer due on SCHEDULES (run jetmill provision)")?
        .num_pending;
    let finished = finished_since(jet, Duration::from_secs(60)).await?;
    let live_workers = control::workers(jet)
        .await
        .context("reading worker reports")?
        .len();
    let store = jetmill_gateway::store::probe(jet)
        .await
        .context("reading the JetStream store")?;
    let config = control::global(&jet.config)
        .await
        .context("reading the runtime config")?
        .config;
    let limits = jetmill_natsx::limits::views(jet, &config.limits, None)
        .await
        .context("reading what the run limits have in use")?;
    Ok(Stats {
        queued,
        parked,
        scheduled: held.saturating_sub(due),
        due,
        undelivered,
        pending_acks,
        redeliveries,
        waiting_pulls,
        finished_last_minute: finished,
        jobs_per_second: finished as f64 / 60.0,
        live_workers,
        store,
        limits,
    })
}

/// Count done/failed events newer than `window` without reading them: an ephemeral
/// consumer starting at that time reports how many messages it has pending.
async fn finished_since(jet: &jetmill_natsx::Jet, window: Duration) -> anyhow::Result<u64> {
    let start = time::OffsetDateTime::now_utc() - window;
    let consumer = jet
        .events
        .create_consumer(pull::Config {
            filter_subjects: vec!["jobs.events.*.done".into(), "jobs.events.*.failed".into()],
            deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
            inactive_threshold: Duration::from_secs(5),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .context("counting recent events")?;
    // Not deleted: it expires after its 5 s inactive threshold, and a delete would be a
    // refused request (a 10 s wait) under the read-only `inspector` NATS user.
    Ok(consumer.cached_info().num_pending)
}
