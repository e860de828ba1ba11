//! `GET /v1/usage`: per-tenant counters of submitted, done, failed, cancelled and
//! in-flight jobs, kept from the lifecycle events.

use crate::helpers::TestApp;
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
