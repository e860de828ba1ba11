//! `jetmill schedules ...`: recurring schedules through the gateway (create, list, get,
//! pause, resume, delete, and the jobs one made).

use crate::cli::{parse_duration, parse_kind, print_json, table};
use crate::jobs::{list_row, parse_input, Api, ApiArgs};
use jetmill_proto::JobKind;
use serde_json::{json, Value};
use std::time::Duration;

/// `jetmill schedules` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SchedulesCmd {
    /// Create a schedule: each firing submits the job. Examples:
    ///   jetmill schedules create '0 */5 * * * *' factorial 10000
    ///   jetmill schedules create '0 30 9 * * MON-FRI' sum '[1, 2]' --time-zone Europe/Paris
    ///   jetmill schedules create '@every 10m' fibonacci 1000000 --modulus 1000000007
    Create {
        /// Six-field cron with seconds, `@hourly`/`@daily`/..., or `@every 5m` (>= 1s).
        cron: String,
        /// factorial, fibonacci or sum.
        #[arg(value_parser = parse_kind)]
        kind: JobKind,
        /// The input: a number for factorial/fibonacci, a JSON array for sum.
        #[arg(allow_hyphen_values = true)]
        input: String,
        /// IANA time zone the cron expression is read in (default UTC; not with @every).
        #[arg(long)]
        time_zone: Option<String>,
        /// Fibonacci modulus (1 <= m < 2^64).
        #[arg(long)]
        modulus: Option<u64>,
        /// Queue priority of its jobs: high, normal or low.
        #[arg(long)]
        priority: Option<String>,
        /// Attempts before one of its jobs fails.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Wall-clock limit per attempt (e.g. 30s, 5m).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Store it without firing (resume it later).
        #[arg(long)]
        paused: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Every schedule of this tenant.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One schedule.
    Get {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop firing (the jobs it made run on).
    Pause {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Fire again from its next time (missed times are not made up).
    Resume {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop and forget the schedule (the jobs it made stay).
    Delete {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The jobs a schedule made, newest first.
    Jobs {
        id: String,
        /// How many (1..1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Run a `schedules` subcommand.
pub async fn run(cmd: SchedulesCmd) -> anyhow::Result<bool> {
    match cmd {
        SchedulesCmd::Create {
            cron,
            kind,
            input,
            time_zone,
            modulus,
            priority,
            max_attempts,
            timeout,
            paused,
            api,
        } => {
            let mut job = json!({ "kind": kind.as_str(), "input": parse_input(&input) });
            if let Some(m) = modulus {
                job["params"] = json!({ "modulus": m });
            }
            if let Some(p) = priority {
                job["priority"] = json!(p);
            }
            if let Some(n) = max_attempts {
                job["max_attempts"] = json!(n);
            }
            if let Some(t) = timeout {
                job["timeout_secs"] = json!(t.as_secs_f64());
            }
            let mut body = json!({ "cron": cron, "job": job, "paused": paused });
            if let Some(tz) = time_zone {
                body["time_zone"] = json!(tz);
            }
            let client = Api::new(&api)?;
            let (_, record) = client
                .send(client.http.post(client.url("/v1/schedules")).json(&body))
                .await?;
            show(&record, api.json)
        }
        SchedulesCmd::List { api } => {
            let client = Api::new(&api)?;
            let (_, list) = client
                .send(client.http.get(client.url("/v1/schedules")))
                .await?;
            if api.json {
                print_json(&list)?;
                return Ok(true);
            }
            let rows: Vec<Vec<String>> = list["schedules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    vec![
                        s["id"].as_str().unwrap_or("?").to_string(),
                        s["cron"].as_str().unwrap_or("?").to_string(),
                        s["time_zone"].as_str().unwrap_or("").to_string(),
                        job_summary(&s["job"]),
                        state(s).to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("no schedules");
            } else {
                println!(
                    "{}",
                    table(&["ID", "CRON", "TIME ZONE", "JOB", "STATE"], &rows)
                );
            }
            Ok(true)
        }
        SchedulesCmd::Get { id, api } => one(&api, reqwest::Method::GET, &id, "").await,
        SchedulesCmd::Pause { id, api } => one(&api, reqwest::Method::POST, &id, "/pause").await,
        SchedulesCmd::Resume { id, api } => one(&api, reqwest::Method::POST, &id, "/resume").await,
        SchedulesCmd::Delete { id, api } => one(&api, reqwest::Method::DELETE, &id, "").await,
        SchedulesCmd::Jobs { id, limit, api } => {
            let client = Api::new(&api)?;
            let url = reqwest::Url::parse_with_params(
                &client.url("/v1/jobs"),
                &[("schedule", id.as_str()), ("limit", &limit.to_string())],
            )?;
            let (_, page) = client.send(client.http.get(url)).await?;
            if api.json {
                print_json(&page)?;
                return Ok(true);
            }
            let rows: Vec<Vec<String>> = page["jobs"]
                .as_array()
                .map(|jobs| jobs.iter().map(list_row).collect())
                .unwrap_or_default();
            println!(
                "{}",
                table(
                    &[
                        "ID",
                        "KIND",
                        "INPUT",
                        "STATUS",
                        "PROGRESS",
                        "ATTEMPTS",
                        "SUBMITTED"
                    ],
                    &rows
                )
            );
            Ok(true)
        }
    }
}

/// `method /v1/schedules/{id}{suffix}`, then show the schedule it answers with.
async fn one(
    api: &ApiArgs,
    method: reqwest::Method,
    id: &str,
    suffix: &str,
) -> anyhow::Result<bool> {
    let client = Api::new(api)?;
    let (_, record) = client
        .send(
            client
                .http
                .request(method, client.url(&format!("/v1/schedules/{id}{suffix}"))),
        )
        .await?;
    show(&record, api.json)
}

fn show(record: &Value, json: bool) -> anyhow::Result<bool> {
    if json {
        print_json(record)?;
        return Ok(true);
    }
    for (label, value) in [
        ("id", record["id"].as_str().unwrap_or("?").to_string()),
        ("cron", record["cron"].as_str().unwrap_or("?").to_string()),
        (
            "time zone",
            record["time_zone"].as_str().unwrap_or("").to_string(),
        ),
        ("job", job_summary(&record["job"])),
        ("state", state(record).to_string()),
        (
            "created",
            record["created_at"].as_str().unwrap_or("").to_string(),
        ),
    ] {
        println!("{label:<12}{value}");
    }
    Ok(true)
}

fn state(s: &Value) -> &'static str {
    if s["paused"].as_bool().unwrap_or(false) {
        "paused"
    } else {
        "running"
    }
}

fn job_summary(job: &Value) -> String {
    let input = match &job["input"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    format!("{} {input}", job["kind"].as_str().unwrap_or("?"))
}
