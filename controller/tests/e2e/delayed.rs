//! Delayed jobs: `delay` or `run_at` on submit. The job is `scheduled` until its time,
//! listed and cancellable, and starts within a second of it although nats-server, the
//! gateway and the worker all restarted in between: the broker's message schedule holds
//! the job, no process of ours does.

use crate::helpers::{free_port, ms, wait_serving, GatewayProcess, TestApp};
use jetmill_proto::{names, now_ms};
use serde_json::{json, Value};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

const WAIT: Duration = Duration::from_secs(60);

/// `ms` as an RFC 3339 time.
fn rfc3339(ms: i64) -> String {
    jetmill_proto::record::ms_to_time(ms)
        .format(&Rfc3339)
        .expect("format")
}

async fn get(app: &TestApp, path: &str) -> Value {
    app.http
        .get(app.url(path))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

/// The subjects of `stream` that hold messages now, sorted.
async fn subjects(app: &TestApp, stream: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let js = app.js().await;
    let stream = js.get_stream(stream).await.expect("stream");
    let mut subjects: Vec<String> = stream
        .info_with_subjects(">")
        .await
        .expect("stream subjects")
        .map_ok(|(subject, _)| subject)
        .try_collect()
        .await
        .expect("subjects");
    subjects.sort();
    subjects
}

#[tokio::test]
async fn a_delayed_job_is_scheduled_cancellable_and_starts_on_time_across_restarts() {
    let mut app = TestApp::gateway_only().await;
    // Only a gateway process serves, so that it can be killed like the worker.
    app.shutdown.cancel();
    let port = free_port();
    let mut gateway = GatewayProcess::start(app.nats.url(), port, 0);
    app.base = format!("http://127.0.0.1:{port}");
    wait_serving(&app.http, &app.base, Duration::from_secs(20)).await;
    app.start_worker_process("before", &[]);
    app.workers[0].wait_started().await;

    // Long enough for three restarts, short enough for a test.
    let delay_ms = 12_000;
    let asked = now_ms();
    let (status, by_delay) = app
        .submit(&json!({"kind": "factorial", "input": 30, "delay": "12s"}))
        .await;
    assert_eq!(status, 202, "{by_delay}");
    assert_eq!(by_delay["status"], "scheduled", "{by_delay}");
    let by_delay = by_delay["id"].as_str().expect("id").to_string();
    let at = rfc3339(asked + delay_ms);
    let by_time = app
        .submit_ok(json!({"kind": "factorial", "input": 31, "run_at": at, "priority": "low"}))
        .await;
    let cancelled = app
        .submit_ok(json!({"kind": "factorial", "input": 32, "delay": "12s"}))
        .await;

    // Visible: scheduled, with its time, listed as such.
    let rec = app.get_job(&by_delay).await;
    assert_eq!(rec["status"], "scheduled", "{rec}");
    let due = ms(&rec, "run_at");
    assert!(
        (asked + delay_ms..now_ms() + delay_ms).contains(&due),
        "run_at is the submit time plus the delay: {rec}"
    );
    assert!(rec.get("started_at").is_none(), "{rec}");
    let rec = app.get_job(&by_time).await;
    assert_eq!(ms(&rec, "run_at"), asked + delay_ms, "{rec}");
    let page = get(&app, "/v1/jobs?status=scheduled").await;
    let listed: Vec<&str> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert!(
        listed.contains(&by_delay.as_str()) && listed.contains(&by_time.as_str()),
        "{page}"
    );

    // Cancellable: its schedule leaves SCHEDULES, so it never fires.
    let sched = |id: &str| format!("jobs.sched.{id}");
    assert!(subjects(&app, names::SCHEDULES_STREAM)
        .await
        .contains(&sched(&cancelled)));
    let (status, rec) = app.cancel(&cancelled).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["status"], "cancelled", "{rec}");
    let mut want = vec![sched(&by_delay), sched(&by_time)];
    want.sort();
    assert_eq!(
        subjects(&app, names::SCHEDULES_STREAM).await,
        want,
        "the two other schedules stay"
    );
    assert_eq!(
        app.stream_messages(names::JOBS_STREAM).await,
        0,
        "no job is queued before its time"
    );

    // Every process restarts before the time comes.
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(10)).await;
    gateway.kill9();
    app.nats.restart();
    gateway = GatewayProcess::start(app.nats.url(), port, 1);
    wait_serving(&app.http, &app.base, Duration::from_secs(20)).await;
    app.start_worker_process("after", &[]);
    app.workers[1].wait_started().await;
    let rec = app.get_job(&by_delay).await;
    assert!(
        now_ms() < due,
        "the restarts took longer than the delay; the test proves nothing: {rec}"
    );
    assert_eq!(rec["status"], "scheduled", "{rec}");

    // Each starts within a second of its time, on the new worker, once.
    for (id, result) in [
        (&by_delay, "265252859812191058636308480000000"),
        (&by_time, "8222838654177922817725562880000000"),
    ] {
        let rec = app.wait_finished(id, WAIT).await;
        assert_eq!(rec["status"], "done", "{rec}");
        assert_eq!(rec["result"], result, "{rec}");
        assert_eq!(rec["worker"], "after", "{rec}");
        assert_eq!(rec["attempts"], 1, "{rec}");
        let late = ms(&rec, "started_at") - ms(&rec, "run_at");
        eprintln!("job {id} started {late} ms after its run_at");
        assert!(
            (0..1000).contains(&late),
            "started {late} ms after its run_at: {rec}"
        );
        let types: Vec<String> = app
            .events_of(id)
            .await
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect();
        assert_eq!(types, ["accepted", "started", "done"], "{id}");
    }

    // The cancelled one's time has passed too: it stayed cancelled and never ran.
    let rec = app.get_job(&cancelled).await;
    let its_time = ms(&rec, "run_at");
    while now_ms() < its_time + 1_000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rec = app.get_job(&cancelled).await;
    assert_eq!(rec["status"], "cancelled", "{rec}");
    assert_eq!(rec["attempts"], 0, "{rec}");
    assert!(rec.get("worker").is_none(), "{rec}");
    assert!(
        subjects(&app, names::SCHEDULES_STREAM).await.is_empty(),
        "SCHEDULES is empty"
    );
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 0);
    drop(gateway);
}

