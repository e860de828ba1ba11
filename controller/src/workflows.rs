//! `jetmill workflows ...`: workflows through the gateway (submit a JSON file, get,
//! watch until the end, cancel).

use crate::cli::{print_json, table};
use crate::jobs::{Api, ApiArgs};
use anyhow::Context;
use serde_json::Value;
use std::time::Duration;

/// `jetmill workflows` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WorkflowsCmd {
    /// Submit a workflow: a `POST /v1/workflows` body in a JSON file (`-`: standard
    /// input). Examples:
    ///   jetmill workflows submit flow.json --watch
    ///   echo '{"fan_out": [{"kind": "factorial", "input": 100}, {"kind": "factorial", "input": 200}], "fan_in": {"kind": "sum"}}' | jetmill workflows submit -
    Submit {
        /// The JSON file (`-` for standard input).
        file: std::path::PathBuf,
        /// Follow it until it ends (exit status 1 unless it ends done).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A workflow's status and its steps'.
    Get {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Follow a workflow until it ends, printing each change (exit status 1 unless it
    /// ends done).
    Watch {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a workflow: running steps stop, the rest never start.
    Cancel {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Run a `workflows` subcommand; `Ok(false)` makes the exit status 1.
pub async fn run(cmd: WorkflowsCmd) -> anyhow::Result<bool> {
    match cmd {
        WorkflowsCmd::Submit { file, watch, api } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let body: Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not JSON: a workflow is a POST /v1/workflows body (see docs/api.md, Workflows)",
                    file.display()
                )
            })?;
            let client = Api::new(&api)?;
            let (_, answer) = client
                .send(client.http.post(client.url("/v1/workflows")).json(&body))
                .await?;
            let id = answer["id"].as_str().unwrap_or_default().to_string();
            if api.json && !watch {
                print_json(&answer)?;
                return Ok(true);
            }
            println!("{id}");
            if !watch {
                return Ok(true);
            }
            follow(&client, &id, api.json).await
        }
        WorkflowsCmd::Get { id, api } => {
            let client = Api::new(&api)?;
            let (_, wf) = client
                .send(client.http.get(client.url(&format!("/v1/workflows/{id}"))))
                .await?;
            show(&wf, api.json)?;
            Ok(true)
        }
        WorkflowsCmd::Watch { id, api } => {
            let client = Api::new(&api)?;
            follow(&client, &id, api.json).await
        }
        WorkflowsCmd::Cancel { id, api } => {
            let client = Api::new(&api)?;
            let (_, wf) = client
                .send(
                    client
                        .http
                        .delete(client.url(&format!("/v1/workflows/{id}"))),
                )
                .await?;
            show(&wf, api.json)?;
            Ok(true)
        }
    }
}

/// Long-poll until every step settled, printing a line per change; `true` if done.
async fn follow(client: &Api, id: &str, json: bool) -> anyhow::Result<bool> {
    let mut last = String::new();
    loop {
        let (_, wf) = client
            .send(
                client
                    .http
                    .get(client.url(&format!("/v1/workflows/{id}?wait=20s")))
                    .timeout(Duration::from_secs(50)),
            )
            .await?;
        let line = summary(&wf);
        if line != last {
            if json {
                println!("{wf}");
            } else {
                println!("{line}");
            }
            last = line;
        }
        if ended(&wf) {
            if !json {
                show(&wf, false)?;
            }
            return Ok(wf["status"] == "done");
        }
    }
}

fn ended(wf: &Value) -> bool {
    let settled = wf["steps"].as_array().is_some_and(|steps| {
        steps.iter().all(|s| {
            matches!(
                s["status"].as_str(),
                Some("done" | "failed" | "cancelled" | "skipped")
            )
        })
    });
    settled && matches!(wf["status"].as_str(), Some("done" | "failed" | "cancelled"))
}

/// `running 40% (done 2, running 1, waiting 2)`.
fn summary(wf: &Value) -> String {
    let counts = wf["counts"]
        .as_object()
        .map(|c| {
            c.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "{} {:.0}% ({counts})",
        wf["status"].as_str().unwrap_or("?"),
        wf["progress"].as_f64().unwrap_or(0.0) * 100.0
    )
}

fn show(wf: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(wf);
    }
    println!(
        "workflow {}: {}",
        wf["id"].as_str().unwrap_or("?"),
        summary(wf)
    );
    if let Some(h) = wf.get("halted") {
        match h["step"].as_str() {
            Some(step) => println!("stopped: step {step} failed (fail fast)"),
            None => println!("stopped: {}", h["status"].as_str().unwrap_or("?")),
        }
    }
    let rows: Vec<Vec<String>> = wf["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let deps = s["depends_on"]
                .as_array()
                .map(|d| {
                    let names: Vec<&str> = d.iter().filter_map(Value::as_str).collect();
                    if names.len() > 4 {
                        format!("{} steps", names.len())
                    } else {
                        names.join(",")
                    }
                })
                .unwrap_or_default();
            vec![
                s["name"].as_str().unwrap_or("?").to_string(),
                s["kind"].as_str().unwrap_or("?").to_string(),
                s["status"].as_str().unwrap_or("?").to_string(),
                format!("{:.0}%", s["progress"].as_f64().unwrap_or(0.0) * 100.0),
                deps,
                s["job_id"].as_str().unwrap_or("?").to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["STEP", "KIND", "STATUS", "PROGRESS", "AFTER", "JOB"],
            &rows
        )
    );
    Ok(())
}
