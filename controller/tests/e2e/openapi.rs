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
        ("/v1/events", "get"),
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

/// The schemathesis command: `$JETMILL_SCHEMATHESIS` or the one
/// `scripts/install-schemathesis.sh` put in `.tools` (scripts/test.sh runs it first).
fn schemathesis() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("JETMILL_SCHEMATHESIS") {
        return p.into();
    }
    let local = jetmill_testkit::workspace_root().join(".tools/schemathesis/bin/schemathesis");
    assert!(
        local.exists(),
        "schemathesis not found: run scripts/install-schemathesis.sh (scripts/test.sh does)"
    );
    local
}

#[tokio::test]
async fn fuzzing_the_api_from_its_document_finds_no_server_error_or_schema_mismatch() {
    // Auth on, as in production: schemathesis calls with an admin's API key, so every
    // schema-valid request (another tenant's usage or listing included) must be
    // accepted. No workers: fuzzed submits only queue. Long-polls are cut to 1 s.
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("api-keys");
    std::fs::write(&keys, "key-fuzz-admin-0123456789 ops admin\n").expect("write api keys");
    let app = TestApp::gateway_with(|g| {
        g.max_wait_secs = 1;
        g.auth.api_keys = Some(keys);
    })
    .await;
    let bin = schemathesis();
    let schema = app.url("/openapi.json");
    // schemathesis keeps a cache in its working directory: give it a scratch one.
    let scratch = tempfile::tempdir().expect("tempdir");
    // A key reused with another body is rightly a 422 (the Idempotency-Key draft says
    // so), but that is state, not schema: give every generated key a unique suffix so
    // schema-valid submits are judged on their own. Keys stay within the documented form.
    let hooks = scratch.path().join("jetmill_hooks.py");
    std::fs::write(
        &hooks,
        "import uuid\nimport schemathesis\n\n\
         @schemathesis.hook\n\
         def before_call(context, case, kwargs):\n\
         \x20   key = (case.headers or {}).get('Idempotency-Key')\n\
         \x20   if isinstance(key, str):\n\
         \x20       case.headers['Idempotency-Key'] = key[:200] + '.' + uuid.uuid4().hex\n",
    )
    .expect("write hooks");
    // A workflow's graph rules (no cycles, unique names, `depends_on` naming real steps)
    // are beyond JSON Schema: a schema-valid graph may rightly be a 422 naming the step.
    // So POST /v1/workflows gets its own run with every check but positive data
    // acceptance (the e2e workflow tests cover its refusals); everything else gets all.
    let all = "not_a_server_error,response_schema_conformance,content_type_conformance,positive_data_acceptance";
    let graph = "not_a_server_error,response_schema_conformance,content_type_conformance";
    for (checks, filter) in [
        (all, ["--exclude-path", "/v1/workflows"]),
        (graph, ["--include-path", "/v1/workflows"]),
    ] {
        let out = tokio::process::Command::new(&bin)
            .current_dir(scratch.path())
            .args([
                "run",
                &schema,
                "--checks",
                // positive_data_acceptance: a request the document calls valid must not
                // be refused with 400/422, so the document states the real constraints.
                checks,
                "--header",
                "Authorization: Bearer key-fuzz-admin-0123456789",
                // Per operation and phase; the coverage phase adds every boundary case.
                "--max-examples",
                "15",
                "--phases",
                "examples,coverage,fuzzing",
                "--request-timeout",
                "10",
                "--seed",
                "6",
                // The all-jobs event feed never ends by design; its own test covers it.
                "--exclude-path",
                "/v1/events",
                "--no-color",
            ])
            .args(filter)
            .env("SCHEMATHESIS_HOOKS", &hooks)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let report = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "schemathesis found problems ({checks}):\n{report}"
        );
        assert!(report.contains("passed"), "no test cases ran:\n{report}");
    }
}
