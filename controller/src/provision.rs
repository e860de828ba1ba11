//! `jetmill provision`: create every stream, consumer and bucket jetmill uses, with the
//! operator's NATS credentials, so gateways and workers can run as users that may not
//! create anything (the `gateway` and `worker` roles of docker/nats/accounts.conf).
//!
//! Idempotent: what exists is used as it is (the workers consumer is brought to the
//! given queue settings); it prints what it found and what it created.

use crate::cli::{print_json, table};
use anyhow::Context;
use jetmill_natsx::{NatsArgs, Provisioned, QueueArgs};
use jetmill_proto::{names, JobKind};

/// Flags of `jetmill provision`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The settings of the queue: the same flags (and variables) the gateway and
    /// worker take; `--replicas 3` on a 3-node cluster.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Provision and print the outcome.
pub async fn run(args: &ProvisionArgs) -> anyhow::Result<()> {
    let client = jetmill_natsx::connect(&args.nats, "jetmill-provision")
        .await
        .with_context(|| format!("cannot reach NATS at {}", args.nats.url))?;
    // Workers count attempts themselves and provision their consumer with unlimited
    // deliveries (see jetmill_worker::run); the operator's consumer must match.
    let mut settings = args.queue.settings();
    settings.max_deliver = -1;
    let (jet, mut report) = jetmill_natsx::provision_report(client, settings)
        .await
        .context("provisioning streams and buckets")?;
    for (priority, _, created) in jet
        .ensure_workers_consumers()
        .await
        .context("provisioning the workers consumers")?
    {
        report.push(Provisioned {
            kind: "consumer",
            name: format!(
                "{}/{}",
                names::JOBS_STREAM,
                names::workers_consumer(priority)
            ),
            created,
        });
    }
    for kind in JobKind::ALL {
        let (_, created) = jet
            .ensure_parked_consumer(kind)
            .await
            .with_context(|| format!("provisioning the parked-jobs consumer of {kind}"))?;
        report.push(Provisioned {
            kind: "consumer",
            name: format!("{}/{}", names::JOBS_STREAM, names::parked_consumer(kind)),
            created,
        });
    }
    let (_, created) = jet
        .ensure_due_consumer()
        .await
        .context("provisioning the due delayed jobs consumer")?;
    report.push(Provisioned {
        kind: "consumer",
        name: format!("{}/{}", names::SCHEDULES_STREAM, names::DUE_CONSUMER),
        created,
    });
    // Gateways used to delete this themselves; under least privilege the operator does.
    if jet
        .events
        .consumer_info(names::USAGE_CONSUMER)
        .await
        .is_ok()
    {
        jet.events
            .delete_consumer(names::USAGE_CONSUMER)
            .await
            .context("deleting the old usage consumer on EVENTS")?;
    }
    if args.json {
        print_json(&report)?;
    } else {
        let rows: Vec<Vec<String>> = report
            .iter()
            .map(|p| {
                vec![
                    p.kind.to_string(),
                    p.name.clone(),
                    if p.created { "created" } else { "exists" }.to_string(),
                ]
            })
            .collect();
        println!("{}", table(&["KIND", "NAME", "STATE"], &rows));
        let made = report.iter().filter(|p| p.created).count();
        println!("{made} created, {} already there", report.len() - made);
    }
    Ok(())
}
