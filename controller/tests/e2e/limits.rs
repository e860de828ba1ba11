//! Cluster-wide run limits (`jetmill limits`): at most N running and at most R starts
//! per period, per kind and per tenant, held by all workers together, changed live with
//! the applied report; limited jobs wait and finish, they never fail.

use crate::helpers::{ms, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// The most jobs whose `[started_at, finished_at]` overlap at one instant.
fn max_overlap(records: &[Value]) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for r in records {
        edges.push((ms(r, "started_at"), 1));
        edges.push((ms(r, "finished_at"), -1));
    }
    // Ends before starts at the same instant: touching intervals do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Run a config command with `--json`: (exit code, outcome).
async fn apply(app: &TestApp, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = app.jetmill(&all).await;
    let outcome = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), outcome)
}

/// Start two worker processes `<name>-a`, `<name>-b` with `slots` each, and wait for them.
async fn two_workers(app: &mut TestApp, name: &str, slots: &str) {
    for w in ["a", "b"] {
        app.start_worker_process(&format!("{name}-{w}"), &["--concurrency", slots]);
    }
    for w in &app.workers {
        w.wait_started().await;
    }
}

/// Run a `jetmill limits` command that every live worker must apply.
async fn applied(app: &TestApp, args: &[&str]) -> Value {
    let (code, outcome) = apply(app, args).await;
    assert_eq!(
        (code, &outcome["all_applied"]),
        (0, &json!(true)),
        "{outcome}"
    );
    outcome
}

/// `GET /v1/limits`, as the caller with API key `key` when given.
async fn limits_view(app: &TestApp, key: Option<&str>) -> Value {
    let mut req = app.http.get(app.url("/v1/limits"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send()
        .await
        .expect("GET /v1/limits")
        .json()
        .await
        .expect("json")
}

async fn finish_all(app: &TestApp, ids: &[String]) -> Vec<Value> {
    finish_all_attempts(app, ids, Some(1)).await
}

/// Wait for `ids` to end `done`, each in `attempts` attempts when given (a job a drain
/// handed back may take a second).
async fn finish_all_attempts(app: &TestApp, ids: &[String], attempts: Option<u32>) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        let rec = app.wait_finished(id, WAIT).await;
        assert_eq!(
            rec["status"], "done",
            "a limited job must wait, not fail: {rec}"
        );
        if let Some(n) = attempts {
            assert_eq!(rec["attempts"], n, "waiting is not an attempt: {rec}");
        }
        out.push(rec);
    }
    out
}

/// A factorial that holds its slot for `ms` (chaos delay, no failure).
fn slow(ms: u64) -> Value {
    json!({"kind": "factorial", "input": 20, "chaos": {"delay_ms": [ms, ms]}})
}

