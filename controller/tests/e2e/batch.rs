//! `POST /v1/jobs/batch`, `GET`/`DELETE /v1/batches/{id}`, `GET /v1/jobs?batch=` and
//! `jetmill jobs submit --from`: many jobs in one request, answered per item.

use crate::helpers::TestApp;
use jetmill_proto::names;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// POST a batch (a JSON value as the body); returns (status, body).
async fn submit_batch(app: &TestApp, body: &Value) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .json(body)
        .send()
        .await
        .expect("POST /v1/jobs/batch");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// GET a URL of the app; returns (status, body).
async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.http.get(app.url(path)).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Ids of the accepted items of a batch answer, in request order.
fn ids(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

/// Long-poll the batch until `done`; panics after `timeout`.
async fn wait_batch_done(app: &TestApp, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, batch) = get(app, &format!("/v1/batches/{id}?wait=10s")).await;
        assert_eq!(status, 200, "{batch}");
        if batch["done"] == true {
            return batch;
        }
        assert!(
            Instant::now() < deadline,
            "batch {id} not done within {timeout:?}: {batch}"
        );
    }
}

#[tokio::test]
async fn a_batch_of_a_thousand_jobs_runs_every_job_to_done() {
    let app = TestApp::spawn().await;
    let specs: Vec<Value> = (0..1000)
        .map(|i| json!({"kind": "factorial", "input": 10 + i % 90}))
        .collect();
    let started = Instant::now();
    let (status, answer) = submit_batch(&app, &Value::Array(specs)).await;
    let took = started.elapsed();
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 1000);
    assert_eq!(answer["rejected"], 0);
    let job_ids = ids(&answer);
    assert_eq!(job_ids.len(), 1000);
    let distinct: std::collections::HashSet<&String> = job_ids.iter().collect();
    assert_eq!(distinct.len(), 1000, "every item has its own job");
    let batch_id = answer["id"].as_str().expect("batch id");
    assert!(
        batch_id
            .parse::<jetmill_proto::JobId>()
            .is_ok_and(|id| id.0.get_version_num() == 7),
        "batch ids are UUIDv7: {batch_id}"
    );
    eprintln!("1000-job batch answered in {took:?}");

    let batch = wait_batch_done(&app, batch_id, Duration::from_secs(120)).await;
    assert_eq!(batch["total"], 1000, "{batch}");
    assert_eq!(batch["counts"]["done"], 1000, "{batch}");
    assert_eq!(batch["counts"]["failed"], 0, "{batch}");
    // Each record names its batch and has the right result.
    let record = app.get_job(&job_ids[7]).await;
    assert_eq!(record["batch"], batch_id);
    assert_eq!(record["status"], "done");
    assert_eq!(record["result"], "355687428096000", "17!");
}

