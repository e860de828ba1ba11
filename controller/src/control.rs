//! Config commands: write the desired runtime config to KV `config`, then wait
//! until every live worker reports it applied, and say who did and who did not.

use crate::cli::{human_age, print_json, table, ApplyArgs};
use anyhow::{bail, Context};
use jetmill_natsx::control::{self, Versioned};
use jetmill_natsx::{Jet, QueueSettings};
use jetmill_proto::{Chaos, JobKind, RunLimit, RuntimeConfig, WorkerReport};
use serde::Serialize;
use std::time::Duration;

/// One change an operator asks for.
#[derive(Debug, Clone)]
pub enum Change {
    Freeze,
    Resume,
    Concurrency(usize),
    LogLevel(String),
    DisableKind(JobKind),
    EnableKind(JobKind),
    /// New chaos settings; `None` turns failure injection off.
    Chaos(Option<Chaos>),
    /// Set a run limit (replacing the one on the same scope).
    SetLimit(RunLimit),
    /// Remove the run limit on this limit's scope.
    ClearLimit(RunLimit),
    /// Remove every run limit.
    ClearLimits,
    /// Forget every setting (global, or one worker's overrides).
    Reset,
}

impl Change {
    /// Check the change before anything is written.
    fn validate(&self, worker: Option<&str>) -> anyhow::Result<()> {
        match self {
            Change::Concurrency(0) => bail!("concurrency must be at least 1"),
            Change::Concurrency(n) if *n > 4096 => {
                bail!("concurrency {n} is more than 4096 slots; pick a smaller number")
            }
            Change::LogLevel(f) => {
                tracing_subscriber::EnvFilter::try_new(f).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid log filter {f:?}: {e}\n  examples: info, debug, info,jetmill_worker=debug"
                    )
                })?;
            }
            Change::DisableKind(_) | Change::EnableKind(_) if worker.is_some() => {
                bail!("kinds are enabled or disabled for the whole system (the gateway refuses them too); drop --worker")
            }
            Change::SetLimit(_) | Change::ClearLimit(_) | Change::ClearLimits
                if worker.is_some() =>
            {
                bail!("run limits hold across all workers together; drop --worker")
            }
            Change::SetLimit(l) => l.validate()?,
            _ => {}
        }
        Ok(())
    }

    fn apply_to(&self, c: &mut RuntimeConfig) {
        match self {
            Change::Freeze => c.frozen = Some(true),
            Change::Resume => c.frozen = Some(false),
            Change::Concurrency(n) => c.concurrency = Some(*n),
            Change::LogLevel(f) => c.log_level = Some(f.clone()),
            Change::DisableKind(k) => {
                if !c.disabled_kinds.contains(k) {
                    c.disabled_kinds.push(*k);
                    c.disabled_kinds.sort_by_key(|k| k.as_str());
                }
            }
            Change::EnableKind(k) => c.disabled_kinds.retain(|x| x != k),
            Change::Chaos(chaos) => c.chaos = Some(chaos.unwrap_or_default()),
            Change::SetLimit(l) => match c.limits.iter_mut().find(|x| x.same_scope(l)) {
                Some(x) => *x = l.clone(),
                None => c.limits.push(l.clone()),
            },
            Change::ClearLimit(l) => c.limits.retain(|x| !x.same_scope(l)),
            Change::ClearLimits => c.limits.clear(),
            Change::Reset => *c = RuntimeConfig::default(),
        }
    }
}

/// Connect and find (or create) jetmill's streams and buckets.
pub async fn connect(nats: &jetmill_natsx::NatsArgs) -> anyhow::Result<Jet> {
    let client = client(nats).await?;
    jetmill_natsx::provision(client, QueueSettings::default())
        .await
        .context("finding jetmill's streams and buckets")
}

/// The CLI's NATS connection, with an error that says how to point it elsewhere.
async fn client(nats: &jetmill_natsx::NatsArgs) -> anyhow::Result<async_nats::Client> {
    jetmill_natsx::connect(nats, "jetmill-cli")
        .await
        .with_context(|| {
            format!(
            "cannot reach NATS at {} (set --server or JETMILL_NATS_URL; is `jetmill dev` running?)",
            nats.url
        )
        })
}

/// [`connect`] for a long-running command (`jetmill autoscale`): a NATS user that may
/// not create jetmill's streams waits for `jetmill provision` instead of failing.
pub async fn connect_waiting(nats: &jetmill_natsx::NatsArgs) -> anyhow::Result<Jet> {
    let client = client(nats).await?;
    jetmill_natsx::until_provisioned(|| {
        jetmill_natsx::provision(client.clone(), QueueSettings::default())
    })
    .await
    .context("finding jetmill's streams and buckets")
}

/// One worker's row in a command's outcome.
#[derive(Debug, Serialize)]
pub struct WorkerOutcome {
    #[serde(flatten)]
    pub report: WorkerReport,
    /// Whether this worker reported the new revision before the timeout.
    pub applied: bool,
}

/// What a config command did: the revision written and who applied it.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub revision: u64,
    /// `null` for the global config.
    pub worker: Option<String>,
    /// The stored config at `revision` (global, or the worker's overrides).
    pub config: RuntimeConfig,
    pub workers: Vec<WorkerOutcome>,
    pub all_applied: bool,
}

