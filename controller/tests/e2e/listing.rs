//! `GET /v1/jobs`: cursor pages, newest first, filters, parameter errors, and the
//! gateway's index behind it (read-your-writes across gateways, bootstrap, deletes).

use crate::helpers::{start_gateway, worker_args, TestApp};
use futures::StreamExt;
use jetmill_gateway::GatewayArgs;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Listing tests check what the index lists, not how fast it catches up: a generous
/// barrier keeps a busy machine from turning their pages into scans, and each test
/// asserts at the end that the index served every page.
fn index_patiently(a: &mut GatewayArgs) {
    a.list_index = true;
    a.list_index_wait_secs = 20.0;
}

/// `jetmill_list_pages_total` by source on the gateway at `base`: (index, scan).
async fn list_pages(http: &reqwest::Client, base: &str) -> (u64, u64) {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let count = |source: &str| {
        let prefix = format!("jetmill_list_pages_total{{source=\"{source}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().parse::<f64>().expect("counter value") as u64)
            .unwrap_or(0)
    };
    (count("index"), count("scan"))
}

/// Every listing page this gateway served came from its index.
async fn assert_all_pages_from_the_index(http: &reqwest::Client, base: &str) {
    let (index, scan) = list_pages(http, base).await;
    assert!(index > 0, "no page served at {base}");
    assert_eq!(scan, 0, "{scan} pages were scans, {index} from the index");
}

/// Submit `n` jobs (every third a fibonacci) with a few requests in flight; returns the ids.
async fn submit_many(app: &TestApp, n: u64) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| {
            let kind = if i % 3 == 0 { "fibonacci" } else { "factorial" };
            app.submit_ok(json!({"kind": kind, "input": i}))
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn page(app: &TestApp, query: &str) -> Value {
    page_at(&app.http, &app.base, None, query).await
}

/// One page from the gateway at `base`, as `token` (if any).
async fn page_at(http: &reqwest::Client, base: &str, token: Option<&str>, query: &str) -> Value {
    let mut req = http.get(format!("{base}/v1/jobs?{query}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("GET /v1/jobs");
    assert_eq!(resp.status().as_u16(), 200, "GET /v1/jobs?{query}");
    resp.json().await.expect("page json")
}

/// Follow `next_cursor` from the first page to the last; returns every job in order.
async fn walk(app: &TestApp, query: &str) -> Vec<Value> {
    walk_at(&app.http, &app.base, None, query).await
}

async fn walk_at(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_string(),
        };
        let body = page_at(http, base, token, &q).await;
        let jobs = body["jobs"].as_array().expect("jobs array").clone();
        assert!(jobs.len() <= 100, "page larger than limit");
        all.extend(jobs);
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return all,
        }
        assert!(all.len() <= 2000, "pagination does not end");
    }
}

fn ids(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .map(|j| j["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn a_thousand_jobs_page_through_once_each_newest_first_and_filters_work() {
    let app = TestApp::gateway_with(index_patiently).await;
    let mut submitted = submit_many(&app, 1000).await;
    // UUIDv7 ids sort by submission time: newest first is descending id order.
    submitted.sort_unstable_by(|a, b| b.cmp(a));

    let all = walk(&app, "limit=100").await;
    assert_eq!(ids(&all), submitted, "every job exactly once, newest first");

    // Jobs submitted after the first page do not disturb the pages that follow.
    let first = page(&app, "limit=100").await;
    let cursor = first["next_cursor"].as_str().expect("cursor").to_string();
    submit_many(&app, 5).await;
    let second = page(&app, &format!("limit=100&cursor={cursor}")).await;
    assert_eq!(
        ids(second["jobs"].as_array().expect("jobs")),
        submitted[100..200]
    );

    // Kind filter.
    let fib = walk(&app, "limit=100&kind=fibonacci").await;
    assert_eq!(
        fib.len(),
        334 + 2,
        "334 of the first 1000 and 2 of the last 5"
    );
    assert!(fib.iter().all(|j| j["kind"] == "fibonacci"));

    // Status filter: mark 30 records done directly in the store, as a worker would.
    let kv = app.jobs_kv().await;
    let done: HashSet<String> = submitted.iter().step_by(33).take(30).cloned().collect();
    for id in &done {
        let key = format!("public.{id}");
        let bytes = kv.get(&key).await.expect("kv get").expect("record");
        let mut rec: Value = serde_json::from_slice(&bytes).expect("record json");
        rec["status"] = json!("done");
        kv.put(&key, serde_json::to_vec(&rec).expect("json").into())
            .await
            .expect("kv put");
    }
    let listed = walk(&app, "limit=7&status=done").await;
    let listed_ids = ids(&listed);
    assert_eq!(listed_ids.iter().cloned().collect::<HashSet<_>>(), done);
    assert!(listed_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let pending_fib = walk(&app, "limit=100&status=pending&kind=fibonacci").await;
    assert!(pending_fib
        .iter()
        .all(|j| j["status"] == "pending" && j["kind"] == "fibonacci"));
    let done_fib = done
        .iter()
        .filter(|id| fib.iter().any(|j| j["id"] == id.as_str()))
        .count();
    assert_eq!(pending_fib.len(), fib.len() - done_fib);
    assert_all_pages_from_the_index(&app.http, &app.base).await;
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let app = TestApp::gateway_with(index_patiently).await;
    for (query, field) in [
        ("status=finished", "status"),
        ("kind=sqrt", "kind"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=page-2", "cursor"),
    ] {
        let resp = app
            .http
            .get(app.url(&format!("/v1/jobs?{query}")))
            .send()
            .await
            .expect("GET /v1/jobs");
        assert_eq!(resp.status().as_u16(), 400, "{query}");
        let body: Value = resp.json().await.expect("problem json");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    // An empty store lists nothing, with no cursor.
    let body = page(&app, "").await;
    assert_eq!(body, json!({"jobs": [], "next_cursor": null}));
    assert_all_pages_from_the_index(&app.http, &app.base).await;
}

fn first_id(page: &Value) -> Option<&str> {
    page["jobs"].as_array()?.first()?["id"].as_str()
}

fn listed(page: &Value, id: &str) -> bool {
    page["jobs"]
        .as_array()
        .expect("jobs array")
        .iter()
        .any(|j| j["id"] == id)
}

#[tokio::test]
async fn a_job_submitted_through_one_gateway_is_listed_by_another_at_once() {
    let app = TestApp::gateway_with(index_patiently).await;
    let other = start_gateway(app.nats.url(), &app.shutdown, index_patiently).await;
    // Both gateways' indexes are running before the first submit: the second one must
    // apply the first one's writes before it answers, without the test retrying.
    for i in 0..20 {
        let id = app
            .submit_ok(json!({"kind": "factorial", "input": i}))
            .await;
        let newest = page_at(&app.http, &other, None, "limit=1").await;
        assert_eq!(first_id(&newest), Some(id.as_str()), "submit {i}");
        let pending = page_at(&app.http, &other, None, "limit=1&status=pending").await;
        assert_eq!(first_id(&pending), Some(id.as_str()), "submit {i}, pending");
    }
    assert_all_pages_from_the_index(&app.http, &other).await;
}

#[tokio::test]
async fn the_status_filter_follows_a_job_from_pending_to_done() {
    let app = TestApp::gateway_with(index_patiently).await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 20}))
        .await;
    assert!(listed(&page(&app, "status=pending").await, &id));
    assert!(!listed(&page(&app, "status=done").await, &id));

    app.start_worker_in_process(worker_args(app.nats.url()));
    let rec = app.wait_finished(&id, Duration::from_secs(30)).await;
    assert_eq!(rec["status"], "done", "{rec}");
    assert!(listed(&page(&app, "status=done").await, &id));
    assert!(!listed(&page(&app, "status=pending").await, &id));
    assert!(!listed(&page(&app, "status=running").await, &id));
    assert_all_pages_from_the_index(&app.http, &app.base).await;
}

#[tokio::test]
async fn a_gateway_started_after_a_thousand_records_lists_each_once_newest_first() {
    let app = TestApp::gateway_with(index_patiently).await;
    // Records written straight into the bucket (as workers and other gateways do),
    // many writes in flight.
    let kv = app.jobs_kv().await;
    let mut stored: Vec<String> = futures::stream::iter(0..1000u64)
        .map(|i| {
            let kv = kv.clone();
            async move {
                let msg = jetmill_proto::JobMessage::new(
                    "public",
                    jetmill_proto::JobSpec::Factorial { n: i },
                    1_700_000_000_000,
                );
                let record = jetmill_proto::JobRecord::pending(&msg);
                kv.create(format!("public.{}", msg.id), record.to_json().into())
                    .await
                    .expect("kv create");
                msg.id.to_string()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    stored.sort_unstable_by(|a, b| b.cmp(a));

    // A gateway that starts now bootstraps its index from the bucket.
    let late = start_gateway(app.nats.url(), &app.shutdown, index_patiently).await;
    let all = walk_at(&app.http, &late, None, "limit=100").await;
    assert_eq!(ids(&all), stored, "every record once, newest first");
    assert_all_pages_from_the_index(&app.http, &late).await;
}

#[tokio::test]
async fn a_deleted_record_disappears_from_listings() {
    let app = TestApp::gateway_with(index_patiently).await;
    let mut submitted = submit_many(&app, 6).await;
    submitted.sort_unstable_by(|a, b| b.cmp(a));
    let kv = app.jobs_kv().await;
    kv.delete(format!("public.{}", submitted[1]))
        .await
        .expect("kv delete");
    kv.purge(format!("public.{}", submitted[4]))
        .await
        .expect("kv purge");
    let left: Vec<String> = [0, 2, 3, 5].iter().map(|&i| submitted[i].clone()).collect();
    assert_eq!(ids(&walk(&app, "limit=2").await), left);
    assert_eq!(ids(&walk(&app, "limit=2&status=pending").await), left);
    assert_all_pages_from_the_index(&app.http, &app.base).await;
}

#[tokio::test]
async fn an_admin_lists_every_tenant_and_a_tenant_only_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("api-keys");
    std::fs::write(
        &keys,
        "key-acme-0123456789 acme\nkey-globex-0123456789 globex\nkey-root-0123456789 ops admin\n",
    )
    .expect("write api keys");
    let app = TestApp::gateway_with(|a| {
        index_patiently(a);
        a.auth.api_keys = Some(keys);
    })
    .await;
    let (acme, globex, admin) = (
        "key-acme-0123456789",
        "key-globex-0123456789",
        "key-root-0123456789",
    );
    let mut by_tenant: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 0..40u64 {
        let (t, token) = if i % 3 == 0 { (1, globex) } else { (0, acme) };
        let resp = app
            .http
            .post(app.url("/v1/jobs"))
            .bearer_auth(token)
            .json(&json!({"kind": "factorial", "input": i}))
            .send()
            .await
            .expect("POST /v1/jobs");
        assert_eq!(resp.status().as_u16(), 202);
        let body: Value = resp.json().await.expect("202 json");
        by_tenant[t].push(body["id"].as_str().expect("id").to_string());
    }
    let newest_first = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    };
    let every = newest_first(&[by_tenant[0].clone(), by_tenant[1].clone()].concat());

    let walk_as = |token: &'static str, query: &'static str| {
        let http = app.http.clone();
        let base = app.base.clone();
        async move { ids(&walk_at(&http, &base, Some(token), query).await) }
    };
    assert_eq!(walk_as(admin, "limit=7").await, every);
    assert_eq!(
        walk_as(admin, "limit=7&tenant=globex").await,
        newest_first(&by_tenant[1])
    );
    assert_eq!(walk_as(acme, "limit=7").await, newest_first(&by_tenant[0]));
    assert_eq!(
        walk_as(globex, "limit=7").await,
        newest_first(&by_tenant[1])
    );
    assert_all_pages_from_the_index(&app.http, &app.base).await;
}

#[tokio::test]
async fn with_the_index_off_every_page_is_a_scan_and_lists_the_same() {
    let app = TestApp::gateway_with(|a| a.list_index = false).await;
    let mut submitted = submit_many(&app, 30).await;
    submitted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids(&walk(&app, "limit=7").await), submitted);
    let (index, scan) = list_pages(&app.http, &app.base).await;
    assert_eq!((index, scan), (0, 5), "5 pages of 7, all scans");
}
