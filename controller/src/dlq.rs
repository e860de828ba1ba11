//! `jetmill dlq ...`: dead letters (failed jobs) through the gateway: list them with
//! their error trail, retry them, purge them.

use crate::cli::{print_json, table};
use crate::jobs::{Api, ApiArgs};
use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Most ids one bulk request carries (the gateway's limit).
const CHUNK: usize = 1000;

/// `jetmill dlq` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCmd {
    /// Failed jobs, newest first, each with every failed attempt (worker and error).
    List {
        /// How many (1..1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Continue after this cursor (printed by the previous page).
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run failed jobs again with a fresh attempt budget. Examples:
    ///   jetmill dlq retry 01a2...
    ///   jetmill dlq retry --all
    Retry(Which),
    /// Delete failed jobs' records for good (only failed ones).
    Purge(Which),
}

/// The dead letters a `retry` or `purge` is about.
#[derive(Debug, clap::Args)]
pub struct Which {
    /// Job ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Every failed job this token can see.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Run a `dlq` subcommand; `Ok(false)` when some job could not be retried or purged.
pub async fn run(cmd: DlqCmd) -> anyhow::Result<bool> {
    match cmd {
        DlqCmd::List { limit, cursor, api } => {
            let client = Api::new(&api)?;
            let page = failed_page(&client, limit, cursor.as_deref()).await?;
            if api.json {
                print_json(&page)?;
                return Ok(true);
            }
            print_list(&page);
            Ok(true)
        }
        DlqCmd::Retry(which) => bulk(which, "retry").await,
        DlqCmd::Purge(which) => bulk(which, "purge").await,
    }
}

async fn failed_page(client: &Api, limit: u32, cursor: Option<&str>) -> anyhow::Result<Value> {
    let mut query: Vec<(&str, String)> = vec![
        ("status", "failed".to_string()),
        ("limit", limit.to_string()),
    ];
    query.extend(cursor.map(|c| ("cursor", c.to_string())));
    let url = reqwest::Url::parse_with_params(&client.url("/v1/jobs"), &query)
        .context("the gateway URL is not a valid URL")?;
    Ok(client.send(client.http.get(url)).await?.1)
}

fn print_list(page: &Value) {
    let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        println!("no dead letters");
        return;
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j["id"].as_str().unwrap_or("?").to_string(),
                j["kind"].as_str().unwrap_or("?").to_string(),
                j["attempts"].to_string(),
                j["retries"].as_u64().unwrap_or(0).to_string(),
                j["finished_at"].as_str().unwrap_or("").to_string(),
                j["error"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["ID", "KIND", "ATTEMPTS", "RETRIES", "FAILED", "LAST ERROR"],
            &rows
        )
    );
    for j in &jobs {
        let trail = j["failures"].as_array().cloned().unwrap_or_default();
        if trail.is_empty() {
            continue;
        }
        println!("\n{}:", j["id"].as_str().unwrap_or("?"));
        for f in trail {
            println!(
                "  attempt {:>3}  {}  {}  {}",
                f["attempt"],
                f["at"].as_str().unwrap_or(""),
                f["worker"].as_str().unwrap_or("-"),
                f["error"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(next) = page["next_cursor"].as_str() {
        println!("\nmore: --cursor {next}");
    }
}

/// Retry or purge `ids` (or, with `all`, every failed job, page by page).
async fn bulk(which: Which, action: &str) -> anyhow::Result<bool> {
    let Which { ids, all, api } = which;
    let api = &api;
    let client = Api::new(api)?;
    let ids = if all {
        every_failed(&client).await?
    } else {
        ids
    };
    if ids.is_empty() {
        if api.json {
            print_json(&json!({"applied": 0, "items": []}))?;
        } else {
            println!("no dead letters");
        }
        return Ok(true);
    }
    let mut items = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let url = client.url(&format!("/v1/dead-letters/{action}"));
        let (_, resp) = client
            .send(client.http.post(url).json(&json!({ "ids": chunk })))
            .await?;
        let answered = resp["items"]
            .as_array()
            .context("the gateway's answer has no items")?;
        items.extend(answered.iter().cloned());
    }
    let refused = items
        .iter()
        .filter(|i| i["status"].as_u64().unwrap_or(500) >= 300)
        .count();
    if api.json {
        print_json(&json!({ "applied": items.len() - refused, "items": items }))?;
    } else {
        let done = if action == "retry" {
            "retried"
        } else {
            "purged"
        };
        for i in &items {
            let id = i["id"].as_str().unwrap_or("?");
            match i["error"].as_str() {
                None => println!("{id} {done}"),
                Some(e) => eprintln!("{id}: {e}"),
            }
        }
        if refused > 0 {
            eprintln!("{refused} of {} not {done}", items.len());
        }
    }
    Ok(refused == 0)
}

/// The ids of every failed job the token can see, newest first.
async fn every_failed(client: &Api) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = failed_page(client, 1000, cursor.as_deref()).await?;
        let Some(jobs) = page["jobs"].as_array() else {
            bail!("the gateway's answer has no jobs");
        };
        ids.extend(
            jobs.iter()
                .filter_map(|j| j["id"].as_str().map(String::from)),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(ids),
        }
    }
}
