//! `POST /v1/workflows`, `GET`/`DELETE /v1/workflows/{id}` and its SSE feed: DAGs of
//! job steps started by whoever finishes a step's last dependency.

use crate::helpers::TestApp;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn submit(app: &TestApp, body: &Value) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/v1/workflows"))
        .json(body)
        .send()
        .await
        .expect("POST /v1/workflows");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn submit_ok(app: &TestApp, body: Value) -> Value {
    let (status, answer) = submit(app, &body).await;
    assert_eq!(status, 202, "{body} -> {answer}");
    answer
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.http.get(app.url(path)).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Long-poll until every step is settled and the workflow ended; panics after `timeout`.
pub async fn wait_ended(app: &TestApp, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, wf) = get(app, &format!("/v1/workflows/{id}?wait=10s")).await;
        assert_eq!(status, 200, "{wf}");
        let settled = wf["steps"].as_array().is_some_and(|s| {
            s.iter().all(|s| {
                matches!(
                    s["status"].as_str(),
                    Some("done" | "failed" | "cancelled" | "skipped")
                )
            })
        });
        if settled && matches!(wf["status"].as_str(), Some("done" | "failed" | "cancelled")) {
            return wf;
        }
        assert!(
            Instant::now() < deadline,
            "workflow {id} did not end within {timeout:?}: {wf}"
        );
    }
}

fn step<'a>(wf: &'a Value, name: &str) -> &'a Value {
    wf["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {wf}"))
}

fn factorial(n: u64) -> String {
    let mut digits = vec![1u32];
    for k in 2..=n {
        let mut carry = 0u64;
        for d in digits.iter_mut() {
            let v = u64::from(*d) * k + carry;
            *d = (v % 10) as u32;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u32);
            carry /= 10;
        }
    }
    digits
        .iter()
        .rev()
        .map(|d| char::from(b'0' + *d as u8))
        .collect()
}

