//! `/metrics` of the gateway and of a worker parse as Prometheus text, and counters
//! move as jobs run.

use crate::helpers::{worker_args, TestApp};
use prometheus_parse::{LineInfo, Scrape, Value};
use serde_json::json;
use std::time::Duration;

/// Scrape `url`, check every line is understood, and parse it.
pub async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let resp = http.get(url).send().await.expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    let text = resp.text().await.expect("body");
    for line in text.lines() {
        let known = !matches!(LineInfo::parse(line), LineInfo::Ignored)
            || line == "# EOF"
            || line.starts_with("# UNIT");
        assert!(known, "unparsable metrics line {line:?} in:\n{text}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// Sum of the samples of `metric` whose labels include all of `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_counters_move_with_jobs() {
    let app = TestApp::gateway_only().await;
    let gateway_metrics = app.url("/metrics");
    // No worker yet: the queue gauge read from JetStream shows the jobs waiting.
    let mut early = Vec::new();
    for n in [3, 4, 5] {
        early.push(
            app.submit_ok(json!({"kind": "factorial", "input": n}))
                .await,
        );
    }
    let queued = scrape(&app.http, &gateway_metrics).await;
    assert_eq!(
        sum(&queued, "jetmill_stream_messages", &[("stream", "JOBS")]),
        3.0,
        "queue depth read from JetStream"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    let worker_metrics = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let token = app.shutdown.clone();
    let args = worker_args(app.nats.url());
    tokio::spawn(async move {
        jetmill_worker::run_with(
            args,
            token,
            jetmill_runtime::LogHandle::disabled(),
            Some(listener),
        )
        .await
    });
    for id in &early {
        let rec = app.wait_finished(id, Duration::from_secs(60)).await;
        assert_eq!(rec["status"], "done", "{rec}");
    }

    // The record is written just before the counter moves: wait for the three.
    let done = "jetmill_jobs_finished_total";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let w0 = loop {
        let w = scrape(&app.http, &worker_metrics).await;
        if sum(&w, done, &[("outcome", "done")]) == 3.0 {
            break w;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the early jobs were not counted: {:?}",
            w.samples
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let g0 = scrape(&app.http, &gateway_metrics).await;
    let before = sum(&w0, done, &[("outcome", "done")]);

    let mut ids = Vec::new();
    for i in 0..10u32 {
        let body = match i % 2 {
            0 => json!({"kind": "factorial", "input": i}),
            _ => json!({"kind": "sum", "input": [i, 1]}),
        };
        ids.push(app.submit_ok(body).await);
    }
    for id in &ids {
        let rec = app.wait_finished(id, Duration::from_secs(60)).await;
        assert_eq!(rec["status"], "done", "{rec}");
    }
    // The record is written just before the counter moves; poll the scrape briefly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let w1 = loop {
        let w = scrape(&app.http, &worker_metrics).await;
        let settled = sum(&w, done, &[("outcome", "done")]) - before >= 10.0
            && sum(&w, "jetmill_jobs_in_flight", &[]) == 0.0;
        if settled || tokio::time::Instant::now() > deadline {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sum(&w1, done, &[("outcome", "done")]) - before, 10.0);
    assert_eq!(
        sum(&w1, done, &[("kind", "factorial"), ("outcome", "done")]),
        5.0 + 3.0,
        "five of the ten, and the three early ones"
    );
    assert_eq!(sum(&w1, "jetmill_jobs_in_flight", &[]), 0.0);
    assert_eq!(
        sum(&w1, "jetmill_job_run_duration_seconds_count", &[]),
        13.0,
        "one run observation per job"
    );

    let g1 = scrape(&app.http, &gateway_metrics).await;
    let submitted = "jetmill_jobs_submitted_total";
    assert_eq!(sum(&g1, submitted, &[]) - sum(&g0, submitted, &[]), 10.0);
    assert_eq!(sum(&g1, submitted, &[("kind", "sum")]), 5.0);
    assert!(
        sum(
            &g1,
            "jetmill_http_requests_total",
            &[("route", "/v1/jobs"), ("method", "POST"), ("status", "202")]
        ) >= 10.0
    );
    assert!(
        sum(
            &g1,
            "jetmill_http_requests_total",
            &[("route", "/v1/jobs/:id")]
        ) >= 10.0,
        "reads are labelled by route template, not by job id"
    );
    assert!(g1.samples.iter().all(|s| s
        .labels
        .get("route")
        .is_none_or(|r| !r.contains(ids[0].as_str()))));
    // Queue gauges read from JetStream: everything drained.
    assert_eq!(
        sum(&g1, "jetmill_stream_messages", &[("stream", "JOBS")]),
        0.0
    );
    assert_eq!(
        sum(
            &g1,
            "jetmill_consumer_pending_messages",
            &[("consumer", "workers")]
        ),
        0.0
    );
    assert_eq!(
        sum(
            &g1,
            "jetmill_consumer_ack_pending_messages",
            &[("consumer", "workers")]
        ),
        0.0
    );
    assert!(g1
        .samples
        .iter()
        .any(|s| s.metric == "jetmill_consumer_pending_messages"));
}
