//! Results through HTTP are exact, for every kind, inline and in the Object Store.

use crate::helpers::TestApp;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn result_of(app: &TestApp, body: serde_json::Value) -> serde_json::Value {
    let id = app.submit_ok(body).await;
    let rec = app.wait_finished(&id, WAIT).await;
    assert_eq!(rec["status"], "done", "{rec}");
    rec
}

#[tokio::test]
async fn factorial_results_are_exact() {
    let app = TestApp::spawn().await;
    let rec = result_of(&app, json!({"kind": "factorial", "input": 20})).await;
    assert_eq!(rec["result"], "2432902008176640000");
    assert_eq!(rec["input"], 20);
    assert_eq!(rec["attempts"], 1);
    assert!(
        rec["worker"].is_string()
            && rec["started_at"].is_string()
            && rec["finished_at"].is_string(),
        "{rec}"
    );

    let rec = result_of(&app, json!({"kind": "factorial", "input": 1000})).await;
    let digits = rec["result"].as_str().expect("inline result");
    assert_eq!(digits.len(), 2568);
    assert_eq!(digits.len() - digits.trim_end_matches('0').len(), 249);
    assert_eq!(rec["result_info"]["digits"], 2568);
    assert_eq!(
        rec["result_info"]["sha256"],
        hex::encode(Sha256::digest(digits.as_bytes()))
    );
}

#[tokio::test]
async fn fibonacci_and_sum_results_are_exact() {
    let app = TestApp::spawn().await;
    let rec = result_of(&app, json!({"kind": "fibonacci", "input": 100})).await;
    assert_eq!(rec["result"], "354224848179261915075");

    // F(10^6) mod 1e9+7 by the plain iteration, independent of the kernel's fast doubling.
    let m: u64 = 1_000_000_007;
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..1_000_000 {
        (a, b) = (b, (a + b) % m);
    }
    let rec = result_of(
        &app,
        json!({"kind": "fibonacci", "input": 1_000_000, "params": {"modulus": m}}),
    )
    .await;
    assert_eq!(rec["result"], a.to_string());
    assert_eq!(rec["params"]["modulus"], m);

    let big = "123456789012345678901234567890";
    let rec = result_of(
        &app,
        json!({"kind": "sum", "input": [1, 2, 3, -10, big, big]}),
    )
    .await;
    assert_eq!(rec["result"], "246913578024691357802469135776");
    let rec = result_of(&app, json!({"kind": "sum", "input": []})).await;
    assert_eq!(rec["result"], "0");
}

/// Trailing zeros of n! by Legendre's formula.
fn legendre_zeros(n: u64) -> u64 {
    let (mut z, mut p) = (0, 5);
    while p <= n {
        z += n / p;
        p *= 5;
    }
    z
}

#[tokio::test]
async fn large_results_are_stored_in_the_object_store_and_downloadable() {
    let app = TestApp::spawn().await;
    let rec = result_of(&app, json!({"kind": "factorial", "input": 100_000})).await;
    assert!(
        rec["result"].is_null(),
        "a 456,574-digit result must not be inline"
    );
    let info = &rec["result_info"];
    assert_eq!(info["location"]["store"], "object", "{info}");
    assert_eq!(info["digits"], 456_574);

    let text = download_checked(&app, &rec, 100_000, 456_574).await;
    assert_eq!(info["head"], &text[..50]);
}

/// Download a finished factorial(n) through `/result` and check it: length, digits only,
/// Legendre's trailing zeros, the record's SHA-256, and the kernel's own 1-thread path
/// (a different code path than the worker's thread budget). Returns the text.
async fn download_checked(app: &TestApp, rec: &serde_json::Value, n: u64, digits: u64) -> String {
    let id = rec["id"].as_str().expect("id");
    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/result")))
        .send()
        .await
        .expect("GET result");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.content_length(), Some(digits));
    let text = resp.text().await.expect("result body");
    assert_eq!(text.len() as u64, digits);
    assert!(text.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        text.len() - text.trim_end_matches('0').len(),
        legendre_zeros(n) as usize
    );
    assert_eq!(
        rec["result_info"]["sha256"],
        hex::encode(Sha256::digest(text.as_bytes()))
    );
    let ctl = jetmill_compute::Control::silent(1);
    let expected =
        jetmill_compute::run(&jetmill_compute::Task::Factorial { n }, &ctl).expect("factorial");
    assert!(
        expected.decimal == text,
        "downloaded text differs from {n}!"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_downloads_the_full_decimal_text_of_a_million_factorial() {
    let app = TestApp::spawn().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 1_000_000}))
        .await;
    let rec = app.wait_finished(&id, Duration::from_secs(120)).await;
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["result_info"]["digits"], 5_565_709, "{rec}");
    let text = download_checked(&app, &rec, 1_000_000, 5_565_709).await;
    // 10^6! = 8.2639316883...e5565708 (a published value).
    assert!(text.starts_with("82639316883"), "head {}", &text[..20]);
}

#[tokio::test]
async fn result_of_an_unfinished_job_is_a_conflict_and_unknown_jobs_are_404() {
    let app = TestApp::gateway_only().await; // no worker: the job stays pending
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 5}))
        .await;
    let rec = app.get_job(&id).await;
    assert_eq!(rec["status"], "pending");
    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/result")))
        .send()
        .await
        .expect("GET result");
    assert_eq!(resp.status().as_u16(), 409);
    let body: serde_json::Value = resp.json().await.expect("problem json");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("pending")),
        "{body}"
    );

    let resp = app
        .http
        .get(app.url("/v1/jobs/0190a0a0-0000-7000-8000-000000000000"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 404);
    let resp = app
        .http
        .get(app.url("/v1/jobs/not-a-uuid"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.expect("problem json");
    assert_eq!(body["field"], "id");
}

#[tokio::test]
async fn list_returns_newest_first() {
    let app = TestApp::gateway_only().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            app.submit_ok(json!({"kind": "factorial", "input": n}))
                .await,
        );
    }
    let resp = app
        .http
        .get(app.url("/v1/jobs?limit=3"))
        .send()
        .await
        .expect("GET list");
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.expect("list json");
    let got: Vec<&str> = body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    let want: Vec<&str> = ids.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(got, want);
    let resp = app
        .http
        .get(app.url("/v1/jobs?limit=0"))
        .send()
        .await
        .expect("GET list");
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::gateway_only().await;
    let r = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200);
    let r = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status().as_u16(), 200);

    let mut app = app;
    app.nats.stop();
    let unready = jetmill_testkit::wait_until(Duration::from_secs(20), || async {
        let r = app
            .http
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        r.status().as_u16() == 503
    })
    .await;
    assert!(unready, "/readyz must say 503 while NATS is down");
    let r = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200, "liveness does not depend on NATS");
}
