//! A kind the operator disabled in KV `config` is refused by every gateway with a
//! 503 naming the kind, and accepted again once enabled; gateways follow the change.

use crate::helpers::{start_gateway, TestApp};
use jetmill_proto::{names, JobKind};
use serde_json::{json, Value};
use std::time::Duration;

/// Submit until the status is `want` (the gateway follows config asynchronously).
async fn submit_until(app: &TestApp, base: &str, body: &Value, want: u16) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = app
            .http
            .post(format!("{base}/v1/jobs"))
            .json(body)
            .send()
            .await
            .expect("POST /v1/jobs");
        let status = resp.status().as_u16();
        if status == want {
            return resp;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status} instead of {want}: {}",
            resp.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn set_disabled(app: &TestApp, kinds: Vec<JobKind>) {
    let config = app
        .js()
        .await
        .get_key_value(names::CONFIG_BUCKET)
        .await
        .expect("config bucket");
    jetmill_natsx::control::update(&config, None, |c| c.disabled_kinds = kinds.clone())
        .await
        .expect("write config");
}

#[tokio::test]
async fn disabling_a_kind_refuses_its_submits_with_503_until_enabled_again() {
    let app = TestApp::gateway_only().await;
    let fib = json!({"kind": "fibonacci", "input": 30});
    app.submit_ok(fib.clone()).await;

    set_disabled(&app, vec![JobKind::Fibonacci]).await;
    let resp = submit_until(&app, &app.base, &fib, 503).await;
    assert!(resp.headers().contains_key(reqwest::header::RETRY_AFTER));
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Value = resp.json().await.expect("problem json");
    assert_eq!(problem["kind"], "fibonacci", "{problem}");
    assert_eq!(problem["field"], "kind", "{problem}");
    assert_eq!(problem["status"], 503);
    // Other kinds are unaffected.
    app.submit_ok(json!({"kind": "factorial", "input": 30}))
        .await;

    // A gateway started while the kind is disabled refuses it from its first request.
    let late = start_gateway(app.nats.url(), &app.shutdown, |_| {}).await;
    let resp = app
        .http
        .post(format!("{late}/v1/jobs"))
        .json(&fib)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 503);

    let queued = app.stream_messages(names::JOBS_STREAM).await;
    set_disabled(&app, vec![]).await;
    submit_until(&app, &app.base, &fib, 202).await;
    submit_until(&app, &late, &fib, 202).await;
    // No refused submit reached the queue.
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, queued + 2);
}