#[tokio::test]
async fn invalid_items_are_answered_per_item_and_only_valid_ones_are_published() {
    // No worker: whatever is published stays in JOBS to be counted.
    let app = TestApp::gateway_only().await;
    let body = json!([
        {"kind": "factorial", "input": 5},
        {"kind": "factorial", "input": "five"},
        {"kind": "quadratic", "input": 1},
        {"kind": "fibonacci", "input": 30},
        {"kind": "factorial", "input": 5, "colour": "red"},
        "not an object",
    ]);
    let (status, answer) = submit_batch(&app, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"], 4, "{answer}");
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), 6);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["index"], i, "{item}");
    }
    assert!(items[0]["id"].is_string() && items[3]["id"].is_string());
    assert_eq!(items[0]["status"], "pending");
    let problem = |i: usize, field: &str| {
        let item = &items[i];
        assert!(item["id"].is_null(), "{item}");
        assert_eq!(item["problem"], "invalid-field", "{item}");
        assert_eq!(item["code"], 422, "{item}");
        assert_eq!(item["field"], field, "{item}");
        assert!(
            item["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{item}"
        );
    };
    problem(1, "input");
    problem(2, "kind");
    problem(4, "colour");
    problem(5, "body");

    assert_eq!(
        app.stream_messages(names::JOBS_STREAM).await,
        2,
        "only the valid items are published"
    );
    let (_, batch) = get(&app, answer["status_url"].as_str().expect("status_url")).await;
    assert_eq!(batch["total"], 2, "{batch}");
    assert_eq!(batch["rejected"], 4, "{batch}");
    assert_eq!(batch["counts"]["pending"], 2, "{batch}");
    assert_eq!(batch["done"], false);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_whole_batch() {
    let app = TestApp::gateway_only().await;
    let body = json!([
        {"kind": "factorial", "input": 11},
        {"kind": "sum", "input": [1, 2]},
        {"kind": "factorial", "input": -1},
    ]);
    let post = |body: Value| {
        app.http
            .post(app.url("/v1/jobs/batch"))
            .header("Idempotency-Key", "nightly-2026-12-01")
            .json(&body)
            .send()
    };
    let first = post(body.clone()).await.expect("first");
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().await.expect("json");

    let again = post(body.clone()).await.expect("again");
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], first["id"], "same batch");
    assert_eq!(ids(&again), ids(&first), "same job ids");
    assert_eq!(again["items"], first["items"], "same answer per item");
    assert_eq!(
        app.stream_messages(names::JOBS_STREAM).await,
        2,
        "nothing queued twice"
    );

    let other = post(json!([{"kind": "factorial", "input": 12}]))
        .await
        .expect("other");
    assert_eq!(other.status().as_u16(), 422);
    let problem: Value = other.json().await.expect("json");
    assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 2);
}

