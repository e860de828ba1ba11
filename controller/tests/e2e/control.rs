//! The controller: `jetmill freeze|resume|concurrency|log-level|kind|workers|stats|jobs`
//! run as a user runs them (the real binary), against real worker processes.

use crate::helpers::{TestApp, WorkerProcess};
use serde_json::{json, Value};
use std::process::Output;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Run `jetmill <args>` against the test's NATS server.
async fn jetmill(app: &TestApp, args: &[&str]) -> std::process::Output {
    app.jetmill(args).await
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run a config command with `--json`; returns (exit code, outcome).
async fn apply(app: &TestApp, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = jetmill(app, &all).await;
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("jetmill {args:?} printed no JSON ({e}):\n{}", text(&out)));
    (out.status.code().unwrap_or(-1), v)
}

async fn workers_json(app: &TestApp) -> Vec<Value> {
    let out = jetmill(app, &["workers", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("workers JSON")
}

/// Wait until `jetmill workers` shows exactly `ids` (sorted).
async fn wait_workers(app: &TestApp, ids: &[&str], timeout: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ws = workers_json(app).await;
        let seen: Vec<&str> = ws.iter().filter_map(|w| w["id"].as_str()).collect();
        if seen == ids {
            return ws;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "workers {ids:?} not listed within {timeout:?}; listed: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_workers(app: &mut TestApp, ids: &[&str], extra: &[&str]) {
    for id in ids {
        app.start_worker_process(id, extra);
    }
    let started: &[WorkerProcess] = &app.workers[app.workers.len() - ids.len()..];
    for w in started {
        w.wait_started().await;
    }
}

/// A job that stays running for `ms` (injected delay before a tiny kernel).
fn slow_job(ms: u64) -> Value {
    json!({"kind": "factorial", "input": 10, "chaos": {"delay_ms": [ms, ms]}})
}

fn ts(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().expect("timestamp"), &Rfc3339).expect("RFC 3339 timestamp")
}

/// The most jobs that were running at the same moment, from their records.
fn max_overlap(records: &[Value]) -> usize {
    let mut edges: Vec<(OffsetDateTime, i32)> = Vec::new();
    for r in records {
        edges.push((ts(&r["started_at"]), 1));
        edges.push((ts(&r["finished_at"]), -1));
    }
    // Ends sort before starts at the same instant: [start, finish) intervals.
    edges.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

async fn run_batch(app: &TestApp, n: usize, ms: u64) -> Vec<Value> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(app.submit_ok(slow_job(ms)).await);
    }
    let mut records = Vec::new();
    for id in &ids {
        let r = app.wait_finished(id, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "done", "{r}");
        records.push(r);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_stops_new_starts_lets_running_finish_and_holds_for_late_workers() {
    let mut app = TestApp::gateway_only().await;
    start_workers(&mut app, &["c1", "c2"], &["--concurrency", "2"]).await;
    wait_workers(&app, &["c1", "c2"], Duration::from_secs(15)).await;

    let running: Vec<String> = vec![
        app.submit_ok(slow_job(1500)).await,
        app.submit_ok(slow_job(1500)).await,
    ];
    for id in &running {
        app.wait_record(id, Duration::from_secs(20), "running", |r| {
            r["status"] == "running"
        })
        .await;
    }

    let (code, outcome) = apply(&app, &["freeze"]).await;
    assert_eq!(code, 0, "freeze: {outcome}");
    assert_eq!(outcome["all_applied"], true, "{outcome}");
    let ws = outcome["workers"].as_array().expect("workers");
    assert_eq!(ws.len(), 2, "{outcome}");
    assert!(
        ws.iter()
            .all(|w| w["applied"] == true && w["frozen"] == true),
        "{outcome}"
    );

    let queued: Vec<String> = vec![
        app.submit_ok(json!({"kind": "factorial", "input": 20}))
            .await,
        app.submit_ok(json!({"kind": "sum", "input": [1, 2]})).await,
        app.submit_ok(json!({"kind": "fibonacci", "input": 30}))
            .await,
    ];
    // In-flight jobs finish while frozen.
    for id in &running {
        let r = app.wait_finished(id, Duration::from_secs(30)).await;
        assert_eq!(r["status"], "done", "{r}");
    }
    // A worker started after the freeze starts frozen.
    start_workers(&mut app, &["c3"], &["--concurrency", "2"]).await;
    let ws = wait_workers(&app, &["c1", "c2", "c3"], Duration::from_secs(15)).await;
    assert!(
        ws.iter().all(|w| w["frozen"] == true),
        "every worker frozen: {ws:?}"
    );
    // Nobody starts a queued job: watch for longer than a pull request lives (2 s).
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        for id in &queued {
            let r = app.get_job(id).await;
            assert!(
                r["status"] == "pending" && r["attempts"] == 0,
                "a frozen system started {r}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (code, outcome) = apply(&app, &["resume"]).await;
    assert_eq!(code, 0, "resume: {outcome}");
    assert_eq!(
        outcome["workers"].as_array().map(Vec::len),
        Some(3),
        "{outcome}"
    );
    for id in &queued {
        let r = app.wait_finished(id, Duration::from_secs(30)).await;
        assert_eq!(r["status"], "done", "{r}");
    }
    let ws = workers_json(&app).await;
    assert!(ws.iter().all(|w| w["frozen"] == false), "{ws:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_changes_how_many_jobs_run_at_once() {
    let mut app = TestApp::gateway_only().await;
    start_workers(&mut app, &["k1"], &["--concurrency", "1"]).await;
    wait_workers(&app, &["k1"], Duration::from_secs(15)).await;

    let a = run_batch(&app, 3, 500).await;
    assert_eq!(max_overlap(&a), 1, "concurrency 1 (flag): {a:?}");

    let (code, outcome) = apply(&app, &["concurrency", "4", "--worker", "k1"]).await;
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(outcome["workers"][0]["concurrency"], 4, "{outcome}");
    let b = run_batch(&app, 8, 1500).await;
    assert_eq!(max_overlap(&b), 4, "concurrency 4: {b:?}");

    let (code, outcome) = apply(&app, &["concurrency", "1", "--worker", "k1"]).await;
    assert_eq!(code, 0, "{outcome}");
    let c = run_batch(&app, 3, 500).await;
    assert_eq!(max_overlap(&c), 1, "back to 1: {c:?}");

    let shown = jetmill(&app, &["config", "show", "--json"]).await;
    assert!(shown.status.success(), "{}", text(&shown));
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("config JSON");
    assert_eq!(shown["workers"]["k1"]["concurrency"], 1, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_changes_a_running_workers_output() {
    let mut app = TestApp::gateway_only().await;
    start_workers(&mut app, &["l1"], &[]).await;
    wait_workers(&app, &["l1"], Duration::from_secs(15)).await;
    let log = app.workers[0].log.clone();
    let debug_lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DEBUG") && l.contains("computing"))
            .count()
    };

    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 5}))
        .await;
    app.wait_finished(&id, Duration::from_secs(20)).await;
    assert_eq!(debug_lines(), 0, "info level logs no debug lines");

    let (code, outcome) = apply(&app, &["log-level", "info,jetmill_worker=debug"]).await;
    assert_eq!(code, 0, "{outcome}");
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 6}))
        .await;
    app.wait_finished(&id, Duration::from_secs(20)).await;
    assert!(
        jetmill_testkit::wait_until(Duration::from_secs(5), || async { debug_lines() == 1 }).await,
        "debug line after the change; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let (code, _) = apply(&app, &["log-level", "warn"]).await;
    assert_eq!(code, 0);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 7}))
        .await;
    app.wait_finished(&id, Duration::from_secs(20)).await;
    assert_eq!(debug_lines(), 1, "no new debug lines at warn");

    // A bad filter is refused before anything is written.
    let out = jetmill(&app, &["log-level", "info,=["]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid log filter"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_kind_waits_in_the_queue_while_others_run() {
    let mut app = TestApp::gateway_only().await;
    start_workers(&mut app, &["d1"], &["--concurrency", "2"]).await;
    wait_workers(&app, &["d1"], Duration::from_secs(15)).await;

    assert_eq!(apply(&app, &["freeze"]).await.0, 0);
    // Fibonacci first: a worker taking jobs in order would run these first.
    let fibs = vec![
        app.submit_ok(json!({"kind": "fibonacci", "input": 90}))
            .await,
        app.submit_ok(json!({"kind": "fibonacci", "input": 91}))
            .await,
    ];
    let facts = vec![
        app.submit_ok(json!({"kind": "factorial", "input": 30}))
            .await,
        app.submit_ok(json!({"kind": "factorial", "input": 31}))
            .await,
    ];
    let (code, outcome) = apply(&app, &["kind", "disable", "fibonacci"]).await;
    assert_eq!(code, 0, "{outcome}");
    assert_eq!(
        outcome["config"]["disabled_kinds"],
        json!(["fibonacci"]),
        "{outcome}"
    );
    assert_eq!(apply(&app, &["resume"]).await.0, 0);

    for id in &facts {
        assert_eq!(
            app.wait_finished(id, Duration::from_secs(30)).await["status"],
            "done"
        );
    }
    for id in &fibs {
        let r = app.get_job(id).await;
        assert!(
            r["status"] == "pending" && r["attempts"] == 0,
            "disabled kind ran: {r}"
        );
    }
    let stats = jetmill(&app, &["stats", "--json"]).await;
    assert!(stats.status.success(), "{}", text(&stats));
    let stats: Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    assert_eq!(stats["parked"]["normal.fibonacci"], 2, "{stats}");
    assert_eq!(stats["queued"]["normal.fibonacci"], Value::Null, "{stats}");
    assert_eq!(stats["finished_last_minute"], 2, "{stats}");
    assert_eq!(stats["live_workers"], 1, "{stats}");

    assert_eq!(apply(&app, &["kind", "enable", "fibonacci"]).await.0, 0);
    for id in &fibs {
        assert_eq!(
            app.wait_finished(id, Duration::from_secs(30)).await["status"],
            "done"
        );
    }
    // Kinds are global: a per-worker kind change is refused with the fix.
    let out = jetmill(&app, &["kind", "disable", "sum", "--worker", "d1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("drop --worker"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_worker_is_reported_and_a_killed_one_disappears() {
    let mut app = TestApp::gateway_only().await;
    start_workers(&mut app, &["s1", "s2"], &[]).await;
    wait_workers(&app, &["s1", "s2"], Duration::from_secs(15)).await;

    app.workers[1].signal("STOP");
    let (code, outcome) = apply(&app, &["concurrency", "3", "--timeout", "1500ms"]).await;
    assert_eq!(code, 1, "a worker did not apply: exit 1; {outcome}");
    assert_eq!(outcome["all_applied"], false, "{outcome}");
    let by_id = |id: &str| {
        outcome["workers"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["id"] == id).cloned())
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_id("s1")["applied"], true, "{outcome}");
    assert_eq!(by_id("s2")["applied"], false, "{outcome}");
    // The human table says the same.
    let out = jetmill(&app, &["resume", "--timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("NOT applied") && stdout.contains("s2"),
        "{}",
        text(&out)
    );

    // Once it runs again it catches up with the latest revision.
    app.workers[1].signal("CONT");
    let (code, outcome) = apply(&app, &["concurrency", "2"]).await;
    assert_eq!(code, 0, "{outcome}");

    // A killed worker's report expires (10 s max age) and it leaves the list.
    app.workers[0].signal("KILL");
    wait_workers(&app, &["s2"], Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_commands_submit_watch_list_get_and_cancel() {
    let app = TestApp::spawn().await;
    let out = jetmill(&app, &["jobs", "submit", "factorial", "25", "--watch"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("15511210043330985984000000"),
        "25! in the output: {}",
        text(&out)
    );

    let out = jetmill(&app, &["jobs", "submit", "sum", "[1, 2, \"3\"]", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let id = serde_json::from_slice::<Value>(&out.stdout).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.wait_finished(&id, Duration::from_secs(20)).await;
    let out = jetmill(&app, &["jobs", "get", &id, "--json"]).await;
    let rec: Value = serde_json::from_slice(&out.stdout).expect("record");
    assert_eq!(rec["result"], "6", "{rec}");
    let out = jetmill(&app, &["jobs", "list"]).await;
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&id),
        "{}",
        text(&out)
    );

    // Cancelling a finished job: the API's 409 becomes a clear error, exit 2.
    let out = jetmill(&app, &["jobs", "cancel", &id]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409"),
        "{}",
        text(&out)
    );
    // Bad input names the field.
    let out = jetmill(&app, &["jobs", "submit", "factorial", "-5"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("field `input`"),
        "{}",
        text(&out)
    );
    // Watching a job that ends other than done exits 1.
    let id = app.submit_ok(slow_job(20_000)).await;
    app.wait_record(&id, Duration::from_secs(20), "running", |r| {
        r["status"] == "running"
    })
    .await;
    let (status, _) = app.cancel(&id).await;
    assert_eq!(status, 200);
    let out = jetmill(&app, &["jobs", "watch", &id]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cancelled"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_nats_is_a_clear_error() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
        .args(["workers", "--server", "nats://127.0.0.1:1"])
        .env_remove("JETMILL_NATS_URL")
        .output()
        .await
        .expect("run jetmill");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach NATS at nats://127.0.0.1:1") && err.contains("--server"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_a_mix_loses_nothing_and_compares_with_the_broker() {
    let app = TestApp::spawn().await;
    let out = jetmill(
        &app,
        &[
            "bench",
            "--mix",
            "150:factorial:100,50:sum:[1,2]",
            "--concurrency",
            "16",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        out.stderr.is_empty(),
        "operator commands log nothing by default: {}",
        text(&out)
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    assert_eq!(s["jobs"], 200, "{s}");
    assert_eq!(s["done"], 200, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
    assert!(s["jobs_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{s}");
    let lat = &s["latency"];
    assert!(
        lat["p50_ms"].as_f64() <= lat["p99_ms"].as_f64()
            && lat["p99_ms"].as_f64() <= lat["max_ms"].as_f64(),
        "{s}"
    );
    assert_eq!(s["baseline"]["messages"], 1000, "{s}");
    assert!(s["fraction_of_broker"].as_f64().unwrap_or(0.0) > 0.0, "{s}");
    // Server side agrees: every job's record is done.
    let listed: Value = app
        .http
        .get(app.url("/v1/jobs?limit=1000"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    let jobs = listed["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 200, "records stored");
    assert!(jobs.iter().all(|j| j["status"] == "done"), "all done");
    // Bad mix: a clear error naming the format.
    let out = jetmill(&app, &["bench", "--mix", "lots:factorial"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("COUNT:KIND:INPUT"),
        "{}",
        text(&out)
    );
}
