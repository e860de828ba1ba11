//! Several worker processes share the queue; completion happens exactly once.

use crate::helpers::TestApp;
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures::StreamExt;
use jetmill_proto::{names, JobMessage, JobRecord};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Count events per (job id, type) in the EVENTS stream, an attempt's implied
/// `started` (`JobEvent::started_at_ms`, see `JobEvent::implied_start`) included, as
/// the feeds show it.
pub async fn event_counts(app: &TestApp) -> HashMap<(String, String), usize> {
    let js = app.js().await;
    let stream = js
        .get_stream(names::EVENTS_STREAM)
        .await
        .expect("events stream");
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let total = stream.get_info().await.expect("info").state.messages;
    let mut counts = HashMap::new();
    let mut messages = consumer.messages().await.expect("messages");
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .expect("event");
        let parts: Vec<&str> = m.subject.split('.').collect();
        *counts
            .entry((parts[2].to_string(), parts[3].to_string()))
            .or_insert(0) += 1;
        let implied = serde_json::from_slice::<jetmill_proto::JobEvent>(&m.payload)
            .ok()
            .and_then(|e| e.implied_start());
        if implied.is_some() {
            *counts
                .entry((parts[2].to_string(), "started".to_string()))
                .or_insert(0) += 1;
        }
    }
    counts
}

fn factorial_u128(n: u32) -> u128 {
    (1..=u128::from(n)).product()
}

fn fibonacci_u128(n: u32) -> u128 {
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

#[tokio::test]
async fn two_worker_processes_complete_200_jobs_exactly_once() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process("w1", &["--concurrency", "2"]);
    app.start_worker_process("w2", &["--concurrency", "2"]);

    let mut jobs = Vec::new();
    for i in 0..200u32 {
        let (body, expected) = match i % 3 {
            0 => (
                json!({"kind": "factorial", "input": i % 34}),
                factorial_u128(i % 34).to_string(),
            ),
            1 => (
                json!({"kind": "fibonacci", "input": i % 180}),
                fibonacci_u128(i % 180).to_string(),
            ),
            _ => (
                json!({"kind": "sum", "input": [i, i, -1]}),
                (2 * i64::from(i) - 1).to_string(),
            ),
        };
        jobs.push((app.submit_ok(body).await, expected));
    }
    let mut by_worker: HashMap<String, usize> = HashMap::new();
    for (id, expected) in &jobs {
        let rec = app.wait_finished(id, Duration::from_secs(120)).await;
        assert_eq!(rec["status"], "done", "{rec}");
        assert_eq!(rec["result"].as_str(), Some(expected.as_str()), "{rec}");
        *by_worker
            .entry(rec["worker"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    assert_eq!(by_worker.values().sum::<usize>(), 200);
    assert!(
        by_worker.keys().all(|w| w == "w1" || w == "w2"),
        "{by_worker:?}"
    );
    assert!(
        by_worker.len() == 2,
        "both worker processes should take work: {by_worker:?}"
    );

    let counts = event_counts(&app).await;
    for (id, _) in &jobs {
        assert_eq!(
            counts.get(&(id.clone(), "done".into())),
            Some(&1),
            "job {id} must have exactly one done event"
        );
        assert_eq!(
            counts.get(&(id.clone(), "accepted".into())),
            Some(&1),
            "job {id} accepted once"
        );
    }
    assert_eq!(
        app.stream_messages(names::JOBS_STREAM).await,
        0,
        "every job was acked out of the work queue"
    );
}

#[tokio::test]
async fn a_finished_record_never_goes_back_when_a_job_is_delivered_again() {
    let app = TestApp::spawn().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 30}))
        .await;
    let done = app.wait_finished(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "done");

    // Re-publish the same job (a redelivery in all but name) under a new dedup id.
    let rec: JobRecord = serde_json::from_value(done.clone()).expect("record");
    let msg = JobMessage {
        id: rec.id,
        ..JobMessage::new(
            rec.tenant.clone(),
            jetmill_proto::JobSpec::Factorial { n: 30 },
            0,
        )
    };
    let js = app.js().await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{id}-again").as_str());
    js.publish_with_headers(
        names::job_subject(Default::default(), rec.kind),
        headers,
        msg.encode().expect("encode").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");

    // The worker takes it (the work queue empties) and leaves the record as it was.
    let drained = jetmill_testkit::wait_until(Duration::from_secs(30), || async {
        app.stream_messages(names::JOBS_STREAM).await == 0
    })
    .await;
    assert!(drained, "the duplicate delivery must be acked");
    let after = app.get_job(&id).await;
    assert_eq!(after, done, "a finished record is never rewritten");
    let counts = event_counts(&app).await;
    assert_eq!(counts.get(&(id.clone(), "done".into())), Some(&1));
    assert_eq!(
        counts.get(&(id.clone(), "started".into())),
        Some(&1),
        "the duplicate never started a second attempt"
    );
}

/// Read `/v1/activity` until `ok` holds for its samples, or fail after `within`.
async fn wait_activity(
    app: &TestApp,
    within: Duration,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let body: Value = reqwest::get(app.url("/v1/activity"))
            .await
            .expect("GET /v1/activity")
            .json()
            .await
            .expect("activity JSON");
        let samples = body["samples"].as_array().cloned().unwrap_or_default();
        if ok(&samples) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "activity never showed {what} within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_activity_history_shows_a_backlog_build_up_and_drain_with_the_workers_that_did_it() {
    let app = TestApp::gateway_with(|g| g.activity_interval_ms = 100).await;
    // No worker yet: 40 jobs wait, and the samples say so.
    for i in 0..40u32 {
        app.submit_ok(json!({"kind": "factorial", "input": 100 + i}))
            .await;
    }
    let n = |s: &Value, k: &str| s[k].as_f64().unwrap_or(-1.0);
    let backlog = wait_activity(
        &app,
        Duration::from_secs(10),
        "a backlog of 40 and no workers",
        |s| {
            s.iter()
                .any(|s| n(s, "queue_depth") >= 40.0 && n(s, "workers") == 0.0)
        },
    )
    .await;
    assert!(
        backlog.iter().all(|s| n(s, "finished_per_sec") <= 0.0),
        "nothing finished yet: {backlog:?}"
    );

    // A worker arrives: the queue drains, jobs/s goes above 0, one live worker, and the
    // rates add up (integrated over the samples) to the 40 jobs.
    let finished = |s: &[Value]| -> f64 {
        s.windows(2)
            .map(|w| {
                n(&w[1], "finished_per_sec").max(0.0) * (n(&w[1], "at_ms") - n(&w[0], "at_ms"))
                    / 1000.0
            })
            .sum()
    };
    app.start_worker_in_process(crate::helpers::worker_args(app.nats.url()));
    let drained = wait_activity(
        &app,
        Duration::from_secs(30),
        "the backlog drained by one worker",
        |s| {
            (finished(s) - 40.0).abs() < 0.01
                && s.last()
                    .is_some_and(|l| n(l, "queue_depth") == 0.0 && n(l, "workers") == 1.0)
        },
    )
    .await;
    assert!(drained.iter().any(|s| n(s, "finished_per_sec") > 0.0));
    // Samples are in time order, one interval apart or more.
    let times: Vec<f64> = drained.iter().map(|s| n(s, "at_ms")).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 90.0), "{times:?}");
    assert!(drained.iter().any(|s| n(s, "slots") >= 1.0));
}