#[tokio::test]
async fn a_fan_out_and_its_fan_in_sum_the_steps_results_each_step_run_once() {
    let app = TestApp::spawn().await;
    let answer = submit_ok(
        &app,
        json!({
            "fan_out": [
                {"kind": "factorial", "input": 30},
                {"kind": "factorial", "input": 25},
                {"kind": "factorial", "input": 3000},
            ],
            "fan_in": {"kind": "sum"},
        }),
    )
    .await;
    let id = answer["id"].as_str().expect("id").to_string();
    let names: Vec<&str> = answer["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["part-1", "part-2", "part-3", "fan-in"]);
    let wf = wait_ended(&app, &id, Duration::from_secs(60)).await;
    assert_eq!(wf["status"], "done", "{wf}");
    assert_eq!(wf["progress"], 1.0, "{wf}");
    assert_eq!(wf["counts"]["done"], 4, "{wf}");
    assert_eq!(
        step(&wf, "fan-in")["depends_on"],
        json!(["part-1", "part-2", "part-3"])
    );

    let fan_in = app
        .get_job(step(&wf, "fan-in")["job_id"].as_str().expect("job id"))
        .await;
    assert_eq!(fan_in["workflow"], id.as_str(), "{fan_in}");
    assert_eq!(fan_in["step"], "fan-in");
    let expected = {
        let sum: Vec<String> = [30, 25, 3000].iter().map(|&n| factorial(n)).collect();
        add_decimal(&sum)
    };
    let (status, text) = {
        let resp = app
            .http
            .get(app.url(&format!(
                "/v1/jobs/{}/result",
                fan_in["id"].as_str().expect("id")
            )))
            .send()
            .await
            .expect("GET result");
        (resp.status().as_u16(), resp.text().await.expect("text"))
    };
    assert_eq!(status, 200);
    assert!(
        text.contains(&expected),
        "the fan-in's sum is not 30!+25!+3000!: {}",
        &text[..text.len().min(200)]
    );
    // The fan-in started only after every part had finished, and each step ran once.
    let started = fan_in["started_at"]
        .as_str()
        .expect("started_at")
        .to_string();
    for part in ["part-1", "part-2", "part-3"] {
        let job = app
            .get_job(step(&wf, part)["job_id"].as_str().expect("id"))
            .await;
        assert_eq!(job["attempts"], 1, "{job}");
        assert!(
            job["finished_at"].as_str().expect("finished_at") <= started.as_str(),
            "{part} finished after the fan-in started: {job} / {fan_in}"
        );
        let done = app
            .events_of(job["id"].as_str().expect("id"))
            .await
            .iter()
            .filter(|e| e["type"] == "done")
            .count();
        assert_eq!(done, 1, "{part} was completed {done} times");
    }
}

/// Decimal sum of non-negative decimal strings (the test's own arithmetic).
fn add_decimal(terms: &[String]) -> String {
    let width = terms.iter().map(String::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(width + 1);
    let mut carry = 0u32;
    for i in 0..width {
        let mut d = carry;
        for t in terms {
            if i < t.len() {
                d += u32::from(t.as_bytes()[t.len() - 1 - i] - b'0');
            }
        }
        out.push((d % 10) as u8);
        carry = d / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    while out.len() > 1 && out.last() == Some(&0) {
        out.pop();
    }
    out.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

#[tokio::test]
async fn a_chain_runs_each_step_after_the_one_before_and_its_feed_ends_done() {
    let app = TestApp::spawn().await;
    let answer = submit_ok(
        &app,
        json!({"chain": [
            {"kind": "factorial", "input": 100},
            {"kind": "fibonacci", "input": 1000},
            {"name": "last", "kind": "sum", "input": [{"result_of": "step-1"}, {"result_of": "step-2"}, 1]},
        ]}),
    )
    .await;
    let id = answer["id"].as_str().expect("id").to_string();
    // The feed: a `workflow` event now and on each change; it ends with the workflow.
    let body = tokio::time::timeout(
        Duration::from_secs(60),
        app.http
            .get(app.url(&format!("/v1/workflows/{id}/events")))
            .send()
            .await
            .expect("GET events")
            .text(),
    )
    .await
    .expect("the feed ends once the workflow is done")
    .expect("feed body");
    let views: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).expect("event json"))
        .collect();
    assert!(views.len() >= 2, "one event per change: {body}");
    assert_eq!(views.last().expect("last")["status"], "done", "{body}");
    assert!(body.contains("event: workflow"), "{body}");
    let wf = wait_ended(&app, &id, Duration::from_secs(5)).await;
    let mut previous_end = String::new();
    for name in ["step-1", "step-2", "last"] {
        let job = app
            .get_job(step(&wf, name)["job_id"].as_str().expect("id"))
            .await;
        let started = job["started_at"].as_str().expect("started").to_string();
        assert!(
            previous_end <= started,
            "{name} started before the step before it ended"
        );
        previous_end = job["finished_at"].as_str().expect("finished").to_string();
    }
    let last = app
        .get_job(step(&wf, "last")["job_id"].as_str().expect("id"))
        .await;
    assert_eq!(last["status"], "done", "{last}");
}

#[tokio::test]
async fn cycles_unknown_steps_and_bad_specs_are_refused_naming_the_step() {
    let app = TestApp::gateway_only().await;
    let cases = [
        (
            json!({"steps": [
                {"name": "a", "kind": "factorial", "input": 1, "depends_on": ["b"]},
                {"name": "b", "kind": "factorial", "input": 1, "depends_on": ["a"]},
            ]}),
            "steps[",
            "cycle",
        ),
        (
            json!({"steps": [{"name": "a", "kind": "factorial", "input": 1, "depends_on": ["nope"]}]}),
            "steps[0].depends_on[0]",
            "nope",
        ),
        (
            json!({"chain": [{"kind": "factorial", "input": 1}, {"kind": "factorial", "input": "x"}]}),
            "chain[1].input",
            "",
        ),
        (
            json!({"fan_out": (0..2001).map(|_| json!({"kind": "factorial", "input": 1})).collect::<Vec<_>>()}),
            "steps",
            "at most 2000",
        ),
    ];
    for (body, field, words) in cases {
        let (status, problem) = submit(&app, &body).await;
        assert_eq!(status, 422, "{problem}");
        let named = problem["field"].as_str().unwrap_or_default();
        assert!(
            named.starts_with(field),
            "field {named:?} for {field:?}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(words),
            "{problem}"
        );
    }
    let (status, _) = get(&app, "/v1/workflows/not-an-id").await;
    assert_eq!(status, 400);
    let (status, _) = get(
        &app,
        &format!("/v1/workflows/{}", jetmill_proto::JobId::new()),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_failed_step_stops_everything_under_fail_fast_and_only_its_branch_under_continue() {
    let app = TestApp::spawn().await;
    let bad = json!({"name": "bad", "kind": "factorial", "input": 10, "max_attempts": 1,
        "chaos": {"fail_probability": 1.0}});
    let after_bad =
        json!({"name": "after-bad", "kind": "factorial", "input": 11, "depends_on": ["bad"]});
    // Fail fast: the slow independent step is cancelled, the dependent never starts.
    let slow = json!({"name": "slow", "kind": "factorial", "input": 12,
        "chaos": {"delay_ms": [20000, 20000]}});
    let answer = submit_ok(&app, json!({"steps": [bad, after_bad, slow]})).await;
    let id = answer["id"].as_str().expect("id");
    let wf = wait_ended(&app, id, Duration::from_secs(30)).await;
    assert_eq!(wf["status"], "failed", "{wf}");
    assert_eq!(wf["halted"]["step"], "bad", "{wf}");
    assert_eq!(step(&wf, "bad")["status"], "failed");
    assert_eq!(step(&wf, "after-bad")["status"], "skipped");
    assert_eq!(step(&wf, "slow")["status"], "cancelled", "{wf}");

    // Continue: the independent branch finishes; only the dependent is skipped.
    let ok = json!({"name": "ok", "kind": "factorial", "input": 12});
    let after_ok =
        json!({"name": "after-ok", "kind": "factorial", "input": 13, "depends_on": ["ok"]});
    let answer = submit_ok(
        &app,
        json!({"steps": [bad, after_bad, ok, after_ok], "on_failure": "continue"}),
    )
    .await;
    let wf = wait_ended(
        &app,
        answer["id"].as_str().expect("id"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(wf["status"], "failed", "{wf}");
    assert!(wf.get("halted").is_none(), "{wf}");
    assert_eq!(step(&wf, "after-bad")["status"], "skipped");
    assert_eq!(step(&wf, "ok")["status"], "done");
    assert_eq!(step(&wf, "after-ok")["status"], "done");
}

#[tokio::test]
async fn cancelling_a_workflow_stops_its_running_steps_and_never_starts_the_rest() {
    let app = TestApp::spawn().await;
    let answer = submit_ok(
        &app,
        json!({"chain": [
            {"kind": "factorial", "input": 10, "chaos": {"delay_ms": [20000, 20000]}},
            {"kind": "factorial", "input": 11},
        ]}),
    )
    .await;
    let id = answer["id"].as_str().expect("id");
    let first = answer["steps"][0]["job_id"].as_str().expect("job id");
    app.wait_record(first, Duration::from_secs(10), "running", |r| {
        r["status"] == "running"
    })
    .await;
    let resp = app
        .http
        .delete(app.url(&format!("/v1/workflows/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status().as_u16(), 200);
    let view: Value = resp.json().await.expect("json");
    assert_eq!(view["status"], "cancelled", "{view}");
    assert_eq!(view["cancelled_now"], 1, "{view}");
    let wf = wait_ended(&app, id, Duration::from_secs(10)).await;
    assert_eq!(step(&wf, "step-1")["status"], "cancelled", "{wf}");
    assert_eq!(step(&wf, "step-2")["status"], "skipped", "{wf}");
    let second = answer["steps"][1]["job_id"].as_str().expect("job id");
    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{second}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        resp.status().as_u16(),
        404,
        "the second step never became a job"
    );
    let resp = app
        .http
        .delete(app.url(&format!("/v1/workflows/{id}")))
        .send()
        .await
        .expect("DELETE again");
    assert_eq!(resp.status().as_u16(), 409);
}

#[tokio::test]
async fn a_workflow_survives_its_worker_killed_mid_step_and_runs_each_step_once() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process("w1", &["--ack-wait-secs", "2", "--concurrency", "4"]);
    app.workers[0].wait_started().await;
    // Fan-out of slow steps, then a fan-in: the kill lands while parts run.
    let parts: Vec<Value> = (0..6)
        .map(|i| json!({"kind": "factorial", "input": 20 + i, "chaos": {"delay_ms": [800, 1200]}}))
        .collect();
    let answer = submit_ok(&app, json!({"fan_out": parts, "fan_in": {"kind": "sum"}})).await;
    let id = answer["id"].as_str().expect("id").to_string();
    let first = answer["steps"][0]["job_id"].as_str().expect("job id");
    app.wait_record(first, Duration::from_secs(10), "running", |r| {
        r["status"] == "running"
    })
    .await;
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(5)).await;
    app.start_worker_process("w2", &["--ack-wait-secs", "2", "--concurrency", "4"]);
    let wf = wait_ended(&app, &id, Duration::from_secs(60)).await;
    assert_eq!(wf["status"], "done", "{wf}");
    for s in wf["steps"].as_array().expect("steps") {
        let job = s["job_id"].as_str().expect("id");
        let done = app
            .events_of(job)
            .await
            .iter()
            .filter(|e| e["type"] == "done")
            .count();
        assert_eq!(done, 1, "step {} completed {done} times", s["name"]);
    }
}

#[tokio::test]
async fn the_cli_submits_watches_gets_and_cancels_workflows() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flow.json");
    std::fs::write(
        &file,
        json!({"fan_out": [{"kind": "factorial", "input": 10}, {"kind": "factorial", "input": 12}],
               "fan_in": {"kind": "sum"}})
        .to_string(),
    )
    .expect("write flow");
    let path = file.to_str().expect("utf-8 path");
    let out = app.jetmill(&["workflows", "submit", path, "--watch"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout
        .lines()
        .next()
        .expect("the id first")
        .trim()
        .to_string();
    assert!(stdout.contains("fan-in"), "the steps table: {stdout}");
    assert!(stdout.contains("done 100%"), "{stdout}");

    let out = app.jetmill(&["workflows", "get", &id, "--json"]).await;
    let wf: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(wf["status"], "done");
    let out = app.jetmill(&["workflows", "cancel", &id]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("409") && err.contains("already done"), "{err}");

    std::fs::write(
        &file,
        r#"{"steps": [{"name": "a", "kind": "factorial", "input": 1, "depends_on": ["a"]}]}"#,
    )
    .expect("write");
    let out = app.jetmill(&["workflows", "submit", path]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cycle") && err.contains("steps[0].depends_on"),
        "{err}"
    );
    std::fs::write(&file, "not json").expect("write");
    let out = app.jetmill(&["workflows", "submit", path]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not JSON"), "{err}");
}

/// Chaos: workflows of 10 steps (a chain into a fan-out into a fan-in), each attempt
/// failing with probability 0.2, while a worker is killed with SIGKILL every 2 s and a
/// new one started: every workflow ends done, every step completed exactly once.
/// `JETMILL_CHAOS_WORKFLOWS` sets how many (default 30; the issue's run used 200).
#[tokio::test]
async fn chaos_workflows_end_done_with_failing_steps_and_killed_workers() {
    let count: usize = std::env::var("JETMILL_CHAOS_WORKFLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let mut app = TestApp::gateway_only().await;
    // Up to 12 attempts a step (the workers' cap, --max-deliver, is 5 by default):
    // 0.2^12 makes a step that fails for good practically impossible.
    let flags = [
        "--ack-wait-secs",
        "2",
        "--concurrency",
        "4",
        "--max-deliver",
        "12",
    ];
    for w in ["c0", "c1"] {
        app.start_worker_process(w, &flags);
    }
    for w in &app.workers {
        w.wait_started().await;
    }
    let flaky = |name: &str, n: u64, deps: &[&str]| {
        json!({"name": name, "kind": "factorial", "input": n, "depends_on": deps,
               "max_attempts": 12, "chaos": {"fail_probability": 0.2, "delay_ms": [20, 120]}})
    };
    let mut ids = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let mut steps = vec![flaky("a", 10 + i, &[]), flaky("b", 11 + i, &["a"])];
        for p in 0..7 {
            steps.push(flaky(&format!("p{p}"), 12 + i + p, &["b"]));
        }
        let parts: Vec<Value> = (0..7)
            .map(|p| json!({"result_of": format!("p{p}")}))
            .collect();
        steps.push(
            json!({"name": "total", "kind": "sum", "input": parts, "max_attempts": 12,
                          "chaos": {"fail_probability": 0.2}}),
        );
        let answer = submit_ok(&app, json!({ "steps": steps })).await;
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last_kill = Instant::now();
    let mut generation = 0;
    let mut pending = ids.clone();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} workflows did not end: {pending:?}",
            pending.len()
        );
        let mut still = Vec::new();
        for id in pending {
            let (_, wf) = get(&app, &format!("/v1/workflows/{id}")).await;
            if !matches!(wf["status"].as_str(), Some("done" | "failed" | "cancelled")) {
                still.push(id);
            } else if wf["status"] != "done" {
                let mut failed = Vec::new();
                for s in wf["steps"].as_array().into_iter().flatten() {
                    if s["status"] == "failed" {
                        failed.push(app.get_job(s["job_id"].as_str().unwrap_or_default()).await);
                    }
                }
                panic!(
                    "workflow {id} ended {}: {wf}\nits failed steps: {failed:?}",
                    wf["status"]
                );
            }
        }
        pending = still;
        if last_kill.elapsed() >= Duration::from_secs(2) && !pending.is_empty() {
            let victim = generation % app.workers.len();
            app.workers[victim].signal("KILL");
            app.workers[victim].wait_exit(Duration::from_secs(5)).await;
            generation += 1;
            let log = std::env::temp_dir().join(format!(
                "jetmill-test-{}-chaos-{generation}.log",
                std::process::id()
            ));
            let file = std::fs::File::create(&log).expect("log");
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
                .args([
                    "worker",
                    "--server",
                    app.nats.url(),
                    "--worker-id",
                    &format!("c{generation}"),
                    "--retry-base-ms",
                    "50",
                ])
                .args(flags)
                .env_remove("JETMILL_NATS_URL")
                .stdin(std::process::Stdio::null())
                .stdout(file.try_clone().expect("log"))
                .stderr(file)
                .spawn()
                .expect("start a worker");
            app.workers[victim] = crate::helpers::WorkerProcess { child, log };
            last_kill = Instant::now();
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(
        generation >= 1,
        "no worker was killed: the run was too short to test anything"
    );
    // Every step of every workflow completed exactly once: one `done` event per step's
    // job (an event per attempt has its own dedup id, so a second completion would show).
    use futures::TryStreamExt;
    let events = app
        .js()
        .await
        .get_stream(jetmill_proto::names::EVENTS_STREAM)
        .await
        .expect("events stream");
    let done: std::collections::HashMap<String, usize> = events
        .info_with_subjects("jobs.events.*.done")
        .await
        .expect("subjects")
        .try_collect()
        .await
        .expect("subject counts");
    for id in &ids {
        let (_, wf) = get(&app, &format!("/v1/workflows/{id}")).await;
        for s in wf["steps"].as_array().expect("steps") {
            let job = s["job_id"].as_str().expect("job id");
            let n = done
                .get(&format!("jobs.events.{job}.done"))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, 1, "workflow {id} step {} completed {n} times", s["name"]);
        }
    }
}

#[tokio::test]
async fn a_factorial_split_across_workers_has_the_single_jobs_digits() {
    let mut app = TestApp::spawn().await;
    app.start_worker_process("second", &["--concurrency", "1"]);
    app.workers[0].wait_started().await;
    let n = 30_000;
    let answer = submit_ok(&app, json!({"factorial": {"input": n, "split": 5}})).await;
    let id = answer["id"].as_str().expect("id").to_string();
    let single = app
        .submit_ok(json!({"kind": "factorial", "input": n}))
        .await;
    let wf = wait_ended(&app, &id, Duration::from_secs(60)).await;
    assert_eq!(wf["status"], "done", "{wf}");
    let names: Vec<&str> = wf["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["part-1", "part-2", "part-3", "part-4", "part-5", "combine"]
    );
    let single = app.wait_finished(&single, Duration::from_secs(60)).await;
    let combined = app
        .get_job(step(&wf, "combine")["job_id"].as_str().expect("id"))
        .await;
    assert_eq!(combined["kind"], "factorial");
    assert_eq!(combined["input"], n);
    assert_eq!(combined["params"], json!({"split": 5}));
    assert_eq!(
        combined["result_info"]["sha256"], single["result_info"]["sha256"],
        "the split path's digits differ from the single job's"
    );
    assert_eq!(
        combined["result_info"]["digits"],
        single["result_info"]["digits"]
    );
    // The parts are binary objects, smaller than the digits they stand for.
    let mut part_bytes = 0;
    for i in 1..=5 {
        let part = app
            .get_job(
                step(&wf, &format!("part-{i}"))["job_id"]
                    .as_str()
                    .expect("id"),
            )
            .await;
        assert_eq!(part["params"], json!({"part": i, "of": 5}), "{part}");
        let info = &part["result_info"];
        assert!(
            info["location"]["name"]
                .as_str()
                .expect("object")
                .ends_with(".part"),
            "{part}"
        );
        assert_eq!(info["digits"], 0, "a part is not decimal: {part}");
        part_bytes += info["bytes"].as_u64().expect("bytes");
    }
    let digits = single["result_info"]["digits"].as_u64().expect("digits");
    assert!(
        part_bytes < digits / 2,
        "{part_bytes} bytes of parts for {digits} digits"
    );
    // A split of a plain submit is refused, naming the field and the way to do it.
    let (status, problem) = app
        .submit(&json!({"kind": "factorial", "input": n, "params": {"split": 4}}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("/v1/workflows"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_workflow() {
    let app = TestApp::spawn().await;
    let body =
        json!({"chain": [{"kind": "factorial", "input": 7}, {"kind": "factorial", "input": 8}]});
    let send = |body: Value| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(app.url("/v1/workflows"))
                .header("Idempotency-Key", "nightly-7")
                .json(&body)
                .send()
                .await
                .expect("POST");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, first) = send(body.clone()).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = send(body.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["steps"], first["steps"], "the same steps and job ids");
    let (status, problem) = send(json!({"chain": [{"kind": "factorial", "input": 9}]})).await;
    assert_eq!(status, 422, "the key with another body: {problem}");
    let wf = wait_ended(
        &app,
        first["id"].as_str().expect("id"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(wf["status"], "done", "{wf}");
    assert_eq!(wf["counts"]["done"], 2, "nothing ran twice: {wf}");
}

#[tokio::test]
async fn a_workflow_goes_on_across_a_nats_server_restart_each_step_once() {
    let mut app = TestApp::spawn().await;
    let slow = |n: u64| json!({"kind": "factorial", "input": n, "chaos": {"delay_ms": [300, 400]}});
    let answer = submit_ok(
        &app,
        json!({"chain": [slow(10), slow(11), slow(12), slow(13), slow(14)]}),
    )
    .await;
    let id = answer["id"].as_str().expect("id").to_string();
    // Restart while the second step runs (the first done, three waiting).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, wf) = get(&app, &format!("/v1/workflows/{id}")).await;
        if step(&wf, "step-2")["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "step-2 never ran: {wf}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.nats.restart();
    let wf = wait_ended(&app, &id, Duration::from_secs(90)).await;
    assert_eq!(wf["status"], "done", "{wf}");
    assert_eq!(wf["counts"]["done"], 5, "{wf}");
    for s in wf["steps"].as_array().expect("steps") {
        let done = app
            .events_of(s["job_id"].as_str().expect("id"))
            .await
            .iter()
            .filter(|e| e["type"] == "done")
            .count();
        assert_eq!(done, 1, "step {} completed {done} times", s["name"]);
    }
}

/// A gateway that died between storing a workflow and starting its first steps: the
/// next read of the workflow, by any gateway, starts them.
#[tokio::test]
async fn roots_a_dead_gateway_never_started_are_started_by_the_next_read() {
    let app = TestApp::spawn().await;
    let client = async_nats::connect(app.nats.url()).await.expect("connect");
    let jet = jetmill_natsx::provision(client, jetmill_natsx::QueueSettings::default())
        .await
        .expect("provision");
    let request = jetmill_proto::WorkflowRequest::from_json(
        &json!({"fan_out": [{"kind": "factorial", "input": 15}, {"kind": "factorial", "input": 16}],
                "fan_in": {"kind": "sum"}}),
        &jetmill_proto::Limits::default(),
    )
    .expect("valid");
    let id = jetmill_proto::JobId::new();
    let stored_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(11);
    let wf = request.into_record(id, jetmill_proto::names::DEFAULT_TENANT, 0, stored_at);
    // Stored, as a submit does first, but no step started: the gateway "died" here.
    assert!(jetmill_natsx::workflows::create(&jet, &wf)
        .await
        .expect("store"));
    let (_, view) = get(&app, &format!("/v1/workflows/{id}")).await;
    assert_eq!(view["status"], "pending", "{view}");
    let wf = wait_ended(&app, &id.to_string(), Duration::from_secs(30)).await;
    assert_eq!(wf["status"], "done", "{wf}");
}
