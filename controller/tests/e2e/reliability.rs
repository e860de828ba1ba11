//! Workers that lose nothing: retries, timeouts, cancellation, crashes, drains,
//! poison messages and a NATS restart (issue 4). Real processes, real nats-server.

use crate::helpers::{worker_args, TestApp};
use futures::StreamExt;
use jetmill_proto::names;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

fn count(events: &[Value], t: &str) -> usize {
    types(events).iter().filter(|x| **x == t).count()
}

async fn wait_stream_empty(app: &TestApp, what: &str) {
    let ok = jetmill_testkit::wait_until(WAIT, || async {
        app.stream_messages(names::JOBS_STREAM).await == 0
    })
    .await;
    assert!(ok, "JOBS stream did not empty: {what}");
}

#[tokio::test]
async fn an_always_failing_job_ends_failed_after_max_attempts_with_its_error() {
    let app = TestApp::spawn().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 10, "max_attempts": 3, "chaos": {"fail_probability": 1.0}}))
        .await;
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["attempts"], 3);
    assert!(
        rec["error"].as_str().is_some_and(|e| e.contains("chaos")),
        "{rec}"
    );
    assert!(rec["result"].is_null());
    let events = app.events_of(&id).await;
    assert_eq!(count(&events, "started"), 3, "{events:?}");
    assert_eq!(count(&events, "retried"), 2, "{events:?}");
    assert_eq!(count(&events, "failed"), 1, "{events:?}");
    assert_eq!(count(&events, "done"), 0);
    wait_stream_empty(&app, "a failed job is terminated").await;
}

#[tokio::test]
async fn a_panicking_kernel_is_a_failed_attempt_and_the_worker_carries_on() {
    let app = TestApp::spawn().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 10, "max_attempts": 1, "chaos": {"fail_probability": 1.0, "panic": true}}))
        .await;
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        rec["error"]
            .as_str()
            .is_some_and(|e| e.contains("panicked")),
        "{rec}"
    );
    let ok = app
        .submit_ok(json!({"kind": "factorial", "input": 10}))
        .await;
    assert_eq!(app.wait_finished(&ok, WAIT).await["result"], "3628800");
}

#[tokio::test]
async fn a_slow_attempt_times_out_and_the_kernel_stops() {
    let app = TestApp::spawn().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 10, "max_attempts": 1, "timeout_secs": 0.3, "chaos": {"delay_ms": 600000}}))
        .await;
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        rec["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{rec}"
    );
    // The slot is free again: the stopped kernel does not linger.
    let ok = app.submit_ok(json!({"kind": "sum", "input": [2, 3]})).await;
    assert_eq!(app.wait_finished(&ok, WAIT).await["result"], "5");
}

#[tokio::test]
async fn a_cancelled_queued_job_never_runs_and_finished_jobs_cannot_be_cancelled() {
    let app = TestApp::gateway_only().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 12}))
        .await;
    let (status, rec) = app.cancel(&id).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["status"], "cancelled");
    let (status, body) = app.cancel(&id).await;
    assert_eq!(status, 409, "cancelling twice: {body}");

    app.start_worker_in_process(worker_args(app.nats.url()));
    wait_stream_empty(&app, "the worker drops the cancelled job").await;
    let rec = app.get_job(&id).await;
    assert_eq!(rec["status"], "cancelled");
    assert_eq!(rec["attempts"], 0, "it never ran: {rec}");
    let events = app.events_of(&id).await;
    assert_eq!(types(&events), vec!["accepted", "cancelled"]);

    let done = app
        .submit_ok(json!({"kind": "factorial", "input": 5}))
        .await;
    app.wait_finished(&done, WAIT).await;
    let (status, body) = app.cancel(&done).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("done")),
        "{body}"
    );
    let (status, _) = app.cancel("0190a0a0-0000-7000-8000-000000000000").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn cancelling_a_running_job_stops_its_kernel() {
    let app = TestApp::gateway_only().await;
    let mut args = worker_args(app.nats.url());
    args.concurrency = Some(1);
    app.start_worker_in_process(args);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 10, "chaos": {"delay_ms": 600000}}))
        .await;
    app.wait_record(&id, WAIT, "running", |r| r["status"] == "running")
        .await;
    let (status, rec) = app.cancel(&id).await;
    assert_eq!(status, 200, "{rec}");
    // The only slot frees up only if the kernel really stopped.
    let next = app
        .submit_ok(json!({"kind": "factorial", "input": 6}))
        .await;
    assert_eq!(
        app.wait_finished(&next, Duration::from_secs(20)).await["result"],
        "720"
    );
    wait_stream_empty(&app, "the cancelled job's message is terminated").await;
    let rec = app.get_job(&id).await;
    assert_eq!(rec["status"], "cancelled", "{rec}");
    let events = app.events_of(&id).await;
    assert_eq!(count(&events, "cancelled"), 1, "{events:?}");
    assert_eq!(count(&events, "done"), 0, "{events:?}");
}

