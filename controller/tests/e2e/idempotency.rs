//! `Idempotency-Key`: one job per key, whichever gateway instance a retry reaches,
//! and after the gateway that took the first request is gone.

use crate::helpers::{start_gateway, TestApp};
use futures::future::join_all;
use jetmill_proto::names;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// POST a job to `base` with an `Idempotency-Key`; returns (status, replayed header, body).
async fn submit_keyed(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let resp = http
        .post(format!("{base}/v1/jobs"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("POST /v1/jobs");
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, replayed, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_retried_submit_returns_the_same_job_on_any_gateway_and_after_a_restart() {
    let app = TestApp::gateway_only().await;
    let first_gateway = CancellationToken::new();
    let a = start_gateway(app.nats.url(), &first_gateway, |_| {}).await;
    let b = app.base.clone();
    let body = json!({"kind": "factorial", "input": 12});

    let (status, replayed, first) = submit_keyed(&app.http, &a, "order-1", &body).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(replayed, None);
    let id = first["id"].as_str().expect("id").to_string();

    // The retry lands on the other instance: same job, 200, nothing new queued.
    let (status, replayed, again) = submit_keyed(&app.http, &b, "order-1", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["status"], "pending");

    // The gateway that took the first request stops; a new one still knows the key.
    first_gateway.cancel();
    let restart = CancellationToken::new();
    let c = start_gateway(app.nats.url(), &restart, |_| {}).await;
    let (status, _, again) = submit_keyed(&app.http, &c, "order-1", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    restart.cancel();

    // Another key is another job.
    let (status, _, other) = submit_keyed(&app.http, &b, "order-2", &body).await;
    assert_eq!(status, 202, "{other}");
    assert_ne!(other["id"], id.as_str());
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_naming_the_header() {
    let app = TestApp::gateway_only().await;
    let (status, _, _) = submit_keyed(
        &app.http,
        &app.base,
        "k",
        &json!({"kind": "factorial", "input": 5}),
    )
    .await;
    assert_eq!(status, 202);
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .header("Idempotency-Key", "k")
        .json(&json!({"kind": "factorial", "input": 6}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Value = resp.json().await.expect("problem json");
    assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
    assert_eq!(problem["status"], 422);

    // An unusable key is a 400 naming the header; nothing is queued for it.
    let long = "x".repeat(300);
    let (status, _, problem) = submit_keyed(
        &app.http,
        &app.base,
        &long,
        &json!({"kind": "factorial", "input": 5}),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "Idempotency-Key");
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 1);
}

#[tokio::test]
async fn concurrent_retries_on_two_gateways_create_one_job() {
    let app = TestApp::gateway_only().await;
    let other = start_gateway(app.nats.url(), &app.shutdown, |_| {}).await;
    let body = json!({"kind": "fibonacci", "input": 50});
    let attempts = (0..10).map(|i| {
        let base = if i % 2 == 0 { &app.base } else { &other };
        submit_keyed(&app.http, base, "race", &body)
    });
    let answers = join_all(attempts).await;
    let created = answers.iter().filter(|(s, _, _)| *s == 202).count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _, _)| *s == 200 || *s == 202),
        "{answers:?}"
    );
    let ids: std::collections::HashSet<&Value> = answers.iter().map(|(_, _, b)| &b["id"]).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 1);
}
