//! Dead letters: a failed job keeps every failed attempt (worker and error), is listed
//! with `?status=failed`, and a retry runs it again with a fresh attempt budget, across
//! restarts of nats-server and of the worker, exactly once; bulk retry and purge.

use crate::helpers::TestApp;
use jetmill_proto::{names, JobMessage};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const FACTORIAL_30: &str = "265252859812191058636308480000000";

/// POST `path` with `body`; (status, JSON answer).
async fn post(app: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.http.post(app.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Submit factorial(30) allowed `attempts` attempts and wait until it is `failed`.
async fn dead_letter(app: &TestApp, body: Value) -> Value {
    let id = app.submit_ok(body).await;
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    rec
}

#[tokio::test]
async fn a_dead_letter_shows_its_error_trail_and_a_retry_runs_it_once_across_restarts() {
    let mut app = TestApp::gateway_only().await;
    // A worker whose every attempt fails (its default chaos), then one that works.
    app.start_worker_process("flaky", &["--chaos-fail-probability", "1"]);
    let rec = dead_letter(
        &app,
        json!({"kind": "factorial", "input": 30, "max_attempts": 3}),
    )
    .await;
    let id = rec["id"].as_str().expect("id").to_string();
    let trail = rec["failures"].as_array().expect("failures").clone();
    assert_eq!(trail.len(), 3, "{rec}");
    for (i, f) in trail.iter().enumerate() {
        assert_eq!(f["attempt"], i + 1, "{rec}");
        assert_eq!(f["worker"], "flaky", "{rec}");
        assert!(
            f["error"].as_str().is_some_and(|e| e.contains("chaos")),
            "{rec}"
        );
        assert!(f["at"].is_string(), "{rec}");
    }
    assert!(
        rec["message"].is_string(),
        "a failed record keeps its job message: {rec}"
    );

    // Listed as a dead letter, trail included.
    let page: Value = app
        .http
        .get(app.url("/v1/jobs?status=failed"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let listed = page["jobs"].as_array().expect("jobs");
    assert!(
        listed
            .iter()
            .any(|j| j["id"] == id.as_str()
                && j["failures"].as_array().is_some_and(|f| f.len() == 3)),
        "{page}"
    );

    // Retried while no worker runs, then nats-server restarts: nothing is lost.
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(10)).await;
    let (status, reopened) = post(&app, &format!("/v1/jobs/{id}/retry"), None).await;
    assert_eq!(status, 202, "{reopened}");
    assert_eq!(reopened["status"], "pending", "{reopened}");
    assert_eq!(reopened["retries"], 1, "{reopened}");
    assert!(reopened.get("message").is_none(), "{reopened}");
    // A second retry of the same job before it ran: it is not a dead letter now.
    let (status, problem) = post(&app, &format!("/v1/jobs/{id}/retry"), None).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("pending")),
        "{problem}"
    );
    app.nats.restart();
    app.start_worker_process("healthy", &[]);
    let done = app.wait_finished(&id, WAIT).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["result"], FACTORIAL_30);
    assert_eq!(
        done["attempts"], 4,
        "attempt numbers go on after a retry: {done}"
    );
    assert_eq!(done["worker"], "healthy");
    assert_eq!(done["retries"], 1);
    assert_eq!(done["failures"].as_array().map(Vec::len), Some(3), "{done}");
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 0);

    // The job's story: two chapters, one done.
    let events = app.events_of(&id).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "accepted").count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "failed").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "done").count(),
        1,
        "{types:?}"
    );
    assert_eq!(types.last(), Some(&"done"), "{types:?}");
    // And the feed of a client that connects now reads past `failed` to the end.
    let feed = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .expect("feed")
        .text()
        .await
        .expect("feed body");
    let shown: Vec<&str> = feed
        .lines()
        .filter_map(|l| l.strip_prefix("event:"))
        .map(str::trim)
        .collect();
    let failed_at = shown
        .iter()
        .position(|t| *t == "failed")
        .expect("failed shown");
    assert_eq!(shown.last(), Some(&"done"), "{shown:?}");
    assert!(shown[failed_at..].contains(&"accepted"), "{shown:?}");

    // A done job is no dead letter.
    let (status, problem) = post(&app, &format!("/v1/jobs/{id}/retry"), None).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("done")),
        "{problem}"
    );
}

