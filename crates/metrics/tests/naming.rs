//! The exposition parses as Prometheus text and follows the naming conventions:
//! counters end in `_total`, durations in `_seconds`, and only bounded labels appear.

use jetmill_metrics::{Metrics, Outcome};
use prometheus_parse::{Scrape, Value};
use std::time::Duration;

fn exposition(m: &Metrics) -> String {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, m.registry()).expect("encode");
    body
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

const ALLOWED_LABELS: [&str; 8] = [
    "kind", "outcome", "method", "route", "status", "stream", "consumer", "le",
];

fn check_conventions(scrape: &Scrape) {
    assert!(!scrape.samples.is_empty());
    for s in &scrape.samples {
        assert!(s.metric.starts_with("jetmill_"), "{}", s.metric);
        match &s.value {
            Value::Counter(_) => assert!(s.metric.ends_with("_total"), "{}", s.metric),
            Value::Histogram(_) => assert!(s.metric.ends_with("_seconds"), "{}", s.metric),
            _ => {}
        }
        for (k, _) in s.labels.iter() {
            assert!(
                ALLOWED_LABELS.contains(&k.as_str()),
                "{} has label {k}",
                s.metric
            );
        }
    }
}

/// Sum of the samples of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn worker_metrics_follow_prometheus_conventions() {
    let m = Metrics::worker();
    let held = m.jobs.started("factorial", 2, Duration::from_millis(30));
    m.jobs.ran("factorial", Duration::from_millis(5));
    m.jobs.finished("factorial", Outcome::Done);
    m.jobs.retried("sum");
    m.jobs.finished("sum", Outcome::Failed);
    let text = exposition(&m);
    let scrape = parse(&text);
    check_conventions(&scrape);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| matches!(s.value, Value::Histogram(_))),
        "histograms are parsed as such, so their names were checked"
    );

    let got = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);
    assert_eq!(got("jetmill_jobs_in_flight", &[]), 1.0);
    assert_eq!(
        got("jetmill_jobs_finished_total", &[("outcome", "done")]),
        1.0
    );
    assert_eq!(
        got("jetmill_jobs_dead_lettered_total", &[("kind", "sum")]),
        1.0
    );
    assert_eq!(got("jetmill_job_redeliveries_total", &[]), 1.0);
    assert_eq!(got("jetmill_job_retries_total", &[("kind", "sum")]), 1.0);
    drop(held);
    let after = parse(&exposition(&m));
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "jetmill_jobs_in_flight"));
    assert_eq!(
        value(&after, "jetmill_jobs_in_flight", &[]),
        0.0,
        "the in-flight guard decrements on drop"
    );
    // A worker does not expose the gateway's families.
    assert!(scrape
        .samples
        .iter()
        .all(|s| !s.metric.starts_with("jetmill_http_")));
}

#[test]
fn gateway_metrics_follow_prometheus_conventions() {
    let m = Metrics::gateway();
    m.jobs.submitted("fibonacci");
    m.http
        .observe(&axum::http::Method::POST, "/v1/jobs", 202, 0.003);
    let scrape = parse(&exposition(&m));
    check_conventions(&scrape);
    assert_eq!(
        value(
            &scrape,
            "jetmill_jobs_submitted_total",
            &[("kind", "fibonacci")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "jetmill_http_requests_total",
            &[("route", "/v1/jobs"), ("status", "202")]
        ),
        1.0
    );
    assert!(scrape
        .samples
        .iter()
        .all(|s| !s.metric.starts_with("jetmill_jobs_finished")));
}
