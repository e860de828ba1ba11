//! `jetmill bench`: end-to-end load against a running jetmill, next to the broker's
//! own limit measured in the same run.
//!
//! Jobs go in over HTTP (closed loop: fixed jobs in flight; open loop: fixed arrival
//! rate). Completion is observed on NATS (the `done`/`failed` lifecycle events), so
//! measuring adds no polling load. Latency is submit (request sent) to done (event
//! received), in an HDR histogram. With `--batch N` the jobs go in N per
//! `POST /v1/jobs/batch` request and a job's latency starts when its batch was sent.
//! Afterwards every accepted job must have ended:
//! the summary counts what was lost. The baseline publishes (acked) and pull-consumes
//! (acked) the same number of messages of the same size on a scratch stream.

use crate::cli::print_json;
use anyhow::{bail, Context};
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use hdrhistogram::Histogram;
use jetmill_natsx::NatsArgs;
use jetmill_proto::{JobKind, JobMessage, JobSpec};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// Flags of `jetmill bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Job mix, `COUNT:KIND:INPUT` comma separated,
    /// e.g. `10000:factorial:1000,100:factorial:100000,2:factorial:1000000`.
    #[arg(long, default_value = "5000:factorial:1000")]
    pub mix: String,
    /// Closed loop: jobs in flight at once (ignored with --rate).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Open loop: jobs submitted per second, whatever the completions do.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Submit through `POST /v1/jobs/batch`, this many jobs per request (1..1000). The
    /// closed loop then takes a whole batch's worth of `--concurrency` at a time (at
    /// least one batch is always in flight).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: Option<u16>,
    /// Give up waiting for the last jobs this long after the last submit.
    #[arg(long, default_value = "60s", value_parser = crate::cli::parse_duration)]
    pub drain_timeout: Duration,
    /// Skip the raw JetStream baseline.
    #[arg(long)]
    pub no_baseline: bool,
    #[command(flatten)]
    pub at: crate::jobs::GatewayArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// One entry of the job mix.
#[derive(Debug, Clone, PartialEq)]
struct MixEntry {
    count: usize,
    kind: JobKind,
    input: Value,
}

fn parse_mix(s: &str) -> anyhow::Result<Vec<MixEntry>> {
    let mut out = Vec::new();
    for part in split_top_level(s)
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let mut it = part.splitn(3, ':');
        let (Some(count), Some(kind), Some(input)) = (it.next(), it.next(), it.next()) else {
            bail!("bad --mix entry {part:?}: use COUNT:KIND:INPUT, e.g. 10000:factorial:1000");
        };
        let count: usize = count
            .parse()
            .with_context(|| format!("bad count in --mix entry {part:?}"))?;
        let kind = crate::cli::parse_kind(kind).map_err(anyhow::Error::msg)?;
        let input =
            serde_json::from_str(input).unwrap_or_else(|_| Value::String(input.to_string()));
        out.push(MixEntry { count, kind, input });
    }
    if out.iter().map(|e| e.count).sum::<usize>() == 0 {
        bail!("--mix has no jobs");
    }
    Ok(out)
}

/// Split on commas outside brackets, so a sum's `[1,2]` input stays whole.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Interleave the mix so big and small jobs are spread over the run.
fn schedule(mix: &[MixEntry]) -> Vec<Value> {
    let total: usize = mix.iter().map(|e| e.count).sum();
    let mut jobs: Vec<(f64, Value)> = Vec::with_capacity(total);
    for e in mix {
        for i in 0..e.count {
            let at = (i as f64 + 0.5) / e.count as f64;
            jobs.push((at, json!({"kind": e.kind.as_str(), "input": e.input})));
        }
    }
    jobs.sort_by(|a, b| a.0.total_cmp(&b.0));
    jobs.into_iter().map(|(_, j)| j).collect()
}

