//! Recurring schedules: each firing of nats-server's message schedule becomes one
//! ordinary job linked to its schedule (`GET /v1/jobs?schedule=`), exactly once with
//! two workers moving firings and two gateways serving, across restarts of
//! nats-server, the gateway process and the workers; pause, resume and delete; bad
//! expressions name the field.

use crate::helpers::{free_port, ms, wait_serving, GatewayProcess, TestApp};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_at(&app.http, &app.base, method, path, body).await
}

/// [`call`] against the gateway at `base`.
async fn call_at(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every job the schedule made so far (one page of up to 1,000).
async fn jobs_of(app: &TestApp, sid: &str) -> Vec<Value> {
    let (status, page) = call(
        app,
        reqwest::Method::GET,
        &format!("/v1/jobs?schedule={sid}&limit=1000"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["jobs"].as_array().cloned().unwrap_or_default()
}

/// Wait until the schedule made at least `n` jobs; returns them.
async fn wait_jobs(app: &TestApp, sid: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let jobs = jobs_of(app, sid).await;
        if jobs.len() >= n {
            return jobs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule {sid} made {} jobs, not {n}: {jobs:?}",
            jobs.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No two jobs came from one firing: their ids differ and their submission times (the
/// firing times) are at least `min_gap_ms` apart.
fn one_job_per_firing(jobs: &[Value], min_gap_ms: i64) {
    let ids: HashSet<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids.len(), jobs.len(), "duplicate ids: {jobs:?}");
    let mut times: Vec<i64> = jobs.iter().map(|j| ms(j, "submitted_at")).collect();
    times.sort_unstable();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= min_gap_ms,
            "two jobs {} ms apart: one firing made two jobs? {times:?}",
            w[1] - w[0]
        );
    }
}

#[tokio::test]
async fn a_schedule_fires_one_job_per_tick_across_restarts_and_pauses_resumes_and_deletes() {
    let mut app = TestApp::gateway_only().await;
    // Two gateways (the test's own and a process) and two workers moving firings.
    let port = free_port();
    let mut gateway = GatewayProcess::start(app.nats.url(), port, 0);
    let process_base = format!("http://127.0.0.1:{port}");
    wait_serving(&app.http, &process_base, Duration::from_secs(20)).await;
    app.start_worker_process("w1", &[]);
    app.start_worker_process("w2", &[]);
    for w in &app.workers {
        w.wait_started().await;
    }

    let (status, created) = call(
        &app,
        reqwest::Method::POST,
        "/v1/schedules",
        Some(json!({"cron": "@every 1s", "job": {"kind": "factorial", "input": 10}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["paused"], false, "{created}");
    assert_eq!(created["time_zone"], "UTC", "{created}");
    let sid = created["id"].as_str().expect("id").to_string();
    let (status, got) = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/schedules/{sid}"),
        None,
    )
    .await;
    assert_eq!((status, &got), (200, &created));
    let (_, list) = call(&app, reqwest::Method::GET, "/v1/schedules", None).await;
    assert!(
        list["schedules"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["id"] == sid.as_str())),
        "{list}"
    );

    // Firings become ordinary jobs, linked to the schedule, computed.
    let jobs = wait_jobs(&app, &sid, 3).await;
    for j in &jobs {
        assert_eq!(j["schedule"], sid.as_str(), "{j}");
        assert_eq!(j["kind"], "factorial", "{j}");
    }
    let first = jobs.last().expect("a job")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let done = app.wait_finished(&first, WAIT).await;
    assert_eq!(done["result"], "3628800", "{done}");

    // nats-server, the gateway process and a worker restart; firings go on, one job each.
    let before = jobs_of(&app, &sid).await.len();
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(10)).await;
    gateway.kill9();
    app.nats.restart();
    gateway = GatewayProcess::start(app.nats.url(), port, 1);
    wait_serving(&app.http, &process_base, Duration::from_secs(20)).await;
    app.start_worker_process("w1-again", &[]);
    app.workers[2].wait_started().await;
    wait_jobs(&app, &sid, before + 3).await;

    // Pause: no more jobs. Resume: jobs again. Through the other gateway.
    let (status, paused) = call_at(
        &app.http,
        &process_base,
        reqwest::Method::POST,
        &format!("/v1/schedules/{sid}/pause"),
        None,
    )
    .await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    // Absence takes a wait: a firing moved just before the pause may still arrive, so
    // settle 1.5 s, then see that 2.5 s (two or three ticks) add nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_pause = jobs_of(&app, &sid).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        jobs_of(&app, &sid).await.len(),
        at_pause,
        "a paused schedule fired"
    );
    let (status, resumed) = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/schedules/{sid}/resume"),
        None,
    )
    .await;
    assert_eq!(
        (status, &resumed["paused"]),
        (200, &json!(false)),
        "{resumed}"
    );
    wait_jobs(&app, &sid, at_pause + 2).await;

    // Delete: gone, and no more jobs; the jobs it made stay.
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/schedules/{sid}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/schedules/{sid}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_delete = jobs_of(&app, &sid).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let all = jobs_of(&app, &sid).await;
    assert_eq!(all.len(), at_delete.len(), "a deleted schedule fired");
    one_job_per_firing(&all, 500);
    for j in &all {
        let id = j["id"].as_str().expect("id");
        let rec = app.wait_finished(id, WAIT).await;
        assert_eq!(rec["status"], "done", "{rec}");
    }
    drop(gateway);
}

#[tokio::test]
async fn a_cron_schedule_in_a_time_zone_fires_on_its_seconds_and_bad_ones_name_the_field() {
    let app = TestApp::spawn().await;
    // Every 2 s on the even seconds, read in Tokyo time (seconds are the same there).
    let (status, created) = call(
        &app,
        reqwest::Method::POST,
        "/v1/schedules",
        Some(json!({"cron": "*/2 * * * * *", "time_zone": "Asia/Tokyo",
                    "job": {"kind": "sum", "input": [20, 22], "priority": "high"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let sid = created["id"].as_str().expect("id").to_string();
    let jobs = wait_jobs(&app, &sid, 2).await;
    for j in &jobs {
        let at = ms(j, "submitted_at");
        assert_eq!((at / 1000) % 2, 0, "fired on an even second: {j}");
        let rec = app.wait_finished(j["id"].as_str().expect("id"), WAIT).await;
        assert_eq!(rec["result"], "42", "{rec}");
    }
    one_job_per_firing(&jobs, 1500);

    // Created paused: stored, no job.
    let (status, paused) = call(
        &app,
        reqwest::Method::POST,
        "/v1/schedules",
        Some(json!({"cron": "* * * * * *", "paused": true, "job": {"kind": "sum", "input": [1]}})),
    )
    .await;
    assert_eq!((status, &paused["paused"]), (201, &json!(true)), "{paused}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(jobs_of(&app, paused["id"].as_str().expect("id"))
        .await
        .is_empty());

    for (body, field, says) in [
        (
            json!({"cron": "* * * * *", "job": {"kind": "sum", "input": [1]}}),
            "cron",
            "six",
        ),
        (
            json!({"cron": "0 0 25 * * *", "job": {"kind": "sum", "input": [1]}}),
            "cron",
            "hour field",
        ),
        (
            json!({"cron": "0 0 0 31 2 *", "job": {"kind": "sum", "input": [1]}}),
            "cron",
            "nats-server",
        ),
        (
            json!({"cron": "@daily", "time_zone": "Mars/Olympus", "job": {"kind": "sum", "input": [1]}}),
            "time_zone",
            "time zone",
        ),
        (
            json!({"cron": "@every 1m", "time_zone": "Europe/Paris", "job": {"kind": "sum", "input": [1]}}),
            "time_zone",
            "@every",
        ),
        (
            json!({"cron": "@daily", "job": {"kind": "sum", "input": "x"}}),
            "job.input",
            "",
        ),
        (
            json!({"cron": "@daily", "job": {"kind": "sum", "input": [1], "delay": "1s"}}),
            "job.delay",
            "",
        ),
    ] {
        let (status, problem) = call(
            &app,
            reqwest::Method::POST,
            "/v1/schedules",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.contains(says)),
            "{body}: {problem}"
        );
    }
    // Refused schedules left nothing behind.
    let (_, list) = call(&app, reqwest::Method::GET, "/v1/schedules", None).await;
    assert_eq!(
        list["schedules"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    let (status, _) = call(&app, reqwest::Method::GET, "/v1/schedules/not-an-id", None).await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/schedules/{}", jetmill_proto::JobId::new()),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// Run `jetmill <args>` (the real binary) against the test's gateway.
async fn jetmill(app: &TestApp, args: &[&str]) -> std::process::Output {
    app.jetmill(args).await
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn the_cli_creates_lists_pauses_resumes_and_deletes_schedules() {
    let app = TestApp::spawn().await;
    let out = jetmill(
        &app,
        &[
            "schedules",
            "create",
            "@every 1s",
            "fibonacci",
            "90",
            "--modulus",
            "1000",
            "--json",
        ],
    )
    .await;
    let created: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let sid = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["job"]["params"]["modulus"], 1000, "{created}");
    let list = stdout(&jetmill(&app, &["schedules", "list"]).await);
    assert!(
        list.contains(&sid) && list.contains("@every 1s") && list.contains("running"),
        "{list}"
    );
    let jobs = wait_jobs(&app, &sid, 1).await;
    let rec = app
        .wait_finished(jobs[0]["id"].as_str().expect("id"), WAIT)
        .await;
    assert_eq!(
        rec["result"], "120",
        "F(90) = 2880067194370816120, mod 1000: {rec}"
    );
    let table = stdout(&jetmill(&app, &["schedules", "jobs", &sid]).await);
    assert!(table.contains("fibonacci"), "{table}");
    let paused = stdout(&jetmill(&app, &["schedules", "pause", &sid]).await);
    assert!(paused.contains("paused"), "{paused}");
    let resumed = stdout(&jetmill(&app, &["schedules", "resume", &sid, "--json"]).await);
    let resumed: Value = serde_json::from_str(&resumed).expect("json");
    assert_eq!(resumed["paused"], false);
    stdout(&jetmill(&app, &["schedules", "delete", &sid]).await);
    let gone = jetmill(&app, &["schedules", "get", &sid]).await;
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("404"),
        "{gone:?}"
    );

    let bad = jetmill(&app, &["schedules", "create", "* * * * *", "sum", "[1]"]).await;
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("cron") && err.contains("six"), "{err}");
}
