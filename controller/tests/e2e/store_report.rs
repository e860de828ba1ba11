//! A full JetStream store is reported as such: submits answer a 507 naming the limit,
//! `/readyz` says why it is not ready, `/metrics` and `jetmill stats` show it.

use crate::helpers::TestApp;
use async_nats::jetstream::{self, stream};
use jetmill_testkit::NatsServer;
use serde_json::{json, Value};

/// Store size of the test server: room for the buckets and streams, and a filler.
const MAX_FILE_STORE: u64 = 2 * 1024 * 1024;

/// Publish to a filler stream until JetStream refuses for lack of storage; returns the
/// refusal's error code.
async fn fill_store(js: &jetstream::Context) -> u64 {
    js.create_stream(stream::Config {
        name: "FILLER".into(),
        subjects: vec!["filler.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("filler stream");
    let chunk = bytes::Bytes::from(vec![b'x'; 16 * 1024]);
    for _ in 0..2 * MAX_FILE_STORE / (16 * 1024) {
        let ack = js
            .publish("filler.x", chunk.clone())
            .await
            .expect("publish filler");
        if let Err(e) = ack.await {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(c) = cur {
                if let Some(js) = c.downcast_ref::<jetstream::Error>() {
                    return js.error_code().0;
                }
                cur = c.source();
            }
            panic!("filler refused without a JetStream error: {e}");
        }
    }
    panic!("the store never filled up");
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let resp = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("readyz json"))
}

async fn store_full_gauge(app: &TestApp) -> String {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with("jetmill_store_full "))
        .unwrap_or_else(|| panic!("no jetmill_store_full in {text}"))
        .to_string()
}

async fn stats(app: &TestApp) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
        .args(["stats", "--server", app.nats.url()])
        .env_remove("JETMILL_NATS_URL")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run jetmill stats");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "jetmill stats failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn a_full_store_is_a_507_naming_the_limit_and_readyz_metrics_and_stats_say_so() {
    let nats = NatsServer::with_max_file_store(MAX_FILE_STORE);
    let mut app = TestApp::on(nats, |_| {}).await;
    // A worker creates the consumer `jetmill stats` reads; then it goes away.
    app.start_worker_process("w", &[]);
    app.workers[0].wait_started().await;
    app.workers.clear();

    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(store_full_gauge(&app).await, "jetmill_store_full 0");
    assert!(!stats(&app).await.contains("FULL"));

    let js = app.js().await;
    let code = fill_store(&js).await;
    assert_eq!(
        code, 10023,
        "nats-server 2.15.1 says 'insufficient resources'"
    );

    // A submit is refused as a full store, not as an unreachable queue.
    let body = json!({"kind": "factorial", "input": 10});
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .header("Idempotency-Key", "while-full")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 507);
    assert_eq!(resp.headers()["retry-after"], "30");
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Value = resp.json().await.expect("problem");
    assert_eq!(problem["type"], "store-full", "{problem}");
    assert_eq!(problem["limit"], "max_file_store", "{problem}");
    assert_eq!(problem["err_code"], 10023, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max_file_store")),
        "{problem}"
    );
    let (status, problem) = app.submit(&body).await;
    assert_eq!(status, 507, "{problem}");

    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["jetstream"], "store full", "{ready}");
    assert_eq!(ready["limit"], "max_file_store", "{ready}");
    assert!(
        ready["store"]["used_bytes"].as_u64().is_some_and(|u| u > 0),
        "{ready}"
    );
    assert_eq!(store_full_gauge(&app).await, "jetmill_store_full 1");
    let shown = stats(&app).await;
    assert!(
        shown.contains("store FULL") && shown.contains("max_file_store"),
        "{shown}"
    );

    // Space freed: everything says so, and the key refused while full is usable.
    js.delete_stream("FILLER").await.expect("delete filler");
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(store_full_gauge(&app).await, "jetmill_store_full 0");
    assert!(!stats(&app).await.contains("FULL"));
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .header("Idempotency-Key", "while-full")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        resp.status().as_u16(),
        202,
        "the refused claim was released"
    );
}