#[tokio::test]
async fn batch_status_long_polls_until_every_job_has_ended() {
    let app = TestApp::spawn().await;
    let specs: Vec<Value> = (0..5)
        .map(|i| json!({"kind": "factorial", "input": 20 + i, "chaos": {"delay_ms": 1500}}))
        .collect();
    let (status, answer) = submit_batch(&app, &Value::Array(specs)).await;
    assert_eq!(status, 202, "{answer}");
    let url = answer["status_url"]
        .as_str()
        .expect("status_url")
        .to_string();

    let (_, now) = get(&app, &url).await;
    assert_eq!(now["done"], false, "the jobs take 1.5 s each: {now}");
    assert_eq!(now["total"], 5);

    let started = Instant::now();
    let (status, waited) = get(&app, &format!("{url}?wait=30s")).await;
    assert_eq!(status, 200, "{waited}");
    assert_eq!(waited["done"], true, "{waited}");
    assert_eq!(waited["counts"]["done"], 5, "{waited}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "answered when the jobs ended, not at the end of the wait"
    );

    let (status, problem) = get(&app, &format!("{url}?wait=soon")).await;
    assert_eq!(status, 400);
    assert_eq!(problem["field"], "wait");
    let (status, _) = get(&app, "/v1/batches/not-a-uuid").await;
    assert_eq!(status, 400);
    let (status, _) = get(
        &app,
        &format!("/v1/batches/{}", jetmill_proto::JobId::new()),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_jobs_of_a_batch_are_listed_with_the_batch_filter() {
    let app = TestApp::gateway_only().await;
    app.submit_ok(json!({"kind": "factorial", "input": 3}))
        .await;
    let specs: Vec<Value> = (0..5)
        .map(|i| json!({"kind": "factorial", "input": 40 + i}))
        .collect();
    let (_, answer) = submit_batch(&app, &Value::Array(specs)).await;
    let batch_id = answer["id"].as_str().expect("id").to_string();
    let mut expected = ids(&answer);
    expected.sort_unstable_by(|a, b| b.cmp(a));
    app.submit_ok(json!({"kind": "factorial", "input": 4}))
        .await;

    // Two per page, newest first, only the batch's jobs.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let mut path = format!("/v1/jobs?batch={batch_id}&limit=2");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = get(&app, &path).await;
        assert_eq!(status, 200, "{page}");
        for job in page["jobs"].as_array().expect("jobs") {
            assert_eq!(job["batch"], batch_id.as_str());
            listed.push(job["id"].as_str().expect("id").to_string());
        }
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(listed, expected);

    let (_, done) = get(&app, &format!("/v1/jobs?batch={batch_id}&status=done")).await;
    assert_eq!(done["jobs"], json!([]), "a status filter applies too");
    let (status, problem) = get(&app, "/v1/jobs?batch=nope").await;
    assert_eq!(status, 400);
    assert_eq!(problem["field"], "batch");
}

#[tokio::test]
async fn a_batch_belongs_to_its_tenant() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "k-acme-123 acme\nk-globex-456 globex\n").expect("keys");
    let app = TestApp::gateway_with(|a| a.auth.api_keys = Some(keys)).await;
    let resp = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .bearer_auth("k-acme-123")
        .json(&json!([{"kind": "factorial", "input": 9}]))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    let id = answer["id"].as_str().expect("id");
    let as_tenant = |token: &str, req: reqwest::RequestBuilder| {
        let token = token.to_string();
        async move {
            req.bearer_auth(token)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    let url = app.url(&format!("/v1/batches/{id}"));
    assert_eq!(as_tenant("k-acme-123", app.http.get(&url)).await, 200);
    assert_eq!(as_tenant("k-globex-456", app.http.get(&url)).await, 404);
    assert_eq!(as_tenant("k-globex-456", app.http.delete(&url)).await, 404);
    let list = app.url(&format!("/v1/jobs?batch={id}"));
    assert_eq!(as_tenant("k-globex-456", app.http.get(&list)).await, 404);
    assert_eq!(
        app.http
            .get(&url)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16(),
        401
    );
}

#[tokio::test]
async fn cancelling_a_batch_cancels_every_queued_job() {
    // No worker: every job stays queued until the batch is cancelled.
    let mut app = TestApp::gateway_only().await;
    let specs: Vec<Value> = (0..20)
        .map(|i| json!({"kind": "factorial", "input": 100 + i}))
        .collect();
    let (_, answer) = submit_batch(&app, &Value::Array(specs)).await;
    let job_ids = ids(&answer);
    let url = app.url(answer["status_url"].as_str().expect("status_url"));

    let resp = app.http.delete(&url).send().await.expect("DELETE");
    assert_eq!(resp.status().as_u16(), 200);
    let status: Value = resp.json().await.expect("json");
    assert_eq!(status["cancelled_now"], 20, "{status}");
    assert_eq!(status["counts"]["cancelled"], 20, "{status}");
    assert_eq!(status["done"], true, "{status}");
    for id in &job_ids {
        let record = app.get_job(id).await;
        assert_eq!(record["status"], "cancelled", "{record}");
        let events = app.events_of(id).await;
        assert!(
            events.iter().any(|e| e["type"] == "cancelled"),
            "a cancelled event as for a single cancel: {events:?}"
        );
    }
    // Again: nothing left to cancel, and that is not an error.
    let again: Value = app
        .http
        .delete(&url)
        .send()
        .await
        .expect("DELETE")
        .json()
        .await
        .expect("json");
    assert_eq!(again["cancelled_now"], 0, "{again}");

    // A worker that starts now drops the cancelled jobs without running them.
    app.start_worker_process("batch-cancel", &[]);
    app.workers[0].wait_started().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.stream_messages(names::JOBS_STREAM).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the queued jobs were not dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &job_ids {
        assert_eq!(app.get_job(id).await["status"], "cancelled");
    }
}

#[tokio::test]
async fn malformed_empty_and_oversized_batches_are_refused_whole() {
    let app = TestApp::gateway_only().await;
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"kind": "factorial", "input": 5}))
        .collect();
    let (status, problem) = submit_batch(&app, &Value::Array(too_many)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "body");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("1001")),
        "{problem}"
    );

    let (status, problem) = submit_batch(&app, &json!([])).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "body");

    let (status, problem) = submit_batch(&app, &json!({"kind": "factorial", "input": 5})).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "body");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("array")),
        "{problem}"
    );

    let resp = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .header("Content-Type", "application/json")
        .body("[{\"kind\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 0);

    // NDJSON: a line that is not JSON is that item's problem only.
    let resp = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .header("Content-Type", "application/x-ndjson")
        .body("{\"kind\":\"factorial\",\"input\":5}\n{oops\n\n{\"kind\":\"sum\",\"input\":[1,2]}\n")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["items"][1]["problem"], "malformed-json", "{answer}");
    assert_eq!(answer["items"][1]["code"], 400, "{answer}");
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 2);
}