#[tokio::test]
async fn a_kind_limit_holds_across_workers_is_raised_live_and_leaves_other_kinds_alone() {
    let mut app = TestApp::gateway_only().await;
    two_workers(&mut app, "lim", "3").await;
    let outcome = applied(
        &app,
        &["limits", "set", "--kind", "factorial", "--max-running", "2"],
    )
    .await;
    assert_eq!(
        outcome["workers"].as_array().map(Vec::len),
        Some(2),
        "{outcome}"
    );
    assert_eq!(
        outcome["config"]["limits"],
        json!([{"kind": "factorial", "max_running": 2}])
    );

    // Six slots, eight slow factorials and four sums: two factorials at a time.
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(app.submit_ok(slow(700)).await);
    }
    let mut sums = Vec::new();
    for _ in 0..4 {
        sums.push(
            app.submit_ok(json!({"kind": "sum", "input": [1, 2, 3]}))
                .await,
        );
    }
    // While the limit is full, the API shows it.
    let mut seen_full = false;
    for _ in 0..50 {
        let view = limits_view(&app, None).await;
        let usage = &view["limits"][0]["usage"][0];
        assert!(usage["running"].as_u64().unwrap_or(0) <= 2, "{view}");
        if usage["running"] == 2 {
            assert_eq!(view["limits"][0]["scope"], "factorial jobs", "{view}");
            seen_full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_full, "GET /v1/limits never showed 2 running");
    // So does `jetmill stats`, which an operator reads when the queue does not drain
    // (six factorials of 700 ms still wait behind the two running: it is still full).
    let out = app.jetmill(&["stats"]).await;
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stats.contains("run limits          1 set")
            && stats.contains("limit full          factorial jobs: 2 of 2 running"),
        "{out:?}"
    );
    let out = app.jetmill(&["stats", "--json"]).await;
    let stats: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    assert_eq!(stats["limits"][0]["limit"]["max_running"], 2, "{stats}");
    let sums = finish_all(&app, &sums).await;
    let records = finish_all(&app, &ids).await;
    assert_eq!(max_overlap(&records), 2, "{records:#?}");
    let workers: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["worker"].as_str())
        .collect();
    assert_eq!(workers.len(), 2, "both workers ran them: {workers:?}");
    // The sums did not queue behind the limited factorials.
    let last_start = records
        .iter()
        .map(|r| ms(r, "started_at"))
        .max()
        .unwrap_or(0);
    for s in &sums {
        assert!(ms(s, "finished_at") < last_start, "{s}");
    }

    // Raised live: four at a time now.
    applied(
        &app,
        &["limits", "set", "--kind", "factorial", "--max-running", "4"],
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(app.submit_ok(slow(700)).await);
    }
    let records = finish_all(&app, &ids).await;
    assert_eq!(max_overlap(&records), 4, "{records:#?}");

    // The table names the limit; clearing an absent one says what is set.
    let out = app.jetmill(&["limits", "list"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("factorial jobs"),
        "{out:?}"
    );
    let out = app.jetmill(&["limits", "clear", "--kind", "sum"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains("no limit on sum jobs") && err.contains("factorial jobs"),
        "{err}"
    );
    let (code, outcome) = apply(&app, &["limits", "clear", "--kind", "factorial"]).await;
    assert_eq!(code, 0, "{outcome}");
    assert!(outcome["config"].get("limits").is_none(), "{outcome}");
}

#[tokio::test]
async fn a_rate_spaces_starts_cluster_wide() {
    let mut app = TestApp::gateway_only().await;
    two_workers(&mut app, "rate", "4").await;
    applied(&app, &["limits", "set", "--kind", "sum", "--rate", "5/s"]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(app.submit_ok(json!({"kind": "sum", "input": [i, 1]})).await);
    }
    let records = finish_all(&app, &ids).await;
    let mut starts: Vec<i64> = records.iter().map(|r| ms(r, "started_at")).collect();
    starts.sort();
    // 200 ms apart; a start is stamped a moment after its admission, hence the slack.
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= 150, "starts too close: {starts:?}");
    }
    assert!(starts[9] - starts[0] >= 9 * 200 - 50, "{starts:?}");
    // Other kinds are not held back.
    let quick = app
        .submit_ok(json!({"kind": "factorial", "input": 10}))
        .await;
    app.wait_finished(&quick, WAIT).await;
    // Bad limits are refused before anything is written, naming the fix.
    for (args, says) in [
        (
            &["limits", "set", "--kind", "sum"][..],
            "--max-running N and/or --rate",
        ),
        (&["limits", "set", "--rate", "0/s"][..], "at least 1 start"),
        (
            &["limits", "set", "--rate", "5/fortnight"][..],
            "invalid rate",
        ),
        (
            &["limits", "set", "--tenant", "a.b", "--max-running", "1"][..],
            "invalid tenant",
        ),
        (&["limits", "set", "--max-running", "0"][..], "at least 1"),
        (
            &["limits", "set", "--max-running", "1", "--worker", "rate-a"][..],
            "drop --worker",
        ),
    ] {
        let out = app.jetmill(args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_per_tenant_limit_counts_each_tenant_apart_and_callers_see_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("api-keys");
    std::fs::write(&keys, "key-acme acme\nkey-beta beta\nkey-ops ops admin\n").expect("keys");
    let mut app = TestApp::gateway_with(|a| a.auth.api_keys = Some(keys)).await;
    two_workers(&mut app, "ten", "3").await;
    applied(
        &app,
        &["limits", "set", "--tenant", "*", "--max-running", "1"],
    )
    .await;
    let (code, outcome) = apply(
        &app,
        &[
            "limits", "set", "--tenant", "beta", "--kind", "sum", "--rate", "100/s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{outcome}");

    let submit = |key: &'static str| {
        let app = &app;
        async move {
            let res = app
                .http
                .post(app.url("/v1/jobs"))
                .bearer_auth(key)
                .json(&slow(600))
                .send()
                .await
                .expect("submit");
            assert_eq!(res.status(), 202);
            let body: Value = res.json().await.expect("json");
            body["id"].as_str().expect("id").to_string()
        }
    };
    let (mut acme, mut beta) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        acme.push(submit("key-acme").await);
        beta.push(submit("key-beta").await);
    }
    let get = |id: String, key: &'static str| {
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let rec: Value = app
                    .http
                    .get(app.url(&format!("/v1/jobs/{id}")))
                    .bearer_auth(key)
                    .send()
                    .await
                    .expect("get")
                    .json()
                    .await
                    .expect("json");
                if rec["status"] == "done" || rec["status"] == "failed" {
                    return rec;
                }
                assert!(tokio::time::Instant::now() < deadline, "{rec}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // acme sees the per-tenant limit with its own count only, not beta's named limit.
    let view = limits_view(&app, Some("key-acme")).await;
    let limits = view["limits"].as_array().expect("limits");
    assert_eq!(limits.len(), 1, "{view}");
    assert_eq!(limits[0]["scope"], "all jobs of each tenant", "{view}");
    for u in limits[0]["usage"].as_array().expect("usage") {
        assert_eq!(u["tenant"], "acme", "{view}");
    }
    let mut acme_recs = Vec::new();
    for id in acme {
        acme_recs.push(get(id, "key-acme").await);
    }
    let mut beta_recs = Vec::new();
    for id in beta {
        beta_recs.push(get(id, "key-beta").await);
    }
    for r in acme_recs.iter().chain(&beta_recs) {
        assert_eq!(r["status"], "done", "{r}");
    }
    assert_eq!(max_overlap(&acme_recs), 1, "{acme_recs:#?}");
    assert_eq!(max_overlap(&beta_recs), 1, "{beta_recs:#?}");
    let all: Vec<Value> = acme_recs.iter().chain(&beta_recs).cloned().collect();
    assert_eq!(
        max_overlap(&all),
        2,
        "the tenants ran side by side: {all:#?}"
    );

    // The admin sees both limits and both tenants' counts.
    let view = limits_view(&app, Some("key-ops")).await;
    let limits = view["limits"].as_array().expect("limits");
    assert_eq!(limits.len(), 2, "{view}");
    let tenants: Vec<&str> = limits[0]["usage"]
        .as_array()
        .expect("usage")
        .iter()
        .filter_map(|u| u["tenant"].as_str())
        .collect();
    assert_eq!(tenants, ["acme", "beta"], "{view}");
    assert_eq!(limits[1]["scope"], "sum jobs of tenant beta", "{view}");
    let out = app.jetmill(&["limits", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&out.stdout).expect("limits list --json");
    assert_eq!(listed, view["limits"], "the CLI and the API agree");
}

#[tokio::test]
async fn limits_hold_through_a_nats_server_restart_and_a_worker_restart() {
    let mut app = TestApp::gateway_only().await;
    two_workers(&mut app, "rs", "2").await;
    applied(
        &app,
        &["limits", "set", "--kind", "factorial", "--max-running", "1"],
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.submit_ok(slow(1500)).await);
    }
    // Once the first runs: nats-server restarts, then one worker drains and restarts.
    app.wait_record(&ids[0], Duration::from_secs(30), "running", |r| {
        r["status"] == "running"
    })
    .await;
    app.nats.restart();
    app.workers[0].signal("TERM");
    app.workers[0].wait_exit(Duration::from_secs(30)).await;
    app.workers.remove(0);
    app.start_worker_process("rs-a2", &["--concurrency", "2"]);
    app.workers.last().expect("worker").wait_started().await;
    let records = finish_all_attempts(&app, &ids, None).await;
    assert_eq!(max_overlap(&records), 1, "{records:#?}");
}
