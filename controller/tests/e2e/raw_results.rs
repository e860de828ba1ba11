//! `Accept: application/octet-stream`: a result as little-endian bytes of its
//! magnitude, checked against an independent schoolbook computation.

use crate::helpers::TestApp;
use serde_json::json;
use std::time::Duration;

/// n! as little-endian bytes, by multiplying base-2^32 limbs (independent of malachite).
fn factorial_le_bytes(n: u32) -> Vec<u8> {
    let mut limbs: Vec<u32> = vec![1];
    for k in 2..=n {
        let mut carry = 0u64;
        for limb in &mut limbs {
            let v = u64::from(*limb) * u64::from(k) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let mut bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
    while bytes.len() > 1 && bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

async fn raw(app: &TestApp, id: &str) -> (u16, Option<String>, Vec<u8>) {
    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/result")))
        .header("Accept", "application/octet-stream")
        .send()
        .await
        .expect("GET result");
    let status = resp.status().as_u16();
    if status == 200 {
        assert_eq!(
            resp.headers()[reqwest::header::CONTENT_TYPE],
            "application/octet-stream"
        );
    }
    let sign = resp
        .headers()
        .get("x-jetmill-sign")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, sign, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn results_download_as_little_endian_bytes() {
    let app = TestApp::spawn().await;
    let wait = Duration::from_secs(60);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 1000}))
        .await;
    assert_eq!(app.wait_finished(&id, wait).await["status"], "done");
    let (status, sign, bytes) = raw(&app, &id).await;
    assert_eq!(status, 200);
    assert_eq!(sign.as_deref(), Some("+"));
    assert_eq!(bytes, factorial_le_bytes(1000));

    // 20000! (77,338 digits) is kept in the Object Store.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 20000}))
        .await;
    let rec = app.wait_finished(&id, wait).await;
    assert_eq!(rec["result_info"]["location"]["store"], "object", "{rec}");
    let (status, _, bytes) = raw(&app, &id).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, factorial_le_bytes(20000));

    // A negative sum: magnitude bytes, sign in the header. -(2^64) = 00 x8, 01.
    let id = app
        .submit_ok(json!({"kind": "sum", "input": ["-18446744073709551615", -1]}))
        .await;
    assert_eq!(app.wait_finished(&id, wait).await["status"], "done");
    let (status, sign, bytes) = raw(&app, &id).await;
    assert_eq!(status, 200);
    assert_eq!(sign.as_deref(), Some("-"));
    assert_eq!(bytes, [0, 0, 0, 0, 0, 0, 0, 0, 1]);
}
