//! The worker's memory budget (`--memory-budget`): a job whose estimated peak no live
//! worker can hold fails at once with the reason; one too big for a small worker runs
//! on a bigger one.

use crate::helpers::{worker_args, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_job_bigger_than_every_workers_budget_fails_at_once_saying_why() {
    let app = TestApp::gateway_only().await;
    let mut args = worker_args(app.nats.url());
    args.memory_budget = Some(50 << 20);
    app.start_worker_in_process(args);
    // factorial(10^7) peaks at about 300 MB: it can never run on a 50 MB worker.
    let big = app
        .submit_ok(json!({"kind": "factorial", "input": 10_000_000}))
        .await;
    let small = app
        .submit_ok(json!({"kind": "factorial", "input": 1000}))
        .await;
    let rec = app.wait_finished(&big, Duration::from_secs(20)).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("memory") && error.contains("0.05 GB") && error.contains("split"),
        "the error says what it needs, what there is and what to do: {error}"
    );
    assert_eq!(rec["attempts"], 0, "nothing was computed: {rec}");
    let rec = app.wait_finished(&small, Duration::from_secs(20)).await;
    assert_eq!(rec["status"], "done", "a job that fits runs: {rec}");
}

#[tokio::test]
async fn a_job_too_big_for_a_small_worker_waits_for_one_that_can_hold_it() {
    let mut app = TestApp::gateway_only().await;
    // The big worker is live (reported) but frozen: only the small one pulls at first.
    app.start_worker_process("big", &[]);
    app.workers[0].wait_started().await;
    let frozen = app.jetmill(&["freeze", "--worker", "big"]).await;
    assert!(
        frozen.status.success(),
        "{}",
        String::from_utf8_lossy(&frozen.stderr)
    );
    app.start_worker_process("small", &["--memory-budget", "20M"]);
    app.workers[1].wait_started().await;
    // factorial(10^6) peaks at about 60 MB: only the worker without a budget holds it.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 1_000_000}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&app.workers[1].log)
        .unwrap_or_default()
        .contains("does not fit this worker's memory budget")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the small worker never handed the job back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rec = app.get_job(&id).await;
    assert_eq!(rec["status"], "pending", "handed back, not failed: {rec}");
    let resumed = app.jetmill(&["resume", "--worker", "big"]).await;
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let rec = app.wait_finished(&id, Duration::from_secs(60)).await;
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["worker"], "big", "{rec}");
    assert_eq!(rec["attempts"], 1, "hand-backs are not attempts: {rec}");
}
