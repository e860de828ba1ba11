//! What each per-job write costs the broker: the small-job protocol, variant by variant,
//! in one process and one run.
//!
//! `cargo bench -p jetmill-natsx --bench protocol` provisions jetmill's real streams,
//! consumer and buckets on a fresh nats-server per run (via `jetmill-testkit`) and runs
//! the same closed loop (64 jobs in flight) through each variant of the protocol, with
//! no HTTP and no kernel: a "gateway" task publishes the job message and writes what
//! the variant writes at submit, and a "worker" pulls in batches and does what the
//! variant does per job, ending with the ack. It prints jobs/s and the CPU per job of
//! this process and of nats-server (from `/proc`), and each variant's ratio to the
//! first. Variants run in turn, `JETMILL_BENCH_ROUNDS` rounds (default 2), so drift
//! shows as spread, not as a difference.
//!
//! - `before`: the protocol up to this change: job, `accepted`, record create; record
//!   read, `started`, record CAS to `done`, `done`, ack; plus the usage consumer's
//!   delivery and ack of `accepted` and `done` (without its per-batch counter write).
//! - `now`: the same without the usage consumer (usage comes from the job index).
//! - `kv-events`: no EVENTS writes at all (lifecycle events read from the record's
//!   change stream instead): job, record create; read, CAS, ack.
//! - `floor`: job, one record put, ack: the least a job with a stored result can cost.
//!
//! `JETMILL_BENCH_JOBS` (default 10,000) jobs per run.

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use jetmill_natsx::{provision, QueueSettings};
use jetmill_proto::{
    names, now_ms, EventType, JobEvent, JobId, JobMessage, JobRecord, JobSpec, JobStatus,
    ResultInfo, ResultLocation,
};
use jetmill_testkit::NatsServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const IN_FLIGHT: usize = 64;
const TENANT: &str = "bench";
/// factorial(1000) has 2,568 digits: the inline result of the bench's small job.
const RESULT_DIGITS: usize = 2568;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Before,
    Now,
    KvEvents,
    Floor,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Before,
        Variant::Now,
        Variant::KvEvents,
        Variant::Floor,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Before => "before",
            Variant::Now => "now",
            Variant::KvEvents => "kv-events",
            Variant::Floor => "floor",
        }
    }

    fn events(self) -> bool {
        matches!(self, Variant::Before | Variant::Now)
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`).
fn cpu_seconds(pid: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0)
}

/// The pid of the nats-server whose command line names `store` (its store directory).
fn server_pid(store: &std::path::Path) -> Option<String> {
    let needle = store.to_string_lossy().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().to_string();
        pid.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmd)
            .contains(&needle)
            .then_some(pid)
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Outcome {
    jobs_per_s: f64,
    client_ms: f64,
    server_ms: f64,
}

async fn run() {
    let jobs = env_usize("JETMILL_BENCH_JOBS", 10_000);
    let rounds = env_usize("JETMILL_BENCH_ROUNDS", 2);
    println!(
        "protocol: {jobs} jobs per run, {IN_FLIGHT} in flight, {rounds} rounds, load {}",
        load()
    );
    let mut results: Vec<(Variant, Outcome)> = Vec::new();
    for round in 1..=rounds {
        for v in Variant::ALL {
            let o = one(v, jobs).await;
            println!(
                "round {round} {:<10} {:>8.0} jobs/s  CPU/job: client {:.3} ms, nats-server {:.3} ms, total {:.3} ms",
                v.name(),
                o.jobs_per_s,
                o.client_ms,
                o.server_ms,
                o.client_ms + o.server_ms
            );
            results.push((v, o));
        }
    }
    println!(
        "\n| variant | jobs/s (runs) | CPU ms/job client | nats-server | total | total vs before |"
    );
    println!("|---|---|---|---|---|---|");
    let mean = |v: Variant, f: &dyn Fn(&Outcome) -> f64| {
        let xs: Vec<f64> = results
            .iter()
            .filter(|(x, _)| *x == v)
            .map(|(_, o)| f(o))
            .collect();
        xs.iter().sum::<f64>() / xs.len().max(1) as f64
    };
    let base = mean(Variant::Before, &|o| o.client_ms + o.server_ms);
    for v in Variant::ALL {
        let rates: Vec<String> = results
            .iter()
            .filter(|(x, _)| *x == v)
            .map(|(_, o)| format!("{:.0}", o.jobs_per_s))
            .collect();
        let total = mean(v, &|o| o.client_ms + o.server_ms);
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.2}x |",
            v.name(),
            rates.join(", "),
            mean(v, &|o| o.client_ms),
            mean(v, &|o| o.server_ms),
            total,
            total / base
        );
    }
    println!("load at end {}", load());
}

fn message(id: JobId) -> JobMessage {
    JobMessage {
        id,
        ..JobMessage::new(TENANT, JobSpec::Factorial { n: 1000 }, now_ms())
    }
}

fn event(id: JobId, event: EventType) -> (String, bytes::Bytes) {
    let e = JobEvent {
        job_id: id,
        tenant: TENANT.into(),
        event,
        at_ms: now_ms(),
        attempt: 1,
        worker: Some("bench".into()),
        progress: None,
        error: None,
        started_at_ms: None,
    };
    let body = serde_json::to_vec(&e).unwrap_or_default();
    (names::event_subject(&id, event), body.into())
}

async fn publish_event(js: &jetstream::Context, id: JobId, ty: EventType) {
    let (subject, body) = event(id, ty);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{id}.{}.1", ty.as_str()).as_str());
    if let Ok(ack) = js.publish_with_headers(subject, headers, body).await {
        let _ = ack.await;
    }
}

fn done_record(msg: &JobMessage) -> bytes::Bytes {
    let mut r = JobRecord::pending(msg);
    r.status = JobStatus::Done;
    r.progress = 1.0;
    let result = "7".repeat(RESULT_DIGITS);
    r.result_info = Some(ResultInfo {
        digits: RESULT_DIGITS as u64,
        bytes: RESULT_DIGITS as u64,
        sha256: "0".repeat(64),
        head: result[..50].to_string(),
        tail: result[..50].to_string(),
        location: ResultLocation::Inline,
    });
    r.result = Some(result);
    serde_json::to_vec(&r).unwrap_or_default().into()
}

async fn one(v: Variant, jobs: usize) -> Outcome {
    let server = NatsServer::start();
    let server_pid = server_pid(server.store_dir()).unwrap_or_default();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let jet = provision(client, QueueSettings::default())
        .await
        .expect("provision");
    // Every job of the bench is `normal` priority.
    let (consumer, _) = jet
        .ensure_workers_consumer(jetmill_proto::Priority::Normal)
        .await
        .expect("workers consumer");
    let kv = jet.records.kv().clone();
    let usage = if v == Variant::Before {
        let c = jet
            .events
            .create_consumer(pull::Config {
                durable_name: Some("usage".into()),
                filter_subjects: vec!["jobs.events.*.accepted".into(), "jobs.events.*.done".into()],
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .expect("usage consumer");
        let mut messages = c.messages().await.expect("usage messages");
        let counted = Arc::new(AtomicUsize::new(0));
        let n = counted.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(m)) = messages.next().await {
                let _ = m.ack().await;
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        Some((task, counted))
    } else {
        None
    };

    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let (cpu0, srv0, t0) = (
        cpu_seconds("self"),
        cpu_seconds(&server_pid),
        Instant::now(),
    );

    // The worker: batched pulls, each job handled on its own task, ack last.
    let (js, wkv, wslots) = (jet.js.clone(), kv.clone(), slots.clone());
    let worker = tokio::spawn(async move {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(256)
            .messages()
            .await
            .expect("pull");
        let mut handled = 0usize;
        let mut tasks = Vec::new();
        while handled < jobs {
            let Some(Ok(m)) = messages.next().await else {
                continue;
            };
            handled += 1;
            let (js, kv, slots) = (js.clone(), wkv.clone(), wslots.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(msg) = JobMessage::decode(&m.payload) else {
                    return;
                };
                let key = format!("{TENANT}.{}", msg.id);
                let done = done_record(&msg);
                if v == Variant::Floor {
                    let _ = kv.put(&key, done).await;
                } else {
                    let revision = match kv.entry(&key).await {
                        Ok(Some(e)) => Some(e.revision),
                        _ => None,
                    };
                    if v.events() {
                        publish_event(&js, msg.id, EventType::Started).await;
                    }
                    // A worker that overtakes the submit's create writes the record itself.
                    let _ = match revision {
                        Some(r) => kv.update(&key, done, r).await.map(|_| ()).map_err(|_| ()),
                        None => kv.create(&key, done).await.map(|_| ()).map_err(|_| ()),
                    };
                    if v.events() {
                        publish_event(&js, msg.id, EventType::Done).await;
                    }
                }
                let _ = m.ack_with(AckKind::Ack).await;
                slots.add_permits(1);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });

    // The gateway: one submit per free slot.
    let mut submits = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let Ok(permit) = slots.acquire().await else {
            break;
        };
        permit.forget();
        let (js, kv) = (jet.js.clone(), kv.clone());
        submits.push(tokio::spawn(async move {
            let msg = message(JobId::new());
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", msg.id.to_string().as_str());
            let payload = msg.encode().unwrap_or_default();
            let subject = names::job_subject(msg.priority, msg.spec.kind());
            if let Ok(ack) = js
                .publish_with_headers(subject, headers, payload.into())
                .await
            {
                let _ = ack.await;
            }
            if v == Variant::Floor {
                return;
            }
            if v.events() {
                publish_event(&js, msg.id, EventType::Accepted).await;
            }
            let record = serde_json::to_vec(&JobRecord::pending(&msg)).unwrap_or_default();
            let _ = kv
                .create(format!("{TENANT}.{}", msg.id), record.into())
                .await;
        }));
    }
    for s in submits {
        let _ = s.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(120), worker).await;
    let secs = t0.elapsed().as_secs_f64();
    // The usage consumer's work is part of the cost: wait for it to catch up.
    if let Some((_, counted)) = &usage {
        let deadline = Instant::now() + Duration::from_secs(30);
        while counted.load(Ordering::Relaxed) < 2 * jobs && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (cpu1, srv1) = (cpu_seconds("self"), cpu_seconds(&server_pid));
    if let Some((task, _)) = usage {
        task.abort();
    }
    Outcome {
        jobs_per_s: jobs as f64 / secs,
        client_ms: 1000.0 * (cpu1 - cpu0) / jobs as f64,
        server_ms: 1000.0 * (srv1 - srv0) / jobs as f64,
    }
}