/// Done/failed events seen, and tasks waiting for one.
#[derive(Default)]
struct Completions {
    ended: HashMap<String, (Instant, bool)>,
    waiting: HashMap<String, oneshot::Sender<(Instant, bool)>>,
}

impl Completions {
    fn event(&mut self, id: String, at: Instant, ok: bool) {
        match self.waiting.remove(&id) {
            Some(tx) => {
                let _ = tx.send((at, ok));
            }
            None => {
                self.ended.entry(id).or_insert((at, ok));
            }
        }
    }

    fn wait(&mut self, id: &str) -> oneshot::Receiver<(Instant, bool)> {
        let (tx, rx) = oneshot::channel();
        match self.ended.remove(id) {
            Some(v) => {
                let _ = tx.send(v);
            }
            None => {
                self.waiting.insert(id.to_string(), tx);
            }
        }
        rx
    }
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Raw JetStream throughput on the same server and message size.
#[derive(Debug, Serialize)]
pub struct Baseline {
    pub messages: usize,
    pub message_bytes: usize,
    pub publish_msgs_per_s: f64,
    pub consume_msgs_per_s: f64,
    /// Messages published and consumed per second of both phases together.
    pub publish_consume_msgs_per_s: f64,
}

/// What `jetmill bench` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub mix: String,
    pub mode: String,
    pub jobs: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub done: u64,
    pub failed: u64,
    /// Accepted jobs with no done/failed event by the end of the drain timeout.
    pub lost: u64,
    pub seconds: f64,
    pub jobs_per_s: f64,
    pub latency: Latency,
    pub baseline: Option<Baseline>,
    /// `jobs_per_s` / baseline `publish_consume_msgs_per_s`.
    pub fraction_of_broker: Option<f64>,
}

