//! Retention: finished jobs' records and results expire after `--retention` (here 2 s)
//! or the job's own `retention`, by the broker's per-message TTL; listings follow;
//! running jobs are untouched.

use crate::helpers::{worker_args, TestApp};
use jetmill_proto::names;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn status_of(app: &TestApp, id: &str) -> u16 {
    app.http
        .get(app.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .expect("GET")
        .status()
        .as_u16()
}

async fn listed(app: &TestApp) -> Vec<String> {
    let page: Value = app
        .http
        .get(app.url("/v1/jobs?limit=1000"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    page["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn finished_jobs_and_their_results_expire_after_the_retention_and_running_ones_stay() {
    let retention = Duration::from_secs(2);
    let app = TestApp::gateway_with(|g| g.queue.retention = retention).await;
    let mut worker = worker_args(app.nats.url());
    worker.queue.retention = retention;
    app.start_worker_in_process(worker);

    // Runs through the whole test (20 s): untouched by the retention.
    let running = app
        .submit_ok(json!({"kind": "factorial", "input": 5, "chaos": {"delay_ms": 20000}}))
        .await;
    let small = app
        .submit_ok(json!({"kind": "factorial", "input": 10}))
        .await;
    // 20000! has 77,338 digits: an Object Store result.
    let big = app
        .submit_ok(json!({"kind": "factorial", "input": 20000}))
        .await;
    let kept = app
        .submit_ok(json!({"kind": "factorial", "input": 11, "retention": "1h"}))
        .await;
    for id in [&small, &big, &kept] {
        let rec = app.wait_finished(id, WAIT).await;
        assert_eq!(rec["status"], "done", "{rec}");
    }
    assert_eq!(app.get_job(&kept).await["retention_secs"], 3600);
    let object = names::result_object(&big.parse().expect("id"));
    let results = app
        .js()
        .await
        .get_object_store(names::RESULTS_BUCKET)
        .await
        .expect("results bucket");
    assert!(
        results.info(object.as_str()).await.is_ok(),
        "the big result is stored"
    );
    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{big}/result")))
        .send()
        .await
        .expect("GET result");
    assert_eq!(resp.status().as_u16(), 200);

    // Gone: records (404), the listing, and the result object.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let gone = status_of(&app, &small).await == 404 && status_of(&app, &big).await == 404;
        let list = listed(&app).await;
        if gone && !list.contains(&small) && !list.contains(&big) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "finished jobs still there after {retention:?} + 30 s: listed {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        results.info(object.as_str()).await.is_err(),
        "the result object expired with its record"
    );
    // Kept: its own retention; running: untouched.
    let rec = app.get_job(&kept).await;
    assert_eq!(rec["status"], "done", "{rec}");
    let rec = app.get_job(&running).await;
    assert_eq!(rec["status"], "running", "{rec}");
    let list = listed(&app).await;
    assert!(list.contains(&kept) && list.contains(&running), "{list:?}");
}
