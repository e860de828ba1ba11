//! `jetmill jobs ...`: the HTTP API from the command line (submit, get, list, cancel, watch).

use crate::cli::{parse_duration, parse_kind, print_json, table};
use anyhow::{bail, Context};
use jetmill_proto::JobKind;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Where the gateway is and how to authenticate (shared with `jetmill bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Gateway base URL.
    #[arg(
        long,
        env = "JETMILL_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,
    /// Bearer token (JWT or API key) when the gateway requires auth.
    #[arg(long, env = "JETMILL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Flags of every `jobs` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub at: GatewayArgs,
    /// Print the API's JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `jetmill jobs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JobsCmd {
    /// Submit a job, or many from a file. Examples:
    ///   jetmill jobs submit factorial 100000 --watch
    ///   jetmill jobs submit fibonacci 1000000000000000000 --modulus 1000000007
    ///   jetmill jobs submit sum '[1, 2, "123456789012345678901234567890"]'
    ///   jetmill jobs submit factorial 5000 --delay 90s
    ///   jetmill jobs submit factorial 5000 --run-at 2026-12-24T18:00:00Z
    ///   jetmill jobs submit --from jobs.ndjson
    Submit {
        /// factorial, fibonacci or sum.
        #[arg(value_parser = parse_kind, required_unless_present = "from")]
        kind: Option<JobKind>,
        /// The input: a number for factorial/fibonacci, a JSON array for sum.
        #[arg(allow_hyphen_values = true, required_unless_present = "from")]
        input: Option<String>,
        /// Submit every job of this NDJSON file (one `POST /v1/jobs` body per line,
        /// `-` for standard input) through the batch API, up to 1,000 per request;
        /// prints one id per accepted line, and `line N: ...` on stderr for each refused
        /// one (exit status 1 if any was refused).
        #[arg(long, conflicts_with_all = ["kind", "input", "modulus", "priority", "max_attempts", "timeout", "delay", "run_at", "watch"])]
        from: Option<std::path::PathBuf>,
        /// Fibonacci modulus (1 <= m < 2^64).
        #[arg(long)]
        modulus: Option<u64>,
        /// Queue priority: high, normal or low.
        #[arg(long)]
        priority: Option<String>,
        /// Attempts before the job fails.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Wall-clock limit per attempt (e.g. 30s, 5m).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Start after this long (e.g. 90s, 1h30m): the job is `scheduled` until then.
        #[arg(long, value_parser = parse_duration, conflicts_with = "run_at")]
        delay: Option<Duration>,
        /// Start at this RFC 3339 time (e.g. 2026-12-24T18:00:00Z).
        #[arg(long)]
        run_at: Option<String>,
        /// Follow the job until it ends (progress bar).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one job's record.
    Get {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List recent jobs, newest first.
    List {
        /// Only jobs with this status (pending, scheduled, running, done, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// How many (1..1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Continue after this cursor (printed by the previous page).
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a queued, scheduled or running job.
    Cancel {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Follow a job with a live progress bar until it ends; exit 0 only if it is done.
    Watch {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Run a `jobs` subcommand; `Ok(false)` when the job did not end `done` (watch).
pub async fn run(cmd: JobsCmd) -> anyhow::Result<bool> {
    match cmd {
        JobsCmd::Submit {
            from: Some(path),
            api,
            ..
        } => submit_file(&path, &api).await,
        JobsCmd::Submit {
            kind,
            input,
            from: None,
            modulus,
            priority,
            max_attempts,
            timeout,
            delay,
            run_at,
            watch,
            api,
        } => {
            let (Some(kind), Some(input)) = (kind, input) else {
                bail!("give a kind and an input, or --from FILE");
            };
            let mut body = json!({ "kind": kind.as_str(), "input": parse_input(&input) });
            if let Some(m) = modulus {
                body["params"] = json!({ "modulus": m });
            }
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if let Some(n) = max_attempts {
                body["max_attempts"] = json!(n);
            }
            if let Some(t) = timeout {
                body["timeout_secs"] = json!(t.as_secs_f64());
            }
            if let Some(d) = delay {
                body["delay"] = json!(format!("{}ms", d.as_millis()));
            }
            if let Some(at) = run_at {
                body["run_at"] = json!(at);
            }
            let client = Api::new(&api)?;
            let (_, resp) = client
                .send(client.http.post(client.url("/v1/jobs")).json(&body))
                .await?;
            let id = resp["id"]
                .as_str()
                .context("the gateway's answer has no job id")?
                .to_string();
            if watch {
                if !api.json {
                    eprintln!("submitted {id}");
                }
                return follow(&client, &id, api.json).await;
            }
            if api.json {
                print_json(&resp)?;
            } else {
                println!("{id}");
            }
            Ok(true)
        }
        JobsCmd::Get { id, api } => {
            let client = Api::new(&api)?;
            let (_, record) = client
                .send(client.http.get(client.url(&format!("/v1/jobs/{id}"))))
                .await?;
            if api.json {
                print_json(&record)?;
            } else {
                print_record(&record);
            }
            Ok(true)
        }
        JobsCmd::List {
            status,
            kind,
            limit,
            cursor,
            api,
        } => {
            let client = Api::new(&api)?;
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            query.extend(status.map(|s| ("status", s)));
            query.extend(kind.map(|k| ("kind", k)));
            query.extend(cursor.map(|c| ("cursor", c)));
            let url = reqwest::Url::parse_with_params(&client.url("/v1/jobs"), &query)
                .context("the gateway URL is not a valid URL")?;
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
            if let Some(next) = page["next_cursor"].as_str() {
                println!("more: --cursor {next}");
            }
            Ok(true)
        }
        JobsCmd::Cancel { id, api } => {
            let client = Api::new(&api)?;
            let (_, record) = client
                .send(client.http.delete(client.url(&format!("/v1/jobs/{id}"))))
                .await?;
            if api.json {
                print_json(&record)?;
            } else {
                println!("{id} {}", record["status"].as_str().unwrap_or("?"));
            }
            Ok(true)
        }
        JobsCmd::Watch { id, api } => {
            let client = Api::new(&api)?;
            follow(&client, &id, api.json).await
        }
    }
}

/// Most jobs sent in one `POST /v1/jobs/batch`.
const BATCH_SIZE: usize = 1000;

/// `jobs submit --from FILE`: every line a job, sent in batches of up to [`BATCH_SIZE`].
/// Prints the accepted ids (with `--json`, one answer per line: `line`, `batch` and the
/// API's item); `Ok(false)` if any line was refused.
async fn submit_file(path: &std::path::Path, api: &ApiArgs) -> anyhow::Result<bool> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading jobs from standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading jobs from {}", path.display()))?
    };
    // (line number, text) of every non-blank line.
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.is_empty() {
        bail!(
            "{} has no jobs (one JSON job spec per line)",
            path.display()
        );
    }
    let client = Api::new(api)?;
    let mut answers = Vec::with_capacity(lines.len());
    let mut refused = 0usize;
    for chunk in lines.chunks(BATCH_SIZE) {
        let body: String = chunk.iter().map(|(_, l)| format!("{l}\n")).collect();
        let (_, resp) = client
            .send(
                client
                    .http
                    .post(client.url("/v1/jobs/batch"))
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(body),
            )
            .await?;
        let batch = resp["id"].as_str().unwrap_or("?").to_string();
        let items = resp["items"]
            .as_array()
            .context("the gateway's answer has no items")?;
        for item in items {
            let index = item["index"].as_u64().unwrap_or(0) as usize;
            let line = chunk.get(index).map_or(0, |(n, _)| *n);
            match item["id"].as_str() {
                Some(id) if !api.json => println!("{id}"),
                Some(_) => {}
                None => {
                    refused += 1;
                    if !api.json {
                        let field = item["field"]
                            .as_str()
                            .map(|f| format!("{f}: "))
                            .unwrap_or_default();
                        eprintln!(
                            "line {line}: {field}{}",
                            item["message"].as_str().unwrap_or("refused")
                        );
                    }
                }
            }
            let mut answer = json!({ "line": line, "batch": batch });
            if let (Some(a), Some(fields)) = (answer.as_object_mut(), item.as_object()) {
                a.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            answers.push(answer);
        }
    }
    if api.json {
        print_json(&Value::Array(answers))?;
    } else if refused > 0 {
        eprintln!("{refused} of {} jobs refused", lines.len());
    }
    Ok(refused == 0)
}

/// Numbers and JSON arrays as JSON; anything else as a string (the API explains what it wants).
pub(crate) fn parse_input(s: &str) -> Value {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ (Value::Array(_) | Value::String(_))) => v,
        Ok(Value::Number(n)) if n.is_u64() || n.is_i64() => Value::Number(n),
        _ => Value::String(s.trim().to_string()),
    }
}

/// An HTTP client of one gateway (with its token), shared by `jobs` and `dlq`.
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub(crate) fn new(args: &ApiArgs) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base: args.at.gateway.trim_end_matches('/').to_string(),
            token: args.at.token.clone(),
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send, and turn a problem+json answer into an error naming the field.
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the gateway at {} (set --gateway or JETMILL_GATEWAY_URL; is `jetmill dev` running?)",
                self.base
            )
        })?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            let detail = body["detail"]
                .as_str()
                .or(body["title"].as_str())
                .unwrap_or("no details");
            let field = body["field"]
                .as_str()
                .map(|f| format!(" (field `{f}`)"))
                .unwrap_or_default();
            let hint = match status {
                401 => "\n  the gateway requires a token: pass --token or set JETMILL_TOKEN",
                _ => "",
            };
            bail!("the gateway answered {status}: {detail}{field}{hint}");
        }
        Ok((status, body))
    }
}