#[tokio::test]
async fn jobs_submit_from_a_file_sends_batches_of_a_thousand_and_prints_the_ids() {
    let app = TestApp::gateway_only().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("jobs.ndjson");
    let mut lines: Vec<String> = (0..1500)
        .map(|i| json!({"kind": "factorial", "input": 1 + i % 100}).to_string())
        .collect();
    lines.insert(10, String::new());
    lines[700] = json!({"kind": "factorial", "input": "lots"}).to_string();
    std::fs::write(&file, lines.join("\n")).expect("write jobs");

    let run = |json: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"));
        cmd.args(["jobs", "submit", "--from"])
            .arg(&file)
            .args(["--gateway", &app.base])
            .env_remove("JETMILL_TOKEN");
        if json {
            cmd.arg("--json");
        }
        cmd.output()
    };
    let out = run(false).await.expect("run jetmill");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a refused line makes the exit status 1"
    );
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        printed.len(),
        1499,
        "one id per accepted line; stderr: {stderr}"
    );
    assert!(printed
        .iter()
        .all(|id| id.parse::<jetmill_proto::JobId>().is_ok()));
    assert!(
        stderr.contains("line 701: input:"),
        "the refused line by its number: {stderr}"
    );
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 1499);
    let record = app.get_job(printed[1200]).await;
    assert!(record["batch"].is_string(), "{record}");

    let out = run(true).await.expect("run jetmill --json");
    let answers: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let answers = answers.as_array().expect("an array");
    assert_eq!(answers.len(), 1500);
    let batches: std::collections::HashSet<&str> =
        answers.iter().filter_map(|a| a["batch"].as_str()).collect();
    assert_eq!(batches.len(), 2, "1500 lines go in two requests");
    let refused: Vec<&Value> = answers.iter().filter(|a| a["id"].is_null()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["line"], 701);
    assert_eq!(refused[0]["field"], "input");
}

#[tokio::test]
async fn each_item_is_admitted_as_a_single_submit_would_be() {
    let mut app = TestApp::gateway_with(|g| {
        g.result_cache = true;
        g.queue.max_queued = 3;
    })
    .await;
    app.start_worker_process("batch-admit", &[]);
    app.workers[0].wait_started().await;
    // A finished job for the result cache to answer from.
    let first = app
        .submit_ok(json!({"kind": "factorial", "input": 12}))
        .await;
    app.wait_finished(&first, Duration::from_secs(30)).await;
    // Stop the worker so what is queued stays queued, and disable fibonacci.
    app.workers.clear();
    let config = app
        .js()
        .await
        .get_key_value(names::CONFIG_BUCKET)
        .await
        .expect("config bucket");
    jetmill_natsx::control::update(&config, None, |c| {
        c.disabled_kinds = vec![jetmill_proto::JobKind::Fibonacci]
    })
    .await
    .expect("disable fibonacci");
    let fib = json!({"kind": "fibonacci", "input": 10});
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.submit(&fib).await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "the gateway never saw the disabled kind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Fibonacci jobs accepted before the gateway saw the change are queued too.
    let room = 3 - app.stream_messages(names::JOBS_STREAM).await as usize;
    assert!(room >= 1, "the queue has room for a fresh job");
    let body = json!([
        {"kind": "factorial", "input": 12},
        {"kind": "fibonacci", "input": 10},
        {"kind": "factorial", "input": 200},
        {"kind": "factorial", "input": 201},
        {"kind": "factorial", "input": 202},
        {"kind": "factorial", "input": 203},
    ]);
    let (status, answer) = submit_batch(&app, &body).await;
    assert_eq!(status, 202, "{answer}");
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items[0]["status"], "done", "a cache hit: {answer}");
    assert_eq!(items[0]["cached"], true, "{answer}");
    assert_eq!(items[1]["problem"], "kind-disabled", "{answer}");
    assert_eq!(items[1]["code"], 503, "{answer}");
    assert_eq!(items[1]["field"], "kind", "{answer}");
    // The queue holds 3: fresh jobs fit while there is room, the rest find it full.
    let queued: Vec<&Value> = items[2..].iter().filter(|i| i["id"].is_string()).collect();
    let full: Vec<&Value> = items[2..].iter().filter(|i| i["id"].is_null()).collect();
    assert_eq!((queued.len(), full.len()), (room, 4 - room), "{answer}");
    assert_eq!(full[0]["problem"], "too-many-requests", "{answer}");
    assert_eq!(full[0]["code"], 429, "{answer}");
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 3);
    let cached = app.get_job(items[0]["id"].as_str().expect("id")).await;
    assert_eq!(cached["cached"], true);
    assert_eq!(cached["result"], "479001600");
}

