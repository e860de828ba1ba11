//! `GET /openapi.json`: generated from the handlers, it lists every route, describes
//! every error as problem+json, and names every field real responses carry.

use crate::helpers::TestApp;
use serde_json::{json, Value};

/// Keys of `value` that the schema `name` does not declare.
fn undeclared(doc: &Value, name: &str, value: &Value) -> Vec<String> {
    let props = &doc["components"]["schemas"][name]["properties"];
    assert!(props.is_object(), "schema {name} has no properties: {doc}");
    value
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| props.get(k.as_str()).is_none())
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_error_and_field() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(resp.status().as_u16(), 200);
    let doc: Value = resp.json().await.expect("json");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );

    let routes = [
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}", "delete"),
        ("/v1/jobs/{id}/result", "get"),
        ("/v1/jobs/{id}/events", "get"),
        ("/v1/usage", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    for (path, method) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        if path.starts_with("/v1/") {
            for status in ["400", "401", "503"] {
                let problem = &op["responses"][status]["content"]["application/problem+json"];
                assert!(
                    problem["schema"]["$ref"]
                        .as_str()
                        .is_some_and(|r| r.ends_with("/Problem")),
                    "{method} {path}: response {status} is not a described problem: {op}"
                );
            }
        }
    }

    // Real responses carry no field the document does not declare.
    let (status, submitted) = app.submit(&json!({"kind": "factorial", "input": 30})).await;
    assert_eq!(status, 202);
    assert_eq!(
        undeclared(&doc, "Submitted", &submitted),
        Vec::<String>::new()
    );
    let id = submitted["id"].as_str().expect("id");
    let record = app
        .wait_finished(id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(undeclared(&doc, "JobRecord", &record), Vec::<String>::new());
    assert_eq!(
        undeclared(&doc, "ResultInfo", &record["result_info"]),
        Vec::<String>::new()
    );
    let (status, problem) = app.submit(&json!({"kind": "factorial", "input": -1})).await;
    assert_eq!(status, 422);
    assert_eq!(undeclared(&doc, "Problem", &problem), Vec::<String>::new());
    let usage: Value = app
        .http
        .get(app.url("/v1/usage"))
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("usage json");
    assert_eq!(undeclared(&doc, "Usage", &usage), Vec::<String>::new());
}
