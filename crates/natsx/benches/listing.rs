//! Listing at 100k jobs: the live index against the key scan, in the same run.
//!
//! `cargo bench -p jetmill-natsx --bench listing` starts a real nats-server (through
//! `jetmill-testkit`: `JETMILL_NATS_SERVER`, else `.tools/nats`, see
//! `scripts/install-nats.sh`), stores 100,000 `done` job records for one tenant with
//! 10 `running` ones spread among them, plus 1,000 records for each of two other
//! tenants, then times three pages with both paths: the first page (limit 50), a page
//! 90,000 jobs deep (via its cursor) and `status=running` (the rare status). Each index
//! page includes its consistency barrier (a stream-info round trip). It also reports
//! the index's bootstrap time over these records and its memory per job (RSS growth
//! while indexing 1,000,000 synthetic jobs, measured first, before anything else).
//!
//! `JETMILL_BENCH_JOBS` changes the 100,000; `JETMILL_BENCH_REPS` the index repetitions
//! (default 200; the scan runs 5 times, 2 for the rare status, which reads every record).

use futures::StreamExt;
use jetmill_natsx::index::Table;
use jetmill_natsx::{provision, IndexOptions, JobIndex, ListQuery, Page, Phase, QueueSettings};
use jetmill_proto::{
    JobId, JobKind, JobMessage, JobRecord, JobSpec, JobStatus, ResultInfo, ResultLocation,
};
use jetmill_testkit::NatsServer;
use std::future::Future;
use std::time::Instant;

const TENANT: &str = "bench";
const OTHER_TENANTS: [&str; 2] = ["other-a", "other-b"];
const OTHER_JOBS: usize = 1_000;
const RARE: usize = 10;

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

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Bytes of index per job: RSS growth while indexing `n` synthetic jobs.
fn index_bytes_per_job(n: usize) -> f64 {
    let before = rss();
    let mut table = Table::default();
    for i in 0..n {
        let tenant = if i % 50 == 0 {
            OTHER_TENANTS[i % 2]
        } else {
            TENANT
        };
        table.insert(tenant, JobId::new(), JobStatus::Done, JobKind::Factorial);
    }
    let after = rss();
    assert_eq!(table.len(), n);
    drop(table);
    after.saturating_sub(before) as f64 / n as f64
}

/// A finished factorial record as a worker writes it (inline result, result info).
fn record(tenant: &str, i: usize, status: JobStatus) -> JobRecord {
    let n = (i % 20 + 1) as u64;
    let mut r = JobRecord::pending(&JobMessage::new(
        tenant,
        JobSpec::Factorial { n },
        1_763_900_000_000 + i as i64,
    ));
    r.status = status;
    r.attempts = 1;
    r.worker = Some("worker-1".into());
    if status == JobStatus::Done {
        let text: String = (1..=n).product::<u64>().to_string();
        r.progress = 1.0;
        r.result_info = Some(ResultInfo {
            digits: text.len() as u64,
            bytes: text.len() as u64,
            sha256: "0".repeat(64),
            head: text.clone(),
            tail: text.clone(),
            location: ResultLocation::Inline,
        });
        r.result = Some(text);
    }
    r
}

/// Publish every record to the bucket's subjects, many acks in flight.
async fn store(js: &async_nats::jetstream::Context, records: &[JobRecord]) {
    futures::stream::iter(records)
        .map(|r| {
            let subject = format!("$KV.jobs.{}.{}", r.tenant, r.id);
            let body = r.to_json();
            async move {
                js.publish(subject, body.into())
                    .await
                    .expect("publish")
                    .await
                    .expect("publish ack")
            }
        })
        .buffer_unordered(512)
        .for_each(|_| async {})
        .await;
}

/// Median and 99th percentile of `reps` runs of `f`, in seconds; returns the last result.
async fn time<F, Fut>(reps: usize, mut f: F) -> (f64, f64, Page)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Page>,
{
    let mut samples = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let page = f().await;
        samples.push(t.elapsed().as_secs_f64());
        last = Some(page);
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let p99 = samples[((samples.len() * 99) / 100).min(samples.len() - 1)];
    (median, p99, last.expect("at least one run"))
}

