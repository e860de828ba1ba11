//! Every `curl` example in docs/api.md runs against a real gateway and worker and
//! answers with the status its comment promises (`# 401`, `# 200, same id`), else a
//! 2xx: the API docs stay true as the code changes.

use crate::helpers::TestApp;
use serde_json::json;
use std::time::Duration;

/// One `curl` line of a shell block, with the status it must answer.
#[derive(Debug)]
struct Example {
    line: String,
    /// The block sets up a gateway with `--api-keys keys.txt`.
    needs_keys: bool,
    expect: Option<u16>,
}

fn examples(doc: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut needs_keys = false;
    for line in doc.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            in_sh = !in_sh && lang.trim() == "sh";
            needs_keys = false;
            continue;
        }
        if !in_sh {
            continue;
        }
        if line.contains("--api-keys") {
            needs_keys = true;
        }
        let line = line.trim();
        if !line.starts_with("curl ") {
            continue;
        }
        let (command, comment) = match line.split_once(" #") {
            Some((c, note)) => (c.trim(), note.trim()),
            None => (line, ""),
        };
        let expect = comment
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 3)
            .and_then(|w| w.parse().ok());
        out.push(Example {
            line: command.to_string(),
            needs_keys,
            expect,
        });
    }
    out
}

/// Run `example` with its URL pointed at `base` and placeholders filled in; returns the
/// HTTP status curl saw.
async fn run(example: &Example, base: &str, ids: &Ids, dir: &std::path::Path) -> u16 {
    // Cancelling needs a job that has not finished yet.
    let id = if example.line.contains("-X DELETE") {
        &ids.running
    } else {
        &ids.done
    };
    // Only the curl command itself: drop pipes into jq/sha256sum/python.
    let command = example
        .line
        .split(" | ")
        .next()
        .unwrap_or_default()
        .split(" && ")
        .next()
        .unwrap_or_default()
        .replace("http://127.0.0.1:8080", base)
        .replace("<batch>", &ids.batch)
        .replace("<schedule>", &ids.schedule)
        .replace("<live-workflow>", &ids.live_workflow)
        .replace("<workflow>", &ids.workflow)
        .replace("<id>", id)
        .replace("$id", id)
        .replace("01a207e4-...", &ids.cursor);
    let command = replace_job_ids(&command, id);
    let script = format!("{command} -o /dev/null -w '%{{http_code}}' --max-time 3");
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .output()
        .await
        .expect("run bash");
    let code = String::from_utf8_lossy(&out.stdout);
    let streaming = command.contains("-sN");
    // A live SSE stream only ends at curl's --max-time (exit 28); everything else must exit 0.
    assert!(
        out.status.success() || (streaming && out.status.code() == Some(28)),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    code.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{script}: no HTTP status in {code:?}"))
}

/// The docs' sample job ids (`/v1/jobs/<uuid>`) replaced by `id`.
fn replace_job_ids(command: &str, id: &str) -> String {
    const PATH: &str = "/v1/jobs/";
    let mut out = String::new();
    let mut rest = command;
    while let Some(at) = rest.find(PATH) {
        let (head, tail) = rest.split_at(at + PATH.len());
        out.push_str(head);
        let sample = tail
            .get(..36)
            .filter(|t| t.parse::<jetmill_proto::JobId>().is_ok());
        rest = match sample {
            Some(_) => {
                out.push_str(id);
                &tail[36..]
            }
            None => tail,
        };
    }
    out.push_str(rest);
    out
}

/// Real values for the docs' placeholders.
struct Ids {
    done: String,
    running: String,
    cursor: String,
    /// A batch whose jobs all finished.
    batch: String,
    /// A paused recurring schedule (the examples pause, resume and delete it).
    schedule: String,
    /// A workflow that has ended done.
    workflow: String,
    /// A workflow still running (the example cancels it).
    live_workflow: String,
}

#[tokio::test]
async fn every_curl_example_in_the_api_docs_answers_as_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
        .expect("docs/api.md");
    let all = examples(&doc);
    assert!(all.len() >= 15, "found only {} curl examples", all.len());

    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "k-acme-123 acme\n").expect("keys file");
    let keyed = TestApp::gateway_with(|a| a.auth.api_keys = Some(keys)).await;

    // Placeholders: a finished job, and a cursor from a real first page.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 20}))
        .await;
    app.submit_ok(json!({"kind": "factorial", "input": 21}))
        .await;
    app.wait_finished(&id, Duration::from_secs(30)).await;
    let page: serde_json::Value = reqwest::get(app.url("/v1/jobs?limit=1&kind=factorial"))
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_string();
    let running = app
        .submit_ok(json!({"kind": "factorial", "input": 30, "chaos": {"delay_ms": 60_000}}))
        .await;
    let batch: serde_json::Value = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .json(&json!([{"kind": "factorial", "input": 22}]))
        .send()
        .await
        .expect("submit a batch")
        .json()
        .await
        .expect("batch json");
    let batch = batch["id"].as_str().expect("batch id").to_string();
    let waited: serde_json::Value = reqwest::get(app.url(&format!("/v1/batches/{batch}?wait=30s")))
        .await
        .expect("wait for the batch")
        .json()
        .await
        .expect("json");
    assert_eq!(waited["done"], true, "{waited}");
    let schedule: serde_json::Value = app
        .http
        .post(app.url("/v1/schedules"))
        .json(&json!({"cron": "@daily", "paused": true, "job": {"kind": "factorial", "input": 5}}))
        .send()
        .await
        .expect("create a schedule")
        .json()
        .await
        .expect("schedule json");
    let schedule = schedule["id"].as_str().expect("schedule id").to_string();
    let workflow = |body: serde_json::Value| {
        let app = &app;
        async move {
            let answer: serde_json::Value = app
                .http
                .post(app.url("/v1/workflows"))
                .json(&body)
                .send()
                .await
                .expect("submit a workflow")
                .json()
                .await
                .expect("workflow json");
            answer["id"].as_str().expect("workflow id").to_string()
        }
    };
    let finished = workflow(json!({"chain": [{"kind": "factorial", "input": 5}]})).await;
    let waited: serde_json::Value =
        reqwest::get(app.url(&format!("/v1/workflows/{finished}?wait=30s")))
            .await
            .expect("wait for the workflow")
            .json()
            .await
            .expect("json");
    assert_eq!(waited["status"], "done", "{waited}");
    let live_workflow = workflow(
        json!({"chain": [{"kind": "factorial", "input": 6, "chaos": {"delay_ms": 60_000}}]}),
    )
    .await;
    let ids = Ids {
        workflow: finished,
        live_workflow,
        done: id,
        running,
        cursor,
        batch,
        schedule,
    };

    for example in &all {
        let base = if example.needs_keys {
            &keyed.base
        } else {
            &app.base
        };
        let status = run(example, base, &ids, dir.path()).await;
        match example.expect {
            Some(want) => assert_eq!(status, want, "{}", example.line),
            None => assert!(
                (200..300).contains(&status),
                "{} answered {status}",
                example.line
            ),
        }
    }
}