#[tokio::test]
async fn a_killed_workers_job_finishes_on_another_worker() {
    let mut app = TestApp::gateway_only().await;
    let flags = ["--ack-wait-secs", "1", "--concurrency", "1"];
    app.start_worker_process("doomed", &flags);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 100, "chaos": {"delay_ms": 1500}}))
        .await;
    app.wait_record(&id, WAIT, "running on doomed", |r| {
        r["status"] == "running" && r["worker"] == "doomed"
    })
    .await;
    app.workers[0].signal("KILL");
    app.start_worker_process("survivor", &flags);
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["worker"], "survivor");
    assert_eq!(rec["attempts"], 2, "{rec}");
    let expected = jetmill_compute::run(
        &jetmill_compute::Task::Factorial { n: 100 },
        &jetmill_compute::Control::silent(1),
    )
    .expect("100!");
    assert_eq!(rec["result"].as_str(), Some(expected.decimal.as_str()));
}

#[tokio::test]
async fn long_jobs_are_kept_alive_and_not_redelivered_while_their_worker_lives() {
    let mut app = TestApp::gateway_only().await;
    // ack_wait 1 s, the job takes 4 s: without in-progress acks it would be redelivered.
    app.start_worker_process("a", &["--ack-wait-secs", "1", "--concurrency", "1"]);
    app.start_worker_process("b", &["--ack-wait-secs", "1", "--concurrency", "1"]);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 50, "chaos": {"delay_ms": 4000}}))
        .await;
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "done");
    assert_eq!(
        rec["attempts"], 1,
        "redelivered while its worker was alive: {rec}"
    );
    let events = app.events_of(&id).await;
    assert_eq!(count(&events, "started"), 1, "{events:?}");
}

#[tokio::test]
async fn a_job_whose_worker_dies_on_its_last_attempt_ends_failed_not_stuck() {
    let mut app = TestApp::gateway_only().await;
    let flags = [
        "--ack-wait-secs",
        "1",
        "--max-deliver",
        "1",
        "--concurrency",
        "1",
    ];
    app.start_worker_process("doomed", &flags);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 10, "chaos": {"delay_ms": 600000}}))
        .await;
    app.wait_record(&id, WAIT, "running", |r| r["status"] == "running")
        .await;
    app.start_worker_process("witness", &flags);
    app.workers[1].wait_started().await;
    app.workers[0].signal("KILL");
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        rec["error"]
            .as_str()
            .is_some_and(|e| e.contains("gave up after 1 deliveries")),
        "{rec}"
    );
    wait_stream_empty(&app, "the given-up message is deleted").await;
    assert_eq!(count(&app.events_of(&id).await, "failed"), 1);
}

