//! One trace from the HTTP request to the worker, exported over OTLP by two processes;
//! the worker's JSON log lines carry the job id and trace id.
//!
//! The gateway runs as a `jetmill gateway` child process, not in the test process:
//! a process has one global tracing subscriber, and the test binary runs many tests
//! in one process under `cargo test`, so an in-process exporter would depend on test
//! order. A child process owns its subscriber; its address comes from its own JSON
//! "gateway listening" log line (it binds 127.0.0.1:0), so no port is guessed.

use crate::helpers::WorkerProcess;
use crate::otlp::{Receiver, Span};
use jetmill_testkit::NatsServer;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Start `jetmill <args>` exporting spans to `otlp` (when given), JSON logs to a file.
fn spawn_jetmill(name: &str, args: &[&str], otlp: Option<&str>) -> WorkerProcess {
    let log = std::env::temp_dir().join(format!("jetmill-test-{}-{name}.log", std::process::id()));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jetmill"));
    cmd.args(args)
        .env("JETMILL_LOG_FORMAT", "json")
        .env_remove("JETMILL_NATS_URL")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    if let Some(endpoint) = otlp {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            // Export every 50 ms instead of every 5 s, so the test waits less.
            .env("OTEL_BSP_SCHEDULE_DELAY", "50");
    }
    let child = cmd.spawn().expect("start jetmill");
    WorkerProcess { child, log }
}

/// The JSON lines a child has logged so far (each must parse).
pub fn json_lines(p: &WorkerProcess) -> Vec<Value> {
    let text = std::fs::read_to_string(&p.log).unwrap_or_default();
    // Only whole lines: the process may be writing the last one right now.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Wait for the gateway's "gateway listening" line; its base URL.
async fn gateway_base(gateway: &WorkerProcess) -> String {
    let mut base = None;
    let found = jetmill_testkit::wait_until(Duration::from_secs(30), || {
        base = json_lines(gateway)
            .iter()
            .find(|l| l["message"] == "gateway listening")
            .and_then(|l| l["addr"].as_str().map(|a| format!("http://{a}")));
        std::future::ready(base.is_some())
    })
    .await;
    assert!(found, "the gateway did not log its address");
    base.expect("address")
}

/// Start a gateway and a worker process exporting to `receiver`.
pub async fn start_pair(
    nats: &NatsServer,
    otlp: Option<&str>,
) -> (WorkerProcess, WorkerProcess, String) {
    let gateway = spawn_jetmill(
        "gateway",
        &["gateway", "--server", nats.url(), "--listen", "127.0.0.1:0"],
        otlp,
    );
    let base = gateway_base(&gateway).await;
    let worker = spawn_jetmill(
        "worker",
        &[
            // "job started" is a debug line (at info a job logs one line: "job done").
            "--log-level",
            "info,jetmill_worker=debug",
            "worker",
            "--server",
            nats.url(),
            "--worker-id",
            "traced",
            "--concurrency",
            "2",
        ],
        otlp,
    );
    (gateway, worker, base)
}

/// Submit `body` and wait until the record is done; the record.
pub async fn run_job(http: &reqwest::Client, base: &str, body: Value) -> Value {
    let resp = http
        .post(format!("{base}/v1/jobs"))
        .json(&body)
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let record: Value = http
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("record");
        if record["status"] == "done" {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not finish: {record}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Is `span` below `ancestor` (following parent ids within `by_id`)?
fn descends_from(span: &Span, ancestor: &Span, by_id: &HashMap<String, Span>) -> bool {
    let mut cur = span.clone();
    for _ in 0..64 {
        if cur.parent_span_id == ancestor.span_id {
            return true;
        }
        match by_id.get(&cur.parent_span_id) {
            Some(p) => cur = p.clone(),
            None => return false,
        }
    }
    false
}

#[tokio::test]
async fn one_trace_spans_gateway_and_worker_processes() {
    let nats = NatsServer::start();
    let receiver = Receiver::start().await;
    let (_gateway, worker, base) = start_pair(&nats, Some(&receiver.endpoint)).await;
    let http = reqwest::Client::new();
    let record = run_job(
        &http,
        &base,
        serde_json::json!({"kind": "factorial", "input": 30}),
    )
    .await;
    let trace_id = record["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the record keeps the trace id: {record}"))
        .to_string();
    assert_eq!(trace_id.len(), 32, "{trace_id}");

    // Wait until both processes exported the spans of this trace.
    let wanted = [
        ("jetmill-gateway", "POST /v1/jobs"),
        ("jetmill-gateway", "publish"),
        ("jetmill-worker", "queue wait"),
        ("jetmill-worker", "job"),
        ("jetmill-worker", "fetch"),
        ("jetmill-worker", "compute"),
        ("jetmill-worker", "kernel"),
        ("jetmill-worker", "result write"),
        ("jetmill-worker", "event done"),
    ];
    let mut spans = Vec::new();
    let complete = jetmill_testkit::wait_until(Duration::from_secs(30), || {
        spans = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let all = wanted
            .iter()
            .all(|(svc, name)| spans.iter().any(|s| s.service == *svc && s.name == *name));
        std::future::ready(all)
    })
    .await;
    let names: Vec<_> = spans.iter().map(|s| (&s.service, &s.name)).collect();
    assert!(complete, "spans of trace {trace_id}: {names:#?}");

    let by_id: HashMap<String, Span> = spans
        .iter()
        .map(|s| (s.span_id.clone(), s.clone()))
        .collect();
    let find = |svc: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == svc && s.name == name)
            .expect("span present")
            .clone()
    };
    let request = find("jetmill-gateway", "POST /v1/jobs");
    let publish = find("jetmill-gateway", "publish");
    let job = find("jetmill-worker", "job");
    assert_eq!(
        publish.parent_span_id, request.span_id,
        "publish is inside the request"
    );
    assert_eq!(
        job.parent_span_id, publish.span_id,
        "the worker's job span is a child of the publish"
    );
    let queue_wait = find("jetmill-worker", "queue wait");
    assert_eq!(
        queue_wait.parent_span_id, publish.span_id,
        "the queue wait follows the publish"
    );
    let compute = find("jetmill-worker", "compute");
    assert_eq!(
        find("jetmill-worker", "kernel").parent_span_id,
        compute.span_id,
        "the kernel's span is inside compute"
    );
    for name in ["fetch", "compute", "result write", "event done"] {
        assert_eq!(
            find("jetmill-worker", name).parent_span_id,
            job.span_id,
            "{name} is a step of the attempt"
        );
    }
    for name in ["fetch", "compute", "kernel", "result write", "event done"] {
        let s = find("jetmill-worker", name);
        assert!(
            descends_from(&s, &job, &by_id),
            "{name} is under the job span"
        );
        assert!(
            descends_from(&s, &request, &by_id),
            "{name} is under the HTTP request"
        );
    }

    // The worker's JSON lines: every line parses; the job's lines carry its id and trace id.
    let job_id = record["id"].as_str().expect("id").to_string();
    let lines = json_lines(&worker);
    let job_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "job started" || l["message"] == "job done")
        .collect();
    assert_eq!(job_lines.len(), 2, "{lines:#?}");
    for l in job_lines {
        assert_eq!(l["span"]["job_id"], job_id.as_str(), "{l}");
        assert_eq!(l["span"]["trace_id"], trace_id.as_str(), "{l}");
    }
    // Every line logged inside the job's span (whatever the innermost span) names both.
    let mut inside = 0;
    for l in &lines {
        let Some(job_span) = l["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "job"))
        else {
            continue;
        };
        inside += 1;
        assert_eq!(job_span["job_id"], job_id.as_str(), "{l}");
        assert_eq!(job_span["trace_id"], trace_id.as_str(), "{l}");
    }
    assert!(inside >= 2, "{lines:#?}");
}

