//! `GET /v1/jobs`: cursor pages, newest first, filters, parameter errors.

use crate::helpers::TestApp;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashSet;

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
    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs?{query}")))
        .send()
        .await
        .expect("GET /v1/jobs");
    assert_eq!(resp.status().as_u16(), 200, "GET /v1/jobs?{query}");
    resp.json().await.expect("page json")
}

/// Follow `next_cursor` from the first page to the last; returns every job in order.
async fn walk(app: &TestApp, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_string(),
        };
        let body = page(app, &q).await;
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
    let app = TestApp::gateway_only().await;
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
    let kv = app
        .js()
        .await
        .get_key_value("jobs")
        .await
        .expect("jobs bucket");
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
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let app = TestApp::gateway_only().await;
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
}