fn ms(s: f64) -> String {
    if s >= 0.1 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

async fn run() {
    let jobs = env_usize("JETMILL_BENCH_JOBS", 100_000);
    let reps = env_usize("JETMILL_BENCH_REPS", 200);
    println!("load average at start: {}", load());

    let probe = 1_000_000;
    let per_job = index_bytes_per_job(probe);
    println!("index memory: {per_job:.0} bytes/job (RSS growth indexing {probe} synthetic jobs)");

    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let jet = provision(client, QueueSettings::default())
        .await
        .expect("provision");

    let t = Instant::now();
    let mut ours: Vec<JobRecord> = (0..jobs)
        .map(|i| {
            let rare = i % (jobs / RARE).max(1) == jobs / RARE / 2;
            let status = if rare {
                JobStatus::Running
            } else {
                JobStatus::Done
            };
            record(TENANT, i, status)
        })
        .collect();
    let others: Vec<JobRecord> = OTHER_TENANTS
        .iter()
        .flat_map(|t| (0..OTHER_JOBS).map(move |i| record(t, i, JobStatus::Pending)))
        .collect();
    store(&jet.js, &ours).await;
    store(&jet.js, &others).await;
    let stored = ours.len() + others.len();
    println!(
        "stored {stored} records ({jobs} for `{TENANT}`) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    ours.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
    let rare_ids: Vec<JobId> = ours
        .iter()
        .filter(|r| r.status == JobStatus::Running)
        .map(|r| r.id)
        .collect();

    let t = Instant::now();
    let index = JobIndex::start(jet.records.clone(), IndexOptions::default());
    index
        .progress()
        .wait_for(|p| p.phase == Phase::Live)
        .await
        .expect("index task runs");
    let bootstrap = t.elapsed().as_secs_f64();
    let stats = index.stats();
    assert_eq!(stats.jobs, stored, "the index holds every record");
    println!("index bootstrap: {stored} records in {bootstrap:.2} s");

    let deep = jobs * 9 / 10;
    let cases = [
        (
            "first page, limit 50".to_string(),
            ListQuery {
                tenant: Some(TENANT.into()),
                limit: 50,
                ..Default::default()
            },
            5,
        ),
        (
            "page 90% deep (cursor), limit 50".to_string(),
            ListQuery {
                tenant: Some(TENANT.into()),
                before: Some(ours[deep - 1].id),
                limit: 50,
                ..Default::default()
            },
            5,
        ),
        (
            format!("status=running ({RARE} among {jobs} done), limit 50"),
            ListQuery {
                tenant: Some(TENANT.into()),
                status: Some(JobStatus::Running),
                limit: 50,
                ..Default::default()
            },
            2,
        ),
    ];

    println!();
    println!("| case | scan median | index median | index p99 | speedup (median) |");
    println!("|---|---|---|---|---|");
    for (name, q, scan_reps) in cases {
        let (records, index, query) = (&jet.records, &index, &q);
        let (scan, _, scan_page) = time(scan_reps, || async move {
            records.page(query).await.expect("scan page")
        })
        .await;
        let (idx, idx_p99, idx_page) = time(reps, || async move {
            index
                .page(query)
                .await
                .expect("index page")
                .expect("index ready")
        })
        .await;
        let ids = |p: &Page| p.jobs.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&idx_page), ids(&scan_page), "{name}: same jobs");
        if q.status.is_some() {
            assert_eq!(ids(&idx_page), rare_ids, "{name}: the rare jobs");
        } else {
            let start = q.before.map_or(0, |_| deep);
            let want: Vec<JobId> = ours[start..start + 50].iter().map(|r| r.id).collect();
            assert_eq!(ids(&idx_page), want, "{name}: the right 50");
        }
        println!(
            "| {name} | {} | {} | {} | **{:.0}x** |",
            ms(scan),
            ms(idx),
            ms(idx_p99),
            scan / idx
        );
    }
    println!();
    println!(
        "index: {} jobs, {} tenants, ~{:.1} MB at {per_job:.0} B/job",
        stats.jobs,
        stats.tenants,
        per_job * stats.jobs as f64 / 1e6
    );
    println!("load average at end: {}", load());
}
