//! The result cache: an identical computation that already finished is answered
//! from its result, with no worker running and nothing queued.

use crate::helpers::{start_gateway, TestApp};
use jetmill_proto::names;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn an_identical_request_is_answered_from_the_finished_result_without_workers() {
    let mut app = TestApp::gateway_with(|g| g.result_cache = true).await;
    app.start_worker_process("cache-w1", &[]);
    app.workers[0].wait_started().await;
    let body = json!({"kind": "factorial", "input": 3000});
    let first_id = app.submit_ok(body.clone()).await;
    let first = app.wait_finished(&first_id, Duration::from_secs(60)).await;
    assert_eq!(first["status"], "done", "{first}");
    assert!(first.get("cached").is_none(), "{first}");

    // No worker from here on: anything that needs computing stays pending.
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(10)).await;

    let (status, answer) = app.submit(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "done");
    assert_eq!(answer["cached"], true);
    let id = answer["id"].as_str().expect("id");
    assert_ne!(id, first_id);
    let hit = app.get_job(id).await;
    assert_eq!(hit["status"], "done", "{hit}");
    assert_eq!(hit["cached"], true);
    assert_eq!(hit["result"], first["result"]);
    assert_eq!(hit["result_info"], first["result_info"]);
    let text = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/result")))
        .send()
        .await
        .expect("GET result")
        .text()
        .await
        .expect("result text");
    assert_eq!(Value::from(text), first["result"]);
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 0);

    // Different params are a different computation; so is a client asking for no-cache.
    let other = app
        .submit_ok(json!({"kind": "factorial", "input": 3001}))
        .await;
    assert_eq!(app.get_job(&other).await["status"], "pending");
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .header("Cache-Control", "no-cache")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 202);

    // A gateway with the cache turned off always queues.
    let uncached = start_gateway(app.nats.url(), &app.shutdown, |g| g.result_cache = false).await;
    let resp = app
        .http
        .post(format!("{uncached}/v1/jobs"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 3);
}

#[tokio::test]
async fn a_cancelled_job_is_not_a_cache_hit() {
    let mut app = TestApp::gateway_with(|g| g.result_cache = true).await;
    app.start_worker_process("cache-w2", &[]);
    app.workers[0].wait_started().await;
    // A cancelled job never becomes a hit: the next identical submit is queued.
    let body = json!({"kind": "factorial", "input": 2000000});
    let id = app.submit_ok(body.clone()).await;
    let (status, _) = app.cancel(&id).await;
    assert_eq!(status, 200);
    app.wait_finished(&id, Duration::from_secs(30)).await;
    let (status, answer) = app.submit(&body).await;
    assert_eq!(status, 202, "{answer}");
    let again = answer["id"].as_str().expect("id").to_string();
    app.cancel(&again).await;
}

#[test]
fn the_cache_is_on_by_default() {
    let args = jetmill_gateway::GatewayArgs::local(
        "nats://127.0.0.1:4222",
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .expect("defaults");
    assert!(args.result_cache, "--result-cache must default to true");
}