/// Write `change`, wait for the workers, print the outcome. Returns whether every
/// live target worker applied it (the process exit code follows).
pub async fn run(change: Change, args: &ApplyArgs) -> anyhow::Result<bool> {
    change.validate(args.worker.as_deref())?;
    let jet = connect(&args.nats).await?;
    let written = control::update(&jet.config, args.worker.as_deref(), |c| change.apply_to(c))
        .await
        .context("writing the runtime config")?;
    let outcome = wait_applied(&jet, written, args.worker.as_deref(), args.timeout).await?;
    if args.json {
        print_json(&outcome)?;
    } else {
        print_outcome(&outcome, args.timeout);
    }
    Ok(outcome.all_applied)
}

/// Poll the worker reports until every live target has `written.revision`, or the timeout.
async fn wait_applied(
    jet: &Jet,
    written: Versioned,
    worker: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let reports = control::workers(jet)
            .await
            .context("reading worker reports")?;
        let targets: Vec<WorkerReport> = reports
            .into_iter()
            .filter(|r| worker.is_none_or(|w| r.id == w))
            .collect();
        let done = targets
            .iter()
            .all(|r| r.config_revision >= written.revision);
        if done || tokio::time::Instant::now() >= deadline {
            let workers: Vec<WorkerOutcome> = targets
                .into_iter()
                .map(|r| WorkerOutcome {
                    applied: r.config_revision >= written.revision,
                    report: r,
                })
                .collect();
            return Ok(Outcome {
                revision: written.revision,
                worker: worker.map(str::to_string),
                config: written.config,
                all_applied: workers.iter().all(|w| w.applied),
                workers,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_outcome(o: &Outcome, timeout: Duration) {
    let scope = match &o.worker {
        Some(w) => format!("worker {w}"),
        None => "global config".to_string(),
    };
    println!(
        "{scope} written at revision {}: {}",
        o.revision,
        describe(&o.config)
    );
    if o.workers.is_empty() {
        match &o.worker {
            Some(w) => println!("no live worker {w}; it applies this when it starts"),
            None => println!("no live workers; workers apply this when they start"),
        }
        return;
    }
    let now = jetmill_proto::now_ms();
    let rows: Vec<Vec<String>> = o
        .workers
        .iter()
        .map(|w| {
            vec![
                w.report.id.clone(),
                if w.applied { "yes".into() } else { "NO".into() },
                w.report.config_revision.to_string(),
                yes_no(w.report.frozen),
                w.report.concurrency.to_string(),
                w.report.running.to_string(),
                format!("{} ago", human_age(now - w.report.reported_at_ms)),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "WORKER",
                "APPLIED",
                "REVISION",
                "FROZEN",
                "SLOTS",
                "RUNNING",
                "LAST REPORT"
            ],
            &rows
        )
    );
    let missing: Vec<&str> = o
        .workers
        .iter()
        .filter(|w| !w.applied)
        .map(|w| w.report.id.as_str())
        .collect();
    if missing.is_empty() {
        println!("applied by all {} live worker(s)", o.workers.len());
    } else {
        println!(
            "NOT applied within {:?} by {} of {} live worker(s): {} (stuck or partitioned? see `jetmill workers`)",
            timeout,
            missing.len(),
            o.workers.len(),
            missing.join(", ")
        );
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// A one-line summary of a stored config.
pub fn describe(c: &RuntimeConfig) -> String {
    let mut parts = Vec::new();
    if let Some(f) = c.frozen {
        parts.push(if f {
            "frozen".to_string()
        } else {
            "running".to_string()
        });
    }
    if let Some(n) = c.concurrency {
        parts.push(format!("concurrency {n}"));
    }
    if let Some(l) = &c.log_level {
        parts.push(format!("log level {l}"));
    }
    if !c.disabled_kinds.is_empty() {
        let kinds: Vec<&str> = c.disabled_kinds.iter().map(|k| k.as_str()).collect();
        parts.push(format!("disabled kinds {}", kinds.join(",")));
    }
    if let Some(ch) = &c.chaos {
        parts.push(if ch.is_active() {
            format!(
                "chaos fail {:.3}{} delay {}-{} ms",
                ch.fail_probability(),
                if ch.panic { " (panic)" } else { "" },
                ch.delay_min_ms,
                ch.delay_max_ms
            )
        } else {
            "chaos off".to_string()
        });
    }
    for l in &c.limits {
        parts.push(format!("limit {l}"));
    }
    if parts.is_empty() {
        "defaults".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_edit_only_their_setting() {
        let mut c = RuntimeConfig {
            concurrency: Some(3),
            ..Default::default()
        };
        Change::Freeze.apply_to(&mut c);
        Change::DisableKind(JobKind::Sum).apply_to(&mut c);
        Change::DisableKind(JobKind::Sum).apply_to(&mut c);
        assert_eq!(c.frozen, Some(true));
        assert_eq!(c.concurrency, Some(3));
        assert_eq!(c.disabled_kinds, vec![JobKind::Sum]);
        Change::EnableKind(JobKind::Sum).apply_to(&mut c);
        Change::Resume.apply_to(&mut c);
        assert!(c.disabled_kinds.is_empty());
        assert_eq!(c.frozen, Some(false));
        assert_eq!(describe(&c), "running, concurrency 3");
    }

    #[test]
    fn bad_changes_are_refused_before_writing() {
        assert!(Change::Concurrency(0).validate(None).is_err());
        assert!(Change::LogLevel("info,=[".into()).validate(None).is_err());
        assert!(Change::LogLevel("info,jetmill_worker=debug".into())
            .validate(None)
            .is_ok());
        assert!(Change::DisableKind(JobKind::Sum)
            .validate(Some("w1"))
            .is_err());
    }
}