#[tokio::test]
async fn a_batch_honours_each_items_delay_and_counts_scheduled_jobs() {
    let app = TestApp::spawn().await;
    let asked = now_ms();
    let resp = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .json(&json!([
            {"kind": "sum", "input": [1, 2], "delay": "2s"},
            {"kind": "sum", "input": [3, 4]},
            {"kind": "sum", "input": [5, 6], "delay": "bogus"},
        ]))
        .send()
        .await
        .expect("POST batch");
    assert_eq!(resp.status().as_u16(), 202);
    let batch: Value = resp.json().await.expect("json");
    let items = batch["items"].as_array().expect("items");
    assert_eq!(items[0]["status"], "scheduled", "{batch}");
    assert_eq!(items[1]["status"], "pending", "{batch}");
    assert_eq!(items[2]["field"], "delay", "{batch}");
    let delayed = items[0]["id"].as_str().expect("id");
    let now = items[1]["id"].as_str().expect("id");
    let id = batch["id"].as_str().expect("batch id");

    let rec = app.wait_finished(now, WAIT).await;
    assert_eq!(rec["result"], "7");
    let counts = get(&app, &format!("/v1/batches/{id}")).await;
    if now_ms() < asked + 2_000 {
        assert_eq!(counts["counts"]["scheduled"], 1, "{counts}");
        assert_eq!(counts["done"], false, "{counts}");
    }
    let rec = app.wait_finished(delayed, WAIT).await;
    assert_eq!(rec["result"], "3", "{rec}");
    assert!(ms(&rec, "started_at") >= asked + 2_000, "{rec}");
    let done = get(&app, &format!("/v1/batches/{id}?wait=10s")).await;
    assert_eq!(done["counts"]["done"], 2, "{done}");
    assert_eq!(done["counts"]["scheduled"], 0, "{done}");
}

/// Run `jetmill <args>` (the real binary) against the test's gateway.
async fn jetmill(app: &TestApp, args: &[&str]) -> std::process::Output {
    app.jetmill(args).await
}

#[tokio::test]
async fn the_cli_submits_delayed_jobs_shows_their_time_and_names_a_bad_delay() {
    let app = TestApp::spawn().await;
    let out = jetmill(
        &app,
        &[
            "jobs",
            "submit",
            "factorial",
            "20",
            "--delay",
            "1s",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let submitted: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(submitted["status"], "scheduled", "{submitted}");
    let id = submitted["id"].as_str().expect("id");
    let out = jetmill(&app, &["jobs", "get", id]).await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("scheduled") && shown.contains("due "),
        "{shown}"
    );
    let rec = app.wait_finished(id, WAIT).await;
    assert_eq!(rec["result"], "2432902008176640000", "{rec}");

    let at = rfc3339(now_ms() + 3_600_000);
    let out = jetmill(
        &app,
        &["jobs", "submit", "sum", "[1]", "--run-at", &at, "--json"],
    )
    .await;
    let submitted: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(submitted["status"], "scheduled", "{submitted}");
    // The operator sees it waiting (the 1 s one has run).
    let out = jetmill(&app, &["stats", "--json"]).await;
    let stats: Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert_eq!(
        (&stats["scheduled"], &stats["due"]),
        (&json!(1), &json!(0)),
        "{stats}"
    );
    let out = jetmill(&app, &["stats"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scheduled (delayed) 1"), "{text}");

    for bad in [
        &["jobs", "submit", "sum", "[1]", "--delay", "soon"][..],
        &["jobs", "submit", "sum", "[1]", "--run-at", "soon"][..],
    ] {
        let out = jetmill(&app, bad).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?}: {out:?}");
        assert!(
            err.contains("delay") || err.contains("run_at"),
            "{bad:?} names the option: {err}"
        );
    }
}
