//! Limits: a full queue and a tenant over its quota get 429 with `Retry-After`
//! (the body limit's 413 is tested in validation.rs).

use crate::helpers::TestApp;
use serde_json::{json, Value};
use std::time::Duration;

async fn submit_with(app: &TestApp, key: Option<&str>, n: u64) -> (u16, Option<String>, Value) {
    let mut req = app.http.post(app.url("/v1/jobs"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req
        .json(&json!({"kind": "factorial", "input": n}))
        .send()
        .await
        .expect("POST /v1/jobs");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let app = TestApp::gateway_with(|g| {
        g.queue.max_queued = 2;
        g.busy_retry_after_secs = 7;
    })
    .await;
    for n in [1, 2] {
        assert_eq!(submit_with(&app, None, n).await.0, 202);
    }
    let (status, retry_after, problem) = submit_with(&app, None, 3).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(retry_after.as_deref(), Some("7"));
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["type"], "too-many-requests");
}

#[tokio::test]
async fn a_tenant_over_its_quota_gets_429_while_others_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("api-keys");
    std::fs::write(
        &keys,
        "key-busy-0123456789 busy\nkey-calm-0123456789 calm\n",
    )
    .expect("write api keys");
    let app = TestApp::gateway_with(|g| {
        g.auth.api_keys = Some(keys);
        g.max_in_flight_per_tenant = 2;
    })
    .await;
    let busy = Some("key-busy-0123456789");
    for n in [1, 2] {
        assert_eq!(submit_with(&app, busy, n).await.0, 202);
    }
    // The quota is counted from the gateway's index of the records, so the third is
    // refused once the index has applied the first two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (retry_after, problem) = loop {
        let (status, retry_after, problem) = submit_with(&app, busy, 3).await;
        if status == 429 {
            break (retry_after, problem);
        }
        assert_eq!(status, 202, "{problem}");
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(retry_after.is_some());
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("busy")),
        "{problem}"
    );
    assert_eq!(
        submit_with(&app, Some("key-calm-0123456789"), 4).await.0,
        202
    );
}