/// Run the benchmark; `Ok(false)` if any job was lost or failed.
pub async fn run(args: BenchArgs) -> anyhow::Result<bool> {
    let mix = parse_mix(&args.mix)?;
    let jobs = schedule(&mix);
    let client = jetmill_natsx::connect(&args.nats, "jetmill-bench")
        .await
        .with_context(|| {
            format!(
                "cannot reach NATS at {} (set --server or JETMILL_NATS_URL)",
                args.nats.url
            )
        })?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(64))
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let base = args.at.gateway.trim_end_matches('/').to_string();
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the gateway at {base} (set --gateway; is `jetmill dev` running?)")
        })?;
    if !ready.status().is_success() {
        bail!("the gateway at {base} is not ready ({})", ready.status());
    }

    // Completion events, subscribed before the first submit.
    let completions = Arc::new(Mutex::new(Completions::default()));
    // Only the terminal events: the measurement should not cost the broker a delivery of
    // every `accepted`, `started` and `progress` event too.
    let mut subscriptions = Vec::new();
    for ty in ["done", "failed", "cancelled"] {
        subscriptions.push(
            client
                .subscribe(format!("jobs.events.*.{ty}"))
                .await
                .context("subscribing to job events")?,
        );
    }
    let mut events = futures::stream::select_all(subscriptions);
    client.flush().await.context("flushing the subscription")?;
    let c = completions.clone();
    let listener = tokio::spawn(async move {
        while let Some(m) = events.next().await {
            let mut parts = m.subject.as_str().split('.');
            let (_, _, id, ty) = (parts.next(), parts.next(), parts.next(), parts.next());
            let ok = match ty {
                Some("done") => true,
                Some("failed" | "cancelled") => false,
                _ => continue,
            };
            if let (Some(id), Ok(mut c)) = (id, c.lock()) {
                c.event(id.to_string(), Instant::now(), ok);
            }
        }
    });

    let counters = Arc::new(Counters::default());
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).context("histogram")?,
    ));
    let total = jobs.len() as u64;
    let progress = spawn_progress(counters.clone(), total, args.json);
    let per_request = args.batch.map_or(1, usize::from);
    let limit = Arc::new(Semaphore::new(if args.rate.is_some() {
        100_000
    } else {
        args.concurrency.max(per_request)
    }));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(jobs.len());
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
    if args.batch.is_some() {
        for (i, chunk) in jobs.chunks(per_request).enumerate() {
            if let Some(every) = interval {
                let due = started + every * (i * per_request) as u32;
                tokio::time::sleep_until(due.into()).await;
            }
            let permit = limit
                .clone()
                .acquire_many_owned(chunk.len() as u32)
                .await
                .context("bench semaphore")?;
            let (http, base, token) = (http.clone(), base.clone(), args.at.token.clone());
            let (counters, hist, completions) =
                (counters.clone(), hist.clone(), completions.clone());
            let drain = args.drain_timeout;
            let bodies = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let done = Done {
                    counters,
                    hist,
                    completions,
                    drain,
                };
                one_batch(http, base, token, bodies, done).await;
            }));
        }
    }
    let jobs = if args.batch.is_some() {
        Vec::new()
    } else {
        jobs
    };
    for (i, body) in jobs.into_iter().enumerate() {
        if let Some(every) = interval {
            let due = started + every * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .context("bench semaphore")?;
        let (http, base, token) = (http.clone(), base.clone(), args.at.token.clone());
        let (counters, hist, completions) = (counters.clone(), hist.clone(), completions.clone());
        let drain = args.drain_timeout;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            one_job(http, base, token, body, counters, hist, completions, drain).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    listener.abort();
    progress.abort();
    if !args.json {
        eprintln!();
    }

    let baseline = if args.no_baseline {
        None
    } else {
        let size = message_size(&mix);
        Some(
            baseline(
                &client,
                total.clamp(1000, 20_000) as usize,
                size,
                args.concurrency.max(1),
            )
            .await?,
        )
    };
    let h = hist.lock().map_err(|_| anyhow::anyhow!("histogram lock"))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let done = counters.done.load(Ordering::Relaxed);
    let jobs_per_s = done as f64 / elapsed;
    let summary = Summary {
        mix: args.mix.clone(),
        mode: match (args.rate, args.batch) {
            (Some(r), None) => format!("open loop, {r} jobs/s"),
            (None, None) => format!("closed loop, {} in flight", args.concurrency),
            (Some(r), Some(n)) => format!("open loop, {r} jobs/s, batches of {n}"),
            (None, Some(n)) => format!(
                "closed loop, {} in flight, batches of {n}",
                args.concurrency.max(per_request)
            ),
        },
        jobs: total,
        accepted: counters.accepted.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        done,
        failed: counters.failed.load(Ordering::Relaxed),
        lost: counters.lost.load(Ordering::Relaxed),
        seconds: elapsed,
        jobs_per_s,
        latency: Latency {
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
        },
        fraction_of_broker: baseline
            .as_ref()
            .map(|b| jobs_per_s / b.publish_consume_msgs_per_s),
        baseline,
    };
    if args.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    Ok(summary.lost == 0 && summary.failed == 0 && summary.rejected == 0)
}

#[allow(clippy::too_many_arguments)]
async fn one_job(
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    body: Value,
    counters: Arc<Counters>,
    hist: Arc<Mutex<Histogram<u64>>>,
    completions: Arc<Mutex<Completions>>,
    drain: Duration,
) {
    counters.submitted.fetch_add(1, Ordering::Relaxed);
    let t0 = Instant::now();
    // Every job must be computed: never answered from the gateway's result cache.
    let mut req = http
        .post(format!("{base}/v1/jobs"))
        .header(reqwest::header::CACHE_CONTROL, "no-cache")
        .json(&body);
    if let Some(t) = &token {
        req = req.bearer_auth(t);
    }
    let id = match req.send().await {
        Ok(resp) if resp.status().is_success() => {
            match resp
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
            {
                Some(id) => id,
                None => {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        _ => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    let rx = match completions.lock() {
        Ok(mut c) => c.wait(&id),
        Err(_) => return,
    };
    match tokio::time::timeout(drain, rx).await {
        Ok(Ok((at, ok))) => {
            let us = at.saturating_duration_since(t0).as_micros() as u64;
            if let Ok(mut h) = hist.lock() {
                let _ = h.record(us.max(1));
            }
            if ok {
                counters.done.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {
            counters.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where a job's completion is counted and timed.
struct Done {
    counters: Arc<Counters>,
    hist: Arc<Mutex<Histogram<u64>>>,
    completions: Arc<Mutex<Completions>>,
    drain: Duration,
}

impl Done {
    /// Wait for job `id`'s done/failed event; record its latency from `t0`.
    async fn wait(&self, id: &str, t0: Instant) {
        let rx = match self.completions.lock() {
            Ok(mut c) => c.wait(id),
            Err(_) => return,
        };
        match tokio::time::timeout(self.drain, rx).await {
            Ok(Ok((at, ok))) => {
                let us = at.saturating_duration_since(t0).as_micros() as u64;
                if let Ok(mut h) = self.hist.lock() {
                    let _ = h.record(us.max(1));
                }
                if ok {
                    self.counters.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Submit `bodies` as one `POST /v1/jobs/batch` and wait for each accepted job to end.
async fn one_batch(
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    bodies: Vec<Value>,
    done: Done,
) {
    let n = bodies.len() as u64;
    done.counters.submitted.fetch_add(n, Ordering::Relaxed);
    let t0 = Instant::now();
    let mut req = http
        .post(format!("{base}/v1/jobs/batch"))
        .header(reqwest::header::CACHE_CONTROL, "no-cache")
        .json(&bodies);
    if let Some(t) = &token {
        req = req.bearer_auth(t);
    }
    let answer = match req.send().await {
        Ok(resp) if resp.status().is_success() => resp.json::<Value>().await.ok(),
        _ => None,
    };
    let ids: Vec<String> = answer
        .as_ref()
        .and_then(|a| a["items"].as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let accepted = ids.len() as u64;
    done.counters
        .accepted
        .fetch_add(accepted, Ordering::Relaxed);
    done.counters
        .rejected
        .fetch_add(n.saturating_sub(accepted), Ordering::Relaxed);
    futures::future::join_all(ids.iter().map(|id| done.wait(id, t0))).await;
}

fn spawn_progress(counters: Arc<Counters>, total: u64, quiet: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            return;
        }
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let done =
                counters.done.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed);
            let width = 30usize;
            let filled = ((done as f64 / total as f64) * width as f64) as usize;
            eprint!(
                "\r[{}{}] {done}/{total} done, {} submitted, {:.0} jobs/s   ",
                "#".repeat(filled.min(width)),
                "-".repeat(width - filled.min(width)),
                counters.submitted.load(Ordering::Relaxed),
                done as f64 / start.elapsed().as_secs_f64().max(0.001)
            );
        }
    })
}

/// Size of a job message like the mix's most common entry.
fn message_size(mix: &[MixEntry]) -> usize {
    let Some(e) = mix.iter().max_by_key(|e| e.count) else {
        return 64;
    };
    let n = e.input.as_u64().unwrap_or(1000);
    let spec = match e.kind {
        JobKind::Factorial => JobSpec::Factorial { n },
        JobKind::Fibonacci => JobSpec::Fibonacci { n, modulus: None },
        JobKind::Sum => JobSpec::Sum {
            terms: vec!["1".into(); 2],
        },
    };
    let msg = JobMessage::new(
        jetmill_proto::names::DEFAULT_TENANT,
        spec,
        jetmill_proto::now_ms(),
    );
    msg.encode().map(|b| b.len()).unwrap_or(64)
}

/// Publish `n` messages (acked, `window` in flight) then pull-consume and ack them.
async fn baseline(
    client: &async_nats::Client,
    n: usize,
    size: usize,
    window: usize,
) -> anyhow::Result<Baseline> {
    let js = jetstream::new(client.clone());
    let name = format!("JETMILL_BENCH_{}", std::process::id());
    let subject = format!("jetmill.bench.{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .context("creating the baseline stream")?;
    let payload = bytes::Bytes::from(vec![7u8; size]);

    let t = Instant::now();
    type Ack = futures::future::BoxFuture<
        'static,
        Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
    >;
    let mut acks: futures::stream::FuturesUnordered<Ack> = futures::stream::FuturesUnordered::new();
    for _ in 0..n {
        if acks.len() >= window {
            if let Some(r) = acks.next().await {
                r.context("baseline publish ack")?;
            }
        }
        let ack = js
            .publish(subject.clone(), payload.clone())
            .await
            .context("baseline publish")?;
        acks.push(Box::pin(async move { ack.await }));
    }
    while let Some(r) = acks.next().await {
        r.context("baseline publish ack")?;
    }
    let publish_s = t.elapsed().as_secs_f64();

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("creating the baseline consumer")?;
    // Explicit batches, each asked for again when it ends: the continuous pull stream
    // of async-nats stalled for 30 s about once in twenty runs (and with a window of 1),
    // leaving the bench without a baseline. A lost batch here only expires.
    let t = Instant::now();
    let (mut got, mut last_progress) = (0, Instant::now());
    while got < n {
        if last_progress.elapsed() > Duration::from_secs(30) {
            bail!("baseline consume stalled after {got} of {n}");
        }
        let mut batch = consumer
            .batch()
            .max_messages(window.min(n - got).max(1))
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .context("baseline consume")?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("baseline consume: {e}"))?;
            m.ack()
                .await
                .map_err(|e| anyhow::anyhow!("baseline ack: {e}"))?;
            got += 1;
            last_progress = Instant::now();
        }
    }
    let consume_s = t.elapsed().as_secs_f64();
    let _ = js.delete_stream(&name).await;
    Ok(Baseline {
        messages: n,
        message_bytes: size,
        publish_msgs_per_s: n as f64 / publish_s,
        consume_msgs_per_s: n as f64 / consume_s,
        publish_consume_msgs_per_s: n as f64 / (publish_s + consume_s),
    })
}

fn print_summary(s: &Summary) {
    println!("jetmill bench: {} ({})", s.mix, s.mode);
    println!(
        "  jobs       {} sent, {} accepted, {} rejected, {} done, {} failed, {} LOST",
        s.jobs, s.accepted, s.rejected, s.done, s.failed, s.lost
    );
    println!(
        "  throughput {:.0} jobs/s over {:.2} s",
        s.jobs_per_s, s.seconds
    );
    println!(
        "  latency    p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (submit to done)",
        s.latency.p50_ms, s.latency.p90_ms, s.latency.p99_ms, s.latency.max_ms
    );
    if let (Some(b), Some(f)) = (&s.baseline, s.fraction_of_broker) {
        println!(
            "  broker     {} msgs of {} B: publish {:.0}/s, consume {:.0}/s, both {:.0}/s",
            b.messages,
            b.message_bytes,
            b.publish_msgs_per_s,
            b.consume_msgs_per_s,
            b.publish_consume_msgs_per_s
        );
        println!(
            "  jetmill    {:.1}% of the broker's publish+consume rate",
            f * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_interleave() {
        let mix = parse_mix("4:factorial:1000, 2:sum:[1,2]").expect("mix");
        assert_eq!(mix.len(), 2);
        assert_eq!(mix[1].input, json!([1, 2]));
        let jobs = schedule(&mix);
        assert_eq!(jobs.len(), 6);
        assert_eq!(jobs.iter().filter(|j| j["kind"] == "sum").count(), 2);
        assert_ne!(jobs[0]["kind"], jobs[1]["kind"], "interleaved: {jobs:?}");
        assert!(parse_mix("x:factorial:1").is_err());
        assert!(parse_mix("3:prime:1").is_err());
        assert!(parse_mix("0:factorial:1").is_err());
    }
}