#[tokio::test]
async fn json_logs_carry_job_id_without_trace_export() {
    let nats = NatsServer::start();
    let (_gateway, worker, base) = start_pair(&nats, None).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in [5, 6, 7] {
        let record = run_job(
            &http,
            &base,
            serde_json::json!({"kind": "fibonacci", "input": n}),
        )
        .await;
        assert!(
            record.get("trace_id").is_none(),
            "no export, no trace: {record}"
        );
        ids.push(record["id"].as_str().expect("id").to_string());
    }
    let done_line = |lines: &[Value], id: &str| {
        lines
            .iter()
            .filter(|l| {
                l["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == "job"))
            })
            .filter(|l| l["span"]["job_id"] == id || l["spans"][0]["job_id"] == id)
            .any(|l| l["message"] == "job done")
    };
    // The worker logs "job done" just after the record says done, which the client may
    // see first: wait for the lines rather than read the log once.
    jetmill_testkit::wait_until(Duration::from_secs(30), || {
        let lines = json_lines(&worker);
        let all = ids.iter().all(|id| done_line(&lines, id));
        async move { all }
    })
    .await;
    let lines = json_lines(&worker);
    assert!(!lines.is_empty());
    for id in &ids {
        assert!(
            done_line(&lines, id),
            "job {id} has a 'job done' line with its id: {lines:#?}"
        );
    }
    // Every line logged inside a job span names the job.
    for l in &lines {
        if let Some(spans) = l["spans"].as_array() {
            if spans.iter().any(|s| s["name"] == "job") {
                let job = spans.iter().find(|s| s["name"] == "job").expect("job span");
                assert!(job["job_id"].is_string(), "{l}");
            }
        }
    }
}

#[tokio::test]
async fn a_quiet_log_level_keeps_exporting_spans() {
    let nats = NatsServer::start();
    let receiver = Receiver::start().await;
    let gateway = spawn_jetmill(
        "quiet-gateway",
        &["gateway", "--server", nats.url(), "--listen", "127.0.0.1:0"],
        Some(&receiver.endpoint),
    );
    let base = gateway_base(&gateway).await;
    let worker = spawn_jetmill(
        "quiet-worker",
        &[
            "--log-level",
            "warn",
            "worker",
            "--server",
            nats.url(),
            "--worker-id",
            "quiet",
        ],
        Some(&receiver.endpoint),
    );
    let http = reqwest::Client::new();
    let record = run_job(
        &http,
        &base,
        serde_json::json!({"kind": "fibonacci", "input": 40}),
    )
    .await;
    let trace_id = record["trace_id"].as_str().expect("trace id").to_string();
    let exported = jetmill_testkit::wait_until(Duration::from_secs(30), || {
        let spans = receiver.spans();
        std::future::ready(["job", "compute", "kernel"].iter().all(|name| {
            spans
                .iter()
                .any(|s| s.trace_id == trace_id && s.service == "jetmill-worker" && s.name == *name)
        }))
    })
    .await;
    assert!(exported, "worker spans exported at log level warn");
    assert!(
        json_lines(&worker)
            .iter()
            .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"),
        "the log output still honours --log-level"
    );
}