pub(crate) fn list_row(j: &Value) -> Vec<String> {
    let input = match &j["input"] {
        Value::Array(a) => format!("[{} terms]", a.len()),
        v => {
            let s = v.to_string().trim_matches('"').to_string();
            if s.len() > 24 {
                format!("{}...", &s[..21])
            } else {
                s
            }
        }
    };
    vec![
        j["id"].as_str().unwrap_or("?").to_string(),
        j["kind"].as_str().unwrap_or("?").to_string(),
        input,
        j["status"].as_str().unwrap_or("?").to_string(),
        format!("{:.0}%", j["progress"].as_f64().unwrap_or(0.0) * 100.0),
        j["attempts"].to_string(),
        j["submitted_at"].as_str().unwrap_or("").to_string(),
    ]
}

fn print_record(r: &Value) {
    let field = |k: &str| match &r[k] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    };
    for key in [
        "id", "kind", "input", "status", "progress", "attempts", "worker", "error",
    ] {
        if let Some(v) = field(key) {
            println!("{key:<12}{v}");
        }
    }
    if let Some(n) = r["retries"].as_u64() {
        println!("{:<12}{n}", "retries");
    }
    for f in r["failures"].as_array().into_iter().flatten() {
        println!(
            "{:<12}attempt {} on {} at {}: {}",
            "failed",
            f["attempt"],
            f["worker"].as_str().unwrap_or("-"),
            f["at"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("")
        );
    }
    for (key, label) in [
        ("submitted_at", "submitted"),
        ("run_at", "due"),
        ("started_at", "started"),
        ("finished_at", "finished"),
    ] {
        if let Some(v) = field(key) {
            println!("{label:<12}{v}");
        }
    }
    let info = &r["result_info"];
    if !info.is_null() {
        println!(
            "{:<12}{} digits, sha256 {}",
            "result",
            info["digits"],
            info["sha256"].as_str().unwrap_or("?")
        );
        match r["result"].as_str() {
            Some(text) if text.len() <= 200 => println!("{:<12}{text}", ""),
            _ => println!(
                "{:<12}{}...{} (download: GET /v1/jobs/{}/result)",
                "",
                info["head"].as_str().unwrap_or(""),
                info["tail"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("?")
            ),
        }
    }
}

/// Poll the record until it ends, drawing a progress bar on a terminal.
async fn follow(api: &Api, id: &str, json: bool) -> anyhow::Result<bool> {
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    loop {
        let (_, record) = api
            .send(api.http.get(api.url(&format!("/v1/jobs/{id}"))))
            .await?;
        let status = record["status"].as_str().unwrap_or("?").to_string();
        let progress = record["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
        let line = format!("{} {:>5.1}% {status}", bar(progress, 30), progress * 100.0);
        if !json && line != last_line {
            if tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
            last_line = line;
        }
        if matches!(status.as_str(), "done" | "failed" | "cancelled") {
            if tty && !json {
                eprintln!();
            }
            if json {
                print_json(&record)?;
            } else {
                print_record(&record);
            }
            return Ok(status == "done");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_become_json_numbers_arrays_or_strings() {
        assert_eq!(parse_input("1000"), json!(1000));
        assert_eq!(parse_input("[1, \"2\"]"), json!([1, "2"]));
        assert_eq!(
            parse_input("123456789012345678901234567890"),
            json!("123456789012345678901234567890")
        );
        assert_eq!(parse_input("1.5"), json!("1.5"));
        assert_eq!(bar(0.5, 4), "[##--]");
    }
}