#[tokio::test]
async fn a_batch_takes_only_the_room_left_in_the_tenant_quota() {
    let app = TestApp::gateway_with(|g| g.max_in_flight_per_tenant = 3).await;
    let specs: Vec<Value> = (0..5)
        .map(|i| json!({"kind": "factorial", "input": 60 + i}))
        .collect();
    let (status, answer) = submit_batch(&app, &Value::Array(specs)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 3, "{answer}");
    let items = answer["items"].as_array().expect("items");
    assert!(items[..3].iter().all(|i| i["id"].is_string()), "{answer}");
    for item in &items[3..] {
        assert_eq!(item["problem"], "too-many-requests", "{answer}");
        assert_eq!(item["code"], 429, "{answer}");
        assert!(
            item["message"]
                .as_str()
                .is_some_and(|m| m.contains("at most 3")),
            "{answer}"
        );
    }
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 3);
}

#[tokio::test]
async fn a_batch_whose_gateway_died_before_storing_it_is_submitted_again_by_the_retry() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process("heal", &[]);
    let body = json!([{"kind": "factorial", "input": 15}, {"kind": "factorial", "input": 16}]);
    let post = || {
        app.http
            .post(app.url("/v1/jobs/batch"))
            .header("Idempotency-Key", "died-mid-batch")
            .json(&body)
            .send()
    };
    let first: Value = post().await.expect("first").json().await.expect("json");
    let batch = first["id"].as_str().expect("batch id").to_string();
    // What a gateway killed between its claim and storing the batch leaves behind: the
    // claim (made a while ago) and no batch record.
    let js = app.js().await;
    let batches = js.get_key_value("batches").await.expect("batches bucket");
    batches
        .purge(format!("public.{batch}"))
        .await
        .expect("drop the batch record");
    let claims = js
        .get_key_value("idempotency")
        .await
        .expect("claims bucket");
    let mut keys = claims.keys().await.expect("claim keys");
    let key = futures::StreamExt::next(&mut keys)
        .await
        .expect("one claim")
        .expect("claim key");
    let mut entry: Value =
        serde_json::from_slice(&claims.get(&key).await.expect("get").expect("claim"))
            .expect("claim json");
    entry["claimed_at_ms"] = json!(jetmill_proto::now_ms() - 60_000);
    claims
        .put(&key, serde_json::to_vec(&entry).expect("json").into())
        .await
        .expect("backdate the claim");

    // The client's retry must not be told "still being submitted" forever.
    let again = post().await.expect("retry");
    assert_eq!(again.status().as_u16(), 202, "the retry submits it again");
    let again: Value = again.json().await.expect("json");
    assert_eq!(
        again["id"],
        batch.as_str(),
        "under the batch id the client was given"
    );
    let done = wait_batch_done(&app, &batch, Duration::from_secs(60)).await;
    assert_eq!(done["counts"]["done"], 2, "{done}");
    // And a third call is a plain replay of the stored batch.
    let third = post().await.expect("third");
    assert_eq!(third.status().as_u16(), 200);
}
