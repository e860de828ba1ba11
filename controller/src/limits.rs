//! `jetmill limits ...`: cluster-wide run limits per kind and/or tenant, set live
//! through the runtime config (with the usual applied/not-applied report) and shown
//! with what they have in use.

use crate::cli::{parse_kind, print_json, table, ApplyArgs, ReadArgs};
use crate::control::{self, Change};
use anyhow::Context;
use jetmill_proto::limit::EACH_TENANT;
use jetmill_proto::{now_ms, JobKind, LimitView, Rate, RunLimit};

/// `jetmill limits` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LimitsCmd {
    /// Set the limit on a scope (replacing the one there). Limited jobs wait in the
    /// queue; running ones are never stopped. Examples:
    ///   jetmill limits set --kind factorial --max-running 4
    ///   jetmill limits set --tenant '*' --max-running 10 --rate 20/s
    ///   jetmill limits set --kind sum --tenant acme --rate 30/m
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        /// At most this many of these jobs running at once, across all workers.
        #[arg(long, value_name = "N")]
        max_running: Option<u32>,
        /// At most this many starts per period, across all workers (5/s, 30/m, 2/10s).
        #[arg(long, value_parser = parse_rate, value_name = "STARTS/PERIOD")]
        rate: Option<Rate>,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Remove the limit on a scope (or all of them with --all).
    /// Example: `jetmill limits clear --kind factorial`
    Clear {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Remove every limit.
        #[arg(long, conflicts_with_all = ["kind", "tenant"])]
        all: bool,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// The limits set and what each has in use (running jobs, next start).
    List(ReadArgs),
}

/// Which jobs a limit covers.
#[derive(Debug, Clone, clap::Args)]
pub struct ScopeArgs {
    /// Only jobs of this kind (default: every kind).
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<JobKind>,
    /// Only this tenant's jobs, or '*' for each tenant on its own (default: all
    /// tenants together).
    #[arg(long)]
    pub tenant: Option<String>,
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    s.parse().map_err(|e: jetmill_proto::limit::LimitError| e.0)
}

/// Run a `jetmill limits` command; whether it fully succeeded (the exit code).
pub async fn run(cmd: LimitsCmd) -> anyhow::Result<bool> {
    match cmd {
        LimitsCmd::Set {
            scope,
            max_running,
            rate,
            apply,
        } => {
            let limit = RunLimit {
                kind: scope.kind,
                tenant: scope.tenant,
                max_running,
                rate,
            };
            limit.validate()?;
            control::run(Change::SetLimit(limit), &apply).await
        }
        LimitsCmd::Clear { scope, all, apply } => {
            if all {
                return control::run(Change::ClearLimits, &apply).await;
            }
            let wanted = RunLimit {
                kind: scope.kind,
                tenant: scope.tenant,
                max_running: None,
                rate: None,
            };
            let jet = control::connect(&apply.nats).await?;
            let config = jetmill_natsx::control::global(&jet.config)
                .await
                .context("reading the runtime config")?
                .config;
            if !config.limits.iter().any(|l| l.same_scope(&wanted)) {
                let set: Vec<String> = config.limits.iter().map(|l| l.scope()).collect();
                anyhow::bail!(
                    "no limit on {} to clear; limits set: {} (see `jetmill limits list`)",
                    wanted.scope(),
                    if set.is_empty() {
                        "none".to_string()
                    } else {
                        set.join("; ")
                    }
                );
            }
            control::run(Change::ClearLimit(wanted), &apply).await
        }
        LimitsCmd::List(args) => list(&args).await.map(|()| true),
    }
}

async fn list(args: &ReadArgs) -> anyhow::Result<()> {
    let jet = control::connect(&args.nats).await?;
    let config = jetmill_natsx::control::global(&jet.config)
        .await
        .context("reading the runtime config")?
        .config;
    let views = jetmill_natsx::limits::views(&jet, &config.limits, None)
        .await
        .context("reading what the limits have in use")?;
    if args.json {
        return print_json(&views);
    }
    if views.is_empty() {
        println!("no run limits set (jetmill limits set --help)");
        return Ok(());
    }
    println!(
        "{}",
        table(
            &[
                "SCOPE",
                "MAX RUNNING",
                "RATE",
                "TENANT",
                "RUNNING",
                "NEXT START"
            ],
            &rows(&views)
        )
    );
    Ok(())
}

fn rows(views: &[LimitView]) -> Vec<Vec<String>> {
    let now = now_ms();
    let mut rows = Vec::new();
    for v in views {
        let max = v
            .limit
            .max_running
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        let rate = v
            .limit
            .rate
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        let each = v.limit.tenant.as_deref() == Some(EACH_TENANT);
        if v.usage.is_empty() {
            let tenant = if each { "(none yet)" } else { "-" };
            rows.push(vec![
                v.scope.clone(),
                max.clone(),
                rate.clone(),
                tenant.into(),
                if v.limit.max_running.is_some() {
                    "0"
                } else {
                    "-"
                }
                .into(),
                if v.limit.rate.is_some() { "now" } else { "-" }.into(),
            ]);
        }
        for u in &v.usage {
            let next = match u.next_start_ms {
                _ if v.limit.rate.is_none() => "-".into(),
                Some(at) if at > now => format!("in {} ms", at - now),
                _ => "now".into(),
            };
            rows.push(vec![
                v.scope.clone(),
                max.clone(),
                rate.clone(),
                u.tenant.clone().unwrap_or_else(|| "-".into()),
                // A rate alone holds no places: no running count.
                if v.limit.max_running.is_some() {
                    u.running.to_string()
                } else {
                    "-".into()
                },
                next,
            ]);
        }
    }
    rows
}
