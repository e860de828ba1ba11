//! `GET /v1/usage`: per-tenant counters of submitted, done, failed, cancelled and
//! in-flight jobs, kept from the lifecycle events.

use crate::helpers::{start_gateway, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

async fn usage(app: &TestApp) -> Value {
    let resp = app
        .http
        .get(app.url("/v1/usage"))
        .send()
        .await
        .expect("GET /v1/usage");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("usage json")
}

#[tokio::test]
async fn usage_counts_submitted_done_failed_cancelled_and_in_flight() {
    let mut app = TestApp::gateway_only().await;
    assert_eq!(usage(&app).await["submitted"], 0);
    app.start_worker_process("usage", &[]);
    for n in [10, 11] {
        let id = app
            .submit_ok(json!({"kind": "factorial", "input": n}))
            .await;
        assert_eq!(
            app.wait_finished(&id, Duration::from_secs(60)).await["status"],
            "done"
        );
    }
    let doomed = app
        .submit_ok(json!({"kind": "factorial", "input": 12, "max_attempts": 1,
                          "chaos": {"fail_probability": 1.0}}))
        .await;
    assert_eq!(
        app.wait_finished(&doomed, Duration::from_secs(60)).await["status"],
        "failed"
    );
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(10)).await;
    app.submit_ok(json!({"kind": "factorial", "input": 13}))
        .await;
    let cancelled = app
        .submit_ok(json!({"kind": "factorial", "input": 14}))
        .await;
    assert_eq!(app.cancel(&cancelled).await.0, 200);

    let want = json!({"tenant": "public", "submitted": 5, "done": 2, "failed": 1,
                      "cancelled": 1, "in_flight": 1});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = usage(&app).await;
        if got == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let resp = app
        .http
        .get(app.url("/v1/usage?tenant=someone-else"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn usage_is_counted_with_listings_scanning_and_across_two_gateways() {
    // `--list-index false` only changes how listings are served: usage still counts.
    let mut app = TestApp::gateway_with(|g| g.list_index = false).await;
    app.start_worker_process("usage2", &[]);
    let mut ids = Vec::new();
    for n in 20..30 {
        ids.push(
            app.submit_ok(json!({"kind": "factorial", "input": n}))
                .await,
        );
    }
    for id in &ids {
        assert_eq!(
            app.wait_finished(id, Duration::from_secs(60)).await["status"],
            "done"
        );
    }
    // Every job acknowledged before the request is counted: no waiting needed.
    let want = json!({"tenant": "public", "submitted": 10, "done": 10, "failed": 0,
                      "cancelled": 0, "in_flight": 0});
    assert_eq!(usage(&app).await, want);
    // A second gateway on the same NATS counts the same jobs, once.
    let other = start_gateway(app.nats.url(), &app.shutdown, |_| {}).await;
    let resp = app
        .http
        .get(format!("{other}/v1/usage"))
        .send()
        .await
        .expect("GET /v1/usage on the second gateway");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.expect("usage json"), want);
}
