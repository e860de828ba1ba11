//! Retention: finished jobs' records and results expire after `--retention` (here 2 s)
//! or the job's own `retention`, by the broker's per-message TTL; listings follow;
//! running jobs are untouched; and what expired is not run again by a repeated
//! `Idempotency-Key` or a workflow reader.

use crate::helpers::{worker_args, TestApp};
use jetmill_proto::names;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// GET `path`: the status and the JSON answer (`null` if none).
async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.http.get(app.url(path)).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn status_of(app: &TestApp, id: &str) -> u16 {
    get(app, &format!("/v1/jobs/{id}")).await.0
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

/// POST `body` to `path`, with `Idempotency-Key: key` if given: the status and the JSON
/// answer.
async fn post(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = app.http.post(app.url(path)).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Wait until every job of `ids` answers 404 (its record expired).
pub async fn wait_expired(app: &TestApp, ids: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for id in ids {
        while status_of(app, id).await != 404 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} did not expire within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn an_idempotency_key_whose_job_expired_does_not_run_it_again() {
    let app = TestApp::spawn().await;
    let body = json!({"kind": "factorial", "input": 9, "retention": "1s"});
    let (status, first) = post(&app, "/v1/jobs", Some("expires-soon"), &body).await;
    assert_eq!(status, 202, "{first}");
    let id = first["id"].as_str().expect("id").to_string();
    let submitted = tokio::time::Instant::now();
    assert_eq!(app.wait_finished(&id, WAIT).await["status"], "done");
    wait_expired(&app, &[&id]).await;
    // Past the claim's grace too, when a claim without a record is otherwise healed by
    // publishing its job again.
    tokio::time::sleep_until(
        submitted + jetmill_gateway::idempotency::GRACE + Duration::from_secs(1),
    )
    .await;

    let (status, again) = post(&app, "/v1/jobs", Some("expires-soon"), &body).await;
    assert_eq!(status, 409, "{again}");
    let detail = again["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&id) && detail.contains("new Idempotency-Key"),
        "{again}"
    );
    assert_eq!(
        status_of(&app, &id).await,
        404,
        "the finished job was not queued again"
    );
    // A new key runs it again, as a new job.
    let (status, fresh) = post(&app, "/v1/jobs", Some("another-key"), &body).await;
    assert_eq!(status, 202, "{fresh}");
    assert_ne!(fresh["id"], first["id"]);
}

#[tokio::test]
async fn a_workflow_past_its_steps_retention_is_gone_and_its_steps_never_run_again() {
    let app = TestApp::spawn().await;
    let body = json!({"chain": [
        {"kind": "factorial", "input": 7, "retention": "1s"},
        {"kind": "factorial", "input": 8, "retention": "1s"},
    ]});
    let (status, wf) = post(&app, "/v1/workflows", Some("wf-expires-soon"), &body).await;
    assert_eq!(status, 202, "{wf}");
    let submitted = tokio::time::Instant::now();
    let id = wf["id"].as_str().expect("id").to_string();
    let steps: Vec<String> = wf["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["job_id"].as_str().expect("job id").to_string())
        .collect();
    let view = crate::workflows::wait_ended(&app, &id, WAIT).await;
    assert_eq!(view["status"], "done", "{view}");
    wait_expired(&app, &[&steps[0], &steps[1]]).await;
    // Old enough that a reader starts roots it finds without a record (a gateway that
    // died before starting them): an expired root must not be one of them.
    tokio::time::sleep_until(submitted + Duration::from_secs(11)).await;

    let (status, problem) = get(&app, &format!("/v1/workflows/{id}")).await;
    assert_eq!(status, 404);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("retention"),
        "{problem}"
    );
    let (status, again) = post(&app, "/v1/workflows", Some("wf-expires-soon"), &body).await;
    assert_eq!(status, 409, "{again}");
    for step in &steps {
        assert_eq!(status_of(&app, step).await, 404, "step {step} ran again");
    }
}

/// How many messages `stream` holds on subjects matching `filter`.
async fn stored_on(app: &TestApp, stream: &str, filter: &str) -> usize {
    use futures::TryStreamExt;
    let counts: Vec<(String, usize)> = app
        .js()
        .await
        .get_stream(stream)
        .await
        .expect("stream")
        .info_with_subjects(filter)
        .await
        .expect("subjects")
        .try_collect()
        .await
        .expect("subject counts");
    counts.iter().map(|(_, n)| n).sum()
}

/// Messages of workflow `id` (its key, gates and halt) in `KV_workflows`.
async fn workflow_keys(app: &TestApp, id: &str) -> usize {
    stored_on(app, "KV_workflows", &format!("$KV.workflows.*.{id}")).await
        + stored_on(app, "KV_workflows", &format!("$KV.workflows.*.{id}.>")).await
}

#[tokio::test]
async fn the_sweep_removes_workflows_and_batches_whose_jobs_expired_and_keeps_the_rest() {
    let retention = Duration::from_secs(2);
    let app = TestApp::gateway_with(|g| {
        g.queue.retention = retention;
        g.sweep_interval_secs = 1;
    })
    .await;
    let mut worker = worker_args(app.nats.url());
    worker.queue.retention = retention;
    app.start_worker_in_process(worker);

    let post = |path: &'static str, body: Value| {
        let app = &app;
        async move {
            let (status, answer) = post(app, path, None, &body).await;
            assert_eq!(status, 202, "{path}: {answer}");
            answer
        }
    };
    // Its first step runs through the whole test: nothing of it may go.
    let live = post(
        "/v1/workflows",
        json!({"chain": [{"kind": "factorial", "input": 5, "chaos": {"delay_ms": 30000}},
                         {"kind": "factorial", "input": 6}]}),
    )
    .await;
    let finished = post(
        "/v1/workflows",
        json!({"chain": [{"kind": "factorial", "input": 7}, {"kind": "factorial", "input": 8}]}),
    )
    .await;
    let batch = post(
        "/v1/jobs/batch",
        json!([{"kind": "factorial", "input": 9}, {"kind": "factorial", "input": 10}]),
    )
    .await;
    let (live, finished, batch) = (
        live["id"].as_str().expect("id").to_string(),
        finished["id"].as_str().expect("id").to_string(),
        batch["id"].as_str().expect("id").to_string(),
    );
    let batch_key = format!("$KV.batches.*.{batch}");
    // Once done (its records then live 2 s more), the finished workflow's key and its
    // second step's gate are stored.
    let view = crate::workflows::wait_ended(&app, &finished, WAIT).await;
    assert_eq!(view["status"], "done", "{view}");
    assert!(workflow_keys(&app, &finished).await >= 2);
    let swept_after = tokio::time::Instant::now();
    assert_eq!(stored_on(&app, "KV_batches", &batch_key).await, 1);

    let deadline = tokio::time::Instant::now() + WAIT;
    while workflow_keys(&app, &finished).await > 0
        || stored_on(&app, "KV_batches", &batch_key).await > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the finished workflow and batch were not swept within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&app, &format!("/v1/workflows/{finished}")).await.0, 404);
    assert_eq!(get(&app, &format!("/v1/batches/{batch}")).await.0, 404);
    eprintln!(
        "swept {:?} after the finished workflow ended",
        swept_after.elapsed()
    );
    // The live one, swept over many times meanwhile, is whole and still running.
    assert_eq!(
        workflow_keys(&app, &live).await,
        1,
        "its key (no gate marked yet)"
    );
    let (_, view) = get(&app, &format!("/v1/workflows/{live}")).await;
    assert_eq!(view["status"], "running", "{view}");
    let resp = app
        .http
        .delete(app.url(&format!("/v1/workflows/{live}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "the live workflow is cancelled"
    );
}