#[tokio::test]
async fn garbage_on_the_job_subject_does_not_stop_the_worker() {
    let app = TestApp::spawn().await;
    let js = app.js().await;
    for payload in [&b"garbage"[..], &[99u8, 1, 2, 3][..], &[][..]] {
        js.publish("jobs.run.normal.factorial", payload.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    wait_stream_empty(&app, "poison messages are terminated").await;
    let id = app
        .submit_ok(json!({"kind": "fibonacci", "input": 90}))
        .await;
    assert_eq!(
        app.wait_finished(&id, WAIT).await["result"],
        "2880067194370816120"
    );

    let stream = js.get_stream(names::EVENTS_STREAM).await.expect("events");
    let poison: Vec<(String, usize)> = stream
        .info_with_subjects("jobs.events.poison.*")
        .await
        .expect("subjects")
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|r| r.expect("subject count"))
        .collect();
    assert_eq!(
        poison.iter().map(|(_, n)| n).sum::<usize>(),
        3,
        "one poison event per garbage message: {poison:?}"
    );
}

#[tokio::test]
async fn sigterm_lets_running_jobs_finish_then_exits_zero() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process("w", &["--concurrency", "2", "--drain-grace-secs", "20"]);
    let a = app
        .submit_ok(json!({"kind": "factorial", "input": 7, "chaos": {"delay_ms": 1500}}))
        .await;
    let b = app
        .submit_ok(json!({"kind": "factorial", "input": 8, "chaos": {"delay_ms": 1500}}))
        .await;
    for id in [&a, &b] {
        app.wait_record(id, WAIT, "running", |r| r["status"] == "running")
            .await;
    }
    app.workers[0].signal("TERM");
    let status = app.workers[0].wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "drained worker exits 0, got {status}");
    assert_eq!(app.get_job(&a).await["result"], "5040");
    assert_eq!(app.get_job(&b).await["result"], "40320");
}

#[tokio::test]
async fn after_the_grace_period_a_draining_worker_hands_jobs_back() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process(
        "leaving",
        &["--concurrency", "1", "--drain-grace-secs", "0.2"],
    );
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 9, "chaos": {"delay_ms": 2000}}))
        .await;
    app.wait_record(&id, WAIT, "running", |r| {
        r["status"] == "running" && r["worker"] == "leaving"
    })
    .await;
    app.workers[0].signal("TERM");
    let status = app.workers[0].wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    let rec = app.get_job(&id).await;
    assert_eq!(rec["status"], "pending", "handed back: {rec}");
    app.start_worker_process("staying", &["--concurrency", "1"]);
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "done");
    assert_eq!(rec["worker"], "staying");
    assert_eq!(rec["result"], "362880");
}

fn sum_job(i: usize) -> (Value, String) {
    (
        json!({"kind": "sum", "input": [i, i, 1], "max_attempts": 10, "chaos": {"fail_probability": 0.2}}),
        (2 * i + 1).to_string(),
    )
}

#[tokio::test]
async fn a_thousand_jobs_with_20_percent_failures_all_finish_exactly_once() {
    let mut app = TestApp::gateway_only().await;
    let flags = [
        "--concurrency",
        "4",
        "--max-deliver",
        "10",
        "--retry-base-ms",
        "10",
    ];
    app.start_worker_process("w1", &flags);
    app.start_worker_process("w2", &flags);
    let app = &app;
    let ids: Vec<(String, String)> = futures::stream::iter(0..1000)
        .map(|i| async move {
            let (body, want) = sum_job(i);
            (app.submit_ok(body).await, want)
        })
        .buffered(32)
        .collect()
        .await;
    let mut retried = 0;
    for (id, want) in &ids {
        let rec = app.wait_finished(id, Duration::from_secs(120)).await;
        assert_eq!(rec["status"], "done", "{rec}");
        assert_eq!(rec["result"].as_str(), Some(want.as_str()));
        if rec["attempts"].as_u64().unwrap_or(0) > 1 {
            retried += 1;
        }
    }
    // With p = 0.2 per attempt, about 200 jobs need a second attempt.
    assert!(retried > 50, "only {retried} jobs were retried");
    wait_stream_empty(app, "every job acked").await;
    let counts = crate::workers::event_counts(app).await;
    for (id, _) in &ids {
        assert_eq!(
            counts.get(&(id.clone(), "done".into())),
            Some(&1),
            "job {id}: exactly one done event"
        );
    }
}