#[tokio::test]
async fn a_retry_whose_gateway_died_after_publishing_is_reopened_and_run_by_the_worker() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process("flaky", &["--chaos-fail-probability", "1"]);
    let rec = dead_letter(
        &app,
        json!({"kind": "factorial", "input": 30, "max_attempts": 1}),
    )
    .await;
    let id = rec["id"].as_str().expect("id").to_string();
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(10)).await;
    // What the gateway publishes before it writes anything else, and nothing more.
    let kept = hex::decode(rec["message"].as_str().expect("message")).expect("hex");
    let msg = JobMessage::decode(&kept).expect("job message");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{id}.retry.1").as_str());
    headers.insert(names::HDR_RETRY, "1");
    app.js()
        .await
        .publish_with_headers(
            names::job_subject(msg.priority, msg.spec.kind()),
            headers,
            kept.into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    assert_eq!(app.get_job(&id).await["status"], "failed");
    app.start_worker_process("healthy", &[]);
    let done = app
        .wait_record(&id, WAIT, "done", |r| r["status"] == "done")
        .await;
    assert_eq!(
        (done["retries"].clone(), done["attempts"].clone()),
        (json!(1), json!(2))
    );
    let events = app.events_of(&id).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        ["accepted", "started", "failed", "accepted", "started", "done"],
        "the worker publishes the retry's accepted first"
    );
}

#[tokio::test]
async fn dead_letters_are_retried_and_purged_in_bulk_each_with_its_own_answer() {
    let app = TestApp::spawn().await;
    // Job-level chaos: these fail on any worker, every time.
    let always_failing = json!({"kind": "factorial", "input": 30, "max_attempts": 1,
        "chaos": {"fail_probability": 1.0}});
    let mut failed = Vec::new();
    for _ in 0..3 {
        let rec = dead_letter(&app, always_failing.clone()).await;
        failed.push(rec["id"].as_str().expect("id").to_string());
    }
    let ok = app
        .submit_ok(json!({"kind": "factorial", "input": 30}))
        .await;
    app.wait_finished(&ok, WAIT).await;
    let mut ids = failed.clone();
    ids.push(ok.clone());
    ids.push("not-a-job-id".into());
    let (status, answer) = post(&app, "/v1/dead-letters/retry", Some(json!({ "ids": ids }))).await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<u64> = answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, [202, 202, 202, 409, 400], "{answer}");
    assert_eq!(answer["applied"], 3);
    // They run again and fail again (their own chaos), each with a longer trail.
    for id in &failed {
        let rec = app
            .wait_record(id, WAIT, "failed again", |r| {
                r["status"] == "failed" && r["retries"] == 1
            })
            .await;
        assert_eq!(rec["failures"].as_array().map(Vec::len), Some(2), "{rec}");
    }

    // Purge: failed records go; anything else is refused item by item.
    let (status, answer) = post(
        &app,
        "/v1/dead-letters/purge",
        Some(json!({ "ids": [failed[0], failed[1], ok] })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<u64> = answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, [200, 200, 409], "{answer}");
    for id in &failed[..2] {
        let resp = app
            .http
            .get(app.url(&format!("/v1/jobs/{id}")))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 404, "purged");
    }
    assert_eq!(app.get_job(&ok).await["status"], "done");

    // The CLI: list, then retry --all (the one dead letter left), as an operator would.
    let cli = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
            .args(args)
            .args(["--gateway", &app.base, "--json"])
            .env_remove("JETMILL_TOKEN")
            .output()
    };
    let listed = cli(&["dlq", "list"]).await.expect("run jetmill");
    assert!(listed.status.success(), "{listed:?}");
    let page: Value = serde_json::from_slice(&listed.stdout).expect("json");
    let ids: Vec<&str> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [failed[2].as_str()], "{page}");
    let retried = cli(&["dlq", "retry", "--all"]).await.expect("run jetmill");
    assert!(retried.status.success(), "{retried:?}");
    let answer: Value = serde_json::from_slice(&retried.stdout).expect("json");
    assert_eq!(answer["applied"], 1, "{answer}");
    app.wait_record(&failed[2], WAIT, "retried twice", |r| {
        r["status"] == "failed" && r["retries"] == 2
    })
    .await;

    // Bad bulk requests name the problem.
    let (status, problem) = post(&app, "/v1/dead-letters/retry", Some(json!({ "ids": [] }))).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "ids", "{problem}");
    let (status, problem) = post(&app, "/v1/dead-letters/purge", Some(json!({ "id": "x" }))).await;
    assert_eq!(status, 400, "{problem}");
    let refused = cli(&["dlq", "retry", ok.as_str()])
        .await
        .expect("run jetmill");
    assert!(
        !refused.status.success(),
        "a done job cannot be retried: {refused:?}"
    );
}
