//! Bad input gets a precise 4xx, and nothing is published.

use crate::helpers::TestApp;
use jetmill_proto::names;
use serde_json::{json, Value};

async fn post_raw(app: &TestApp, body: Vec<u8>) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST /v1/jobs");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(ctype, "application/problem+json", "errors are problem+json");
    (status, resp.json().await.expect("error body is JSON"))
}

#[tokio::test]
async fn bad_input_is_rejected_naming_the_field_and_nothing_is_published() {
    let app = TestApp::gateway_only().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"kind": "sqrt", "input": 4}), 422, "kind"),
        (json!({"input": 4}), 422, "kind"),
        (json!({"kind": "factorial"}), 422, "input"),
        (json!({"kind": "factorial", "input": "lots"}), 422, "input"),
        (json!({"kind": "factorial", "input": [1, 2]}), 422, "input"),
        (json!({"kind": "factorial", "input": -1}), 422, "input"),
        (json!({"kind": "factorial", "input": 1.5}), 422, "input"),
        (
            json!({"kind": "factorial", "input": 1_000_000_000_000u64}),
            422,
            "input",
        ),
        (
            json!({"kind": "fibonacci", "input": 5_000_000_000u64}),
            422,
            "input",
        ),
        (
            json!({"kind": "fibonacci", "input": 5, "params": {"modulus": 0}}),
            422,
            "params.modulus",
        ),
        (json!({"kind": "sum", "input": [1, "x"]}), 422, "input[1]"),
        (json!({"kind": "sum", "input": 7}), 422, "input"),
        (
            json!({"kind": "factorial", "input": 3, "colour": "red"}),
            422,
            "colour",
        ),
        (json!([1, 2, 3]), 422, "body"),
        (
            json!({"kind": "factorial", "input": 3, "delay": "soon"}),
            422,
            "delay",
        ),
        (
            json!({"kind": "factorial", "input": 3, "run_at": "next tuesday"}),
            422,
            "run_at",
        ),
        (
            json!({"kind": "factorial", "input": 3, "run_at": "2026-12-24T18:00:00Z", "delay": "1m"}),
            422,
            "delay",
        ),
        (
            json!({"kind": "factorial", "input": 3, "delay": 90}),
            422,
            "delay",
        ),
    ];
    for (body, status, field) in cases {
        let (got, err) = post_raw(&app, serde_json::to_vec(&body).expect("json")).await;
        assert_eq!(got, status, "{body} -> {err}");
        assert_eq!(err["field"], field, "{body} -> {err}");
        assert_eq!(err["status"], status);
        assert!(
            err["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{err}"
        );
    }

    let (got, err) = post_raw(&app, b"{\"kind\": \"factorial\", ".to_vec()).await;
    assert_eq!(got, 400, "{err}");
    assert_eq!(err["field"], "body");

    let (got, err) = post_raw(&app, b"not json at all".to_vec()).await;
    assert_eq!(got, 400, "{err}");

    // Over the 1 MiB default body limit.
    let huge = format!("{{\"kind\":\"sum\",\"input\":[{}1]}}", "1,".repeat(600_000));
    let (got, err) = post_raw(&app, huge.into_bytes()).await;
    assert_eq!(got, 413, "{err}");
    assert_eq!(err["field"], "body");

    assert_eq!(
        app.stream_messages(names::JOBS_STREAM).await,
        0,
        "no bad request may publish a job"
    );

    // And a good one does publish (the check above is not vacuous).
    app.submit_ok(json!({"kind": "factorial", "input": 3}))
        .await;
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 1);
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let app = TestApp::gateway_only().await;
    let resp = app
        .http
        .get(app.url("/v2/nothing"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], 404);
}