#[tokio::test]
async fn a_nats_restart_in_the_middle_of_a_run_loses_nothing() {
    let mut app = TestApp::gateway_only().await;
    let flags = [
        "--concurrency",
        "2",
        "--ack-wait-secs",
        "2",
        "--retry-base-ms",
        "50",
    ];
    app.start_worker_process("w1", &flags);
    app.start_worker_process("w2", &flags);
    let mut ids = Vec::new();
    for i in 0..500u64 {
        // Each job takes a few ms so the restart lands mid-run.
        ids.push(
            app.submit_ok(json!({"kind": "sum", "input": [i, 7], "chaos": {"delay_ms": 20}}))
                .await,
        );
    }
    let queued = app.stream_messages(names::JOBS_STREAM).await;
    assert!(
        queued > 0,
        "the run finished before the restart; make jobs slower"
    );
    app.nats.restart();
    let ready = jetmill_testkit::wait_until(WAIT, || async {
        matches!(app.http.get(app.url("/readyz")).send().await, Ok(r) if r.status().as_u16() == 200)
    })
    .await;
    assert!(ready, "gateway reconnected after the restart");
    for (i, id) in ids.iter().enumerate() {
        let rec = app.wait_finished(id, Duration::from_secs(120)).await;
        assert_eq!(rec["status"], "done", "{rec}");
        assert_eq!(
            rec["result"].as_str(),
            Some((i as u64 + 7).to_string().as_str())
        );
    }
    wait_stream_empty(&app, "every job acked after the restart").await;
}

#[tokio::test]
async fn a_worker_told_to_stop_after_nats_died_exits_within_its_grace_period_and_a_bound() {
    let mut app = TestApp::gateway_only().await;
    let grace = 1.0;
    app.start_worker_process(
        "orphan",
        &[
            "--concurrency",
            "1",
            "--ack-wait-secs",
            "2",
            "--drain-grace-secs",
            &grace.to_string(),
        ],
    );
    // Still in its kernel when NATS dies and the worker is told to stop.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 11, "chaos": {"delay_ms": 3000}}))
        .await;
    app.wait_record(&id, WAIT, "running on orphan", |r| {
        r["status"] == "running" && r["worker"] == "orphan"
    })
    .await;
    app.nats.stop();
    app.workers[0].signal("TERM");
    // The grace period, the bound for the last writes, and a little for the process.
    let bound =
        Duration::from_secs_f64(grace) + jetmill_worker::LAST_WRITES + Duration::from_secs(3);
    let started = std::time::Instant::now();
    let status = app.workers[0].wait_exit(bound).await;
    assert!(status.success(), "exit status {status}");
    let took = started.elapsed();

    // What the worker could not settle, JetStream delivers again.
    app.nats.restart();
    app.start_worker_process("heir", &["--concurrency", "1", "--ack-wait-secs", "2"]);
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["worker"], "heir", "{rec}");
    assert_eq!(rec["result"], "39916800");
    eprintln!("the orphaned worker stopped {took:?} after SIGTERM");
}

#[tokio::test]
async fn an_input_the_kernel_refuses_fails_at_once_and_is_never_retried() {
    let app = TestApp::spawn().await;
    // The gateway refuses a zero modulus; a message published around it (an older
    // gateway, a hand-written job) reaches the kernel, which reports the input invalid.
    let id = jetmill_proto::JobId::new();
    let job = jetmill_proto::JobMessage {
        id,
        tenant: names::DEFAULT_TENANT.into(),
        spec: jetmill_proto::JobSpec::Fibonacci {
            n: 10,
            modulus: Some(0),
        },
        priority: Default::default(),
        submitted_at_ms: jetmill_proto::now_ms(),
        max_attempts: Some(5),
        timeout_ms: None,
        chaos: None,
        batch: None,
        run_at_ms: None,
        schedule: None,
        retention_secs: None,
        workflow: None,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id.to_string().as_str());
    app.js()
        .await
        .publish_with_headers(
            names::job_subject(Default::default(), job.spec.kind()),
            headers,
            job.encode().expect("encode").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    let id = id.to_string();
    // No gateway wrote its record: it exists once the worker has taken the job.
    let stored = jetmill_testkit::wait_until(WAIT, || async {
        let url = app.url(&format!("/v1/jobs/{id}"));
        matches!(app.http.get(url).send().await, Ok(r) if r.status().as_u16() == 200)
    })
    .await;
    assert!(stored, "the worker recorded the job");
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["attempts"], 1, "not retried: {rec}");
    assert!(
        rec["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid input")),
        "{rec}"
    );
    wait_stream_empty(&app, "the refused job is terminated").await;
    let events = app.events_of(&id).await;
    assert_eq!(count(&events, "retried"), 0, "{events:?}");
    assert_eq!(count(&events, "failed"), 1, "{events:?}");
}
