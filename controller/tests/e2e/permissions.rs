//! NATS roles: the real `docker/nats/nats.conf` and `accounts.conf`, with passwords made by
//! the real `scripts/docker-secrets.sh`, on a real nats-server. Each role's credentials run
//! its part of jetmill, and are refused what the role must not do.
//!
//! A refused publish (the server's permission check) is answered only on the connection,
//! as `-ERR 'Permissions Violation for Publish to "<subject>"'`; the request itself gets
//! no answer and times out. The refusal tests therefore assert both: the operation failed,
//! and the server named exactly that subject as a permission violation.

use crate::helpers::{worker_args, TestApp};
use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use futures::StreamExt;
use jetmill_natsx::NatsArgs;
use jetmill_testkit::{workspace_root, NatsServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;

/// The secrets a nats-server running the deployment's config was started with.
struct Secured {
    /// The server's client URL.
    url: String,
    /// `<tmp>/run/secrets`: `nats-<role>-password`, `nats-passwords.conf`, `jwt-secret`.
    secrets: PathBuf,
    _dir: tempfile::TempDir,
}

impl Secured {
    /// Lay out the config as the image does (`/etc/nats/*.conf`, the secret at
    /// `/run/secrets/nats-passwords.conf`) under a temp dir, and start the server on it.
    fn start() -> (Secured, NatsServer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let etc = dir.path().join("etc/nats");
        std::fs::create_dir_all(&etc).expect("etc dir");
        for file in ["nats.conf", "accounts.conf", "cluster.conf"] {
            std::fs::copy(
                workspace_root().join("docker/nats").join(file),
                etc.join(file),
            )
            .unwrap_or_else(|e| panic!("copy docker/nats/{file}: {e}"));
        }
        let secrets = dir.path().join("run/secrets");
        let out = std::process::Command::new("bash")
            .arg(workspace_root().join("scripts/docker-secrets.sh"))
            .arg(&secrets)
            .output()
            .expect("run scripts/docker-secrets.sh");
        assert!(out.status.success(), "docker-secrets.sh: {out:?}");
        let server_file =
            std::fs::read_to_string(secrets.join("nats-passwords.conf")).expect("server file");
        assert!(
            server_file.contains("JETMILL_WORKER_PASSWORD: \"$2"),
            "the server gets bcrypt hashes, not passwords: {server_file}"
        );
        let nats = NatsServer::start_with_config(&etc.join("nats.conf"));
        let secured = Secured {
            url: nats.url().to_string(),
            secrets,
            _dir: dir,
        };
        (secured, nats)
    }

    fn password_file(&self, role: &str) -> PathBuf {
        self.secrets.join(format!("nats-{role}-password"))
    }

    fn password(&self, role: &str) -> String {
        std::fs::read_to_string(self.password_file(role))
            .expect("password file")
            .trim()
            .to_string()
    }

    /// The connection flags of `role`, with the password from its secret file.
    fn args(&self, role: &str) -> NatsArgs {
        let mut args = NatsArgs::with_url(self.url.clone());
        args.user = Some(role.into());
        args.password_file = Some(self.password_file(role));
        args
    }

    /// The CLI flags of `role`.
    fn flags(&self, role: &str) -> Vec<String> {
        vec![
            "--server".into(),
            self.url.clone(),
            "--user".into(),
            role.into(),
            "--password-file".into(),
            self.password_file(role).display().to_string(),
        ]
    }

    /// A client of `role` with a 1 s request timeout, and the server errors it receives.
    async fn client(&self, role: &str) -> (async_nats::Client, ServerErrors) {
        let (tx, rx) = mpsc::unbounded_channel();
        let client =
            async_nats::ConnectOptions::with_user_and_password(role.into(), self.password(role))
                .request_timeout(Some(Duration::from_secs(1)))
                .event_callback(move |event| {
                    let tx = tx.clone();
                    async move {
                        if let async_nats::Event::ServerError(e) = event {
                            let _ = tx.send(e.to_string());
                        }
                    }
                })
                .connect(&self.url)
                .await
                .unwrap_or_else(|e| panic!("{role} connects: {e}"));
        (client, ServerErrors(rx))
    }
}

/// The server errors one connection received.
struct ServerErrors(mpsc::UnboundedReceiver<String>);

impl ServerErrors {
    /// Wait (up to 5 s) for the server to report a permission violation for publishing
    /// to `subject`; panics with what it reported instead.
    async fn publish_refused(&mut self, subject: &str) {
        let want = format!("permissions violation for publish to \"{subject}\"").to_lowercase();
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Ok(Some(e)) if e.to_lowercase().contains(&want) => return,
                Ok(Some(e)) => seen.push(e),
                _ => panic!("no permission violation for {subject}; server errors: {seen:?}"),
            }
        }
    }
}

/// Run `jetmill <args>` (the real binary) with no NATS variables from the environment.
async fn jetmill(args: &[String]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
        .args(args)
        .env_remove("JETMILL_NATS_URL")
        .env_remove("JETMILL_NATS_USER")
        .env_remove("JETMILL_NATS_PASSWORD")
        .env_remove("JETMILL_NATS_PASSWORD_FILE")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run jetmill")
}

async fn jetmill_ok(secured: &Secured, role: &str, args: &[&str]) -> String {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(secured.flags(role));
    let out = jetmill(&all).await;
    let text = format!(
        "jetmill {args:?} as {role}: exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn provision(secured: &Secured) -> Vec<Value> {
    let out = jetmill_ok(secured, "controller", &["provision", "--json"]).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("provision --json: {e}: {out}"))
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let resp = app.http.get(app.url(path)).send().await.expect("GET");
    assert_eq!(resp.status().as_u16(), 200, "GET {path}");
    resp.json().await.expect("json")
}

/// Poll `jetmill stats --json` as the inspector until `pred` holds (30 s at most).
async fn wait_stats(secured: &Secured, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = jetmill_ok(secured, "inspector", &["stats", "--json"]).await;
        let stats: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats --json: {e}: {out}"));
        if pred(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never showed {what}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_role_runs_its_part_with_its_own_credentials_end_to_end() {
    let (secured, nats) = Secured::start();
    let report = provision(&secured).await;
    assert!(
        report.iter().all(|p| p["created"] == json!(true)),
        "a fresh server: everything created: {report:?}"
    );
    for want in [
        "JOBS",
        "EVENTS",
        "jobs",
        "config",
        "results",
        "JOBS/workers-high",
        "JOBS/workers-normal",
        "JOBS/workers-low",
        "SCHEDULES",
        "SCHEDULES/due",
    ] {
        assert!(
            report.iter().any(|p| p["name"] == json!(want)),
            "{want} provisioned: {report:?}"
        );
    }
    let again = provision(&secured).await;
    assert_eq!(again.len(), report.len());
    assert!(
        again.iter().all(|p| p["created"] == json!(false)),
        "a second run finds everything: {again:?}"
    );

    // The gateway and the worker each with their own user, neither allowed to create.
    let gateway_nats = secured.args("gateway");
    let app = TestApp::on(nats, |a| a.nats = gateway_nats).await;
    let mut worker = worker_args(&secured.url);
    worker.nats = secured.args("worker");
    worker.id = Some("w-roles".into());
    app.start_worker_in_process(worker);

    // 20000! has 77,338 digits: over the 64 KiB inline limit, so it goes through the
    // object store (the worker writes it, the gateway reads it back).
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 20000}))
        .await;
    let job = app.wait_finished(&id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "done", "{job}");
    let result = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/result")))
        .send()
        .await
        .expect("GET result");
    assert_eq!(result.status().as_u16(), 200);
    let digits = result.text().await.expect("result body");
    assert_eq!(digits.trim().len(), 77_338, "the whole result came back");

    // The rest of the API under the gateway's user: a listing, a job's event feed, an
    // idempotent resubmit, a batch long-polled to its end, a cancel, usage, workers,
    // readiness and metrics.
    let list = get_json(&app, "/v1/jobs").await;
    assert!(
        list["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["id"] == json!(id))),
        "{list}"
    );
    let feed = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .expect("GET events")
        .text()
        .await
        .expect("feed");
    assert!(feed.contains("event: done"), "{feed}");
    let mut keyed = Vec::new();
    for _ in 0..2 {
        let resp = app
            .http
            .post(app.url("/v1/jobs"))
            .header("Idempotency-Key", "roles-1")
            .json(&json!({"kind": "factorial", "input": 10}))
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        keyed.push((status, body["id"].clone()));
    }
    assert_eq!((keyed[0].0, keyed[1].0), (202, 200), "{keyed:?}");
    assert_eq!(keyed[0].1, keyed[1].1, "the key named the same job");
    let batch: Value = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .json(&json!([{"kind": "factorial", "input": 5}, {"kind": "sum", "input": [1, 2]}]))
        .send()
        .await
        .expect("POST batch")
        .json()
        .await
        .expect("json");
    let batch_id = batch["id"].as_str().unwrap_or_else(|| panic!("{batch}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let b = get_json(&app, &format!("/v1/batches/{batch_id}?wait=10s")).await;
        if b["done"] == json!(true) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "batch: {b}");
    }
    let long = app
        .submit_ok(json!({"kind": "factorial", "input": 100_000_000}))
        .await;
    app.wait_record(&long, Duration::from_secs(30), "running", |r| {
        r["status"] == json!("running")
    })
    .await;
    let (status, body) = app.cancel(&long).await;
    assert_eq!(status, 200, "{body}");
    let job = app.wait_finished(&long, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    // Delayed jobs: the gateway schedules and unschedules, the worker moves the due one.
    let soon = app
        .submit_ok(json!({"kind": "factorial", "input": 12, "delay": "1s"}))
        .await;
    let later = app
        .submit_ok(json!({"kind": "factorial", "input": 13, "delay": "1h"}))
        .await;
    let (status, body) = app.cancel(&later).await;
    assert_eq!(status, 200, "the gateway purges a schedule: {body}");
    let job = app.wait_finished(&soon, Duration::from_secs(30)).await;
    assert_eq!(job["result"], "479001600", "{job}");
    for path in ["/v1/usage", "/v1/workers", "/readyz"] {
        let resp = app.http.get(app.url(path)).send().await.expect("GET");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("jetmill_"), "{metrics}");

    // The operator's commands apply on the worker (the controller writes `config`, the
    // worker reads it and reports), the inspector watches: a job of a kind disabled
    // while it was queued is parked by the worker, and unparked and run once enabled.
    jetmill_ok(&secured, "controller", &["freeze", "--json"]).await;
    let parked = app
        .submit_ok(json!({"kind": "fibonacci", "input": 1000}))
        .await;
    jetmill_ok(
        &secured,
        "controller",
        &["kind", "disable", "fibonacci", "--json"],
    )
    .await;
    jetmill_ok(&secured, "controller", &["resume", "--json"]).await;
    wait_stats(&secured, "the fibonacci job parked", |s| {
        s["parked"]["normal.fibonacci"] == json!(1)
    })
    .await;
    jetmill_ok(
        &secured,
        "controller",
        &["kind", "enable", "fibonacci", "--json"],
    )
    .await;
    let job = app.wait_finished(&parked, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "done", "{job}");
    let stats = wait_stats(&secured, "the jobs finished", |s| {
        // 20000!, the keyed job, the batch's two, the delayed one and the unparked one
        // (not the cancelled ones).
        s["finished_last_minute"] == json!(6)
    })
    .await;
    assert_eq!(stats["live_workers"], json!(1), "{stats}");
    let workers = jetmill_ok(&secured, "inspector", &["workers", "--json"]).await;
    let workers: Value = serde_json::from_str(&workers).expect("workers --json");
    assert_eq!(workers[0]["id"], json!("w-roles"), "{workers}");
    assert_eq!(workers[0]["frozen"], json!(false), "{workers}");

    // A recurring schedule: the gateway stores it and sets its clock, the worker turns a
    // firing into a job (reading the schedule), the gateway lists and deletes it.
    let created: Value = app
        .http
        .post(app.url("/v1/schedules"))
        .json(&json!({"cron": "@every 1s", "job": {"kind": "factorial", "input": 7}}))
        .send()
        .await
        .expect("POST schedule")
        .json()
        .await
        .expect("json");
    let sid = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let fired = loop {
        let page = get_json(&app, &format!("/v1/jobs?schedule={sid}")).await;
        if let Some(first) = page["jobs"].as_array().and_then(|j| j.last()).cloned() {
            break first;
        }
        assert!(tokio::time::Instant::now() < deadline, "no firing: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = app
        .wait_finished(fired["id"].as_str().expect("id"), Duration::from_secs(30))
        .await;
    assert_eq!(job["result"], "5040", "{job}");
    let list = get_json(&app, "/v1/schedules").await;
    assert_eq!(list["schedules"][0]["id"], json!(sid), "{list}");
    let resp = app
        .http
        .delete(app.url(&format!("/v1/schedules/{sid}")))
        .send()
        .await
        .expect("DELETE schedule");
    assert_eq!(resp.status().as_u16(), 200);

    // A run limit: the controller sets it, the worker takes and gives back the job's
    // place in KV `limits`, the gateway shows it, the inspector lists it.
    jetmill_ok(
        &secured,
        "controller",
        &[
            "limits",
            "set",
            "--kind",
            "sum",
            "--max-running",
            "1",
            "--json",
        ],
    )
    .await;
    let limited = app.submit_ok(json!({"kind": "sum", "input": [1, 2]})).await;
    let job = app.wait_finished(&limited, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "done", "{job}");
    let view = get_json(&app, "/v1/limits").await;
    assert_eq!(view["limits"][0]["scope"], "sum jobs", "{view}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = jetmill_ok(&secured, "inspector", &["limits", "list", "--json"]).await;
        let listed: Value = serde_json::from_str(&listed).expect("limits list --json");
        // Taken and given back: the scope exists and holds nothing now.
        if listed[0]["usage"][0]["running"] == json!(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The sweep under the gateway's user: a workflow and a batch whose jobs expired
    // (their own 1 s retention) are scanned, read and purged.
    let body = json!({"chain": [{"kind": "factorial", "input": 4, "retention": "1s"}]});
    let resp = app
        .http
        .post(app.url("/v1/workflows"))
        .json(&body)
        .send()
        .await
        .expect("POST workflow");
    assert_eq!(resp.status().as_u16(), 202);
    let wf: Value = resp.json().await.expect("json");
    let resp = app
        .http
        .post(app.url("/v1/jobs/batch"))
        .json(&json!([{"kind": "factorial", "input": 3, "retention": "1s"}]))
        .send()
        .await
        .expect("POST batch");
    assert_eq!(resp.status().as_u16(), 202);
    let batch: Value = resp.json().await.expect("json");
    let jobs = [
        wf["steps"][0]["job_id"].as_str().expect("step job"),
        batch["items"][0]["id"].as_str().expect("batch job"),
    ];
    crate::retention::wait_expired(&app, &jobs).await;
    // A sweep that takes 1 s as the deployment's retention, so the two count as old.
    let client = jetmill_natsx::connect(&secured.args("gateway"), "sweep test")
        .await
        .expect("gateway connects");
    let settings = jetmill_natsx::QueueSettings {
        retention: Duration::from_secs(1),
        ..Default::default()
    };
    let jet = jetmill_natsx::provision(client, settings)
        .await
        .expect("the gateway's handles");
    // Swept once they are past that retention and the 1 s clock-skew margin.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (mut workflows, mut batches) = (0, 0);
    while (workflows, batches) != (1, 1) {
        let swept = jetmill_natsx::sweep::once(&jet)
            .await
            .expect("the gateway may sweep");
        (workflows, batches) = (workflows + swept.workflows, batches + swept.batches);
        assert!(
            tokio::time::Instant::now() < deadline && workflows <= 1 && batches <= 1,
            "swept {workflows} workflows and {batches} batches"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn each_role_is_refused_what_it_must_not_do() {
    let (secured, _nats) = Secured::start();
    provision(&secured).await;
    let (controller, _) = secured.client("controller").await;
    let admin = jetstream::new(controller);
    // One queued job that only a worker may take.
    admin
        .publish("jobs.run.normal.factorial", "queued".into())
        .await
        .expect("publish")
        .await
        .expect("queued");

    // A worker cannot write the runtime config (it can write its own report).
    let (worker, mut refused) = secured.client("worker").await;
    let wjs = jetstream::new(worker);
    let config = wjs
        .get_key_value("config")
        .await
        .expect("worker opens config");
    let put = config
        .put("global", br#"{"frozen":true}"#.to_vec().into())
        .await;
    assert!(put.is_err(), "a worker wrote the runtime config");
    refused.publish_refused("$KV.config.global").await;
    let reports = wjs.get_key_value("workers").await.expect("workers bucket");
    reports
        .put("w-x", b"{}".to_vec().into())
        .await
        .expect("a worker writes its report");

    // The gateway cannot consume jobs: no consumer on JOBS, no pull from `workers-<priority>`.
    let (gateway, mut refused) = secured.client("gateway").await;
    let gjs = jetstream::new(gateway);
    let jobs = gjs
        .get_stream("JOBS")
        .await
        .expect("gateway reads JOBS info");
    let thief = jobs
        .create_consumer(pull::Config {
            durable_name: Some("thief".into()),
            filter_subject: "jobs.parked.>".into(),
            ..Default::default()
        })
        .await;
    assert!(thief.is_err(), "the gateway created a consumer on JOBS");
    refused
        .publish_refused("$JS.API.CONSUMER.CREATE.JOBS.thief.jobs.parked.>")
        .await;
    let ephemeral = jobs
        .create_consumer(pull::Config {
            filter_subject: "jobs.parked.>".into(),
            ..Default::default()
        })
        .await;
    assert!(
        ephemeral.is_err(),
        "the gateway created an ephemeral on JOBS"
    );
    refused
        .publish_refused("$JS.API.CONSUMER.CREATE.JOBS")
        .await;
    let workers = jobs
        .get_consumer::<pull::Config>("workers-normal")
        .await
        .expect("the gateway reads the consumer's info (queue gauges)")
        .fetch()
        .max_messages(1)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("a pull request is sent");
    let got: Vec<_> = tokio::time::timeout(Duration::from_secs(3), workers.collect::<Vec<_>>())
        .await
        .unwrap_or_default();
    assert!(
        got.iter().all(|m| m.is_err()),
        "the gateway got a job from the workers consumer"
    );
    refused
        .publish_refused("$JS.API.CONSUMER.MSG.NEXT.JOBS.workers-normal")
        .await;

    // The inspector reads: stream and consumer info, KV values, and messages through an
    // ephemeral consumer the server names.
    let (inspector, mut refused) = secured.client("inspector").await;
    let ijs = jetstream::new(inspector.clone());
    let mut live = inspector
        .subscribe("jobs.events.>")
        .await
        .expect("the inspector watches live events");
    inspector.flush().await.expect("flush");
    // Publish until the subscription sees one (10 s at most). On a loaded CI box the
    // first event after the flushed SUB was once not delivered; the cause is not known
    // (a reconnect would drop it), and what the role must show is that it can watch.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        admin
            .publish("jobs.events.j0.started", "{}".into())
            .await
            .expect("publish")
            .await
            .expect("event stored");
        match tokio::time::timeout(Duration::from_millis(500), live.next()).await {
            Ok(seen) => break seen.expect("subscription open"),
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the inspector saw no live event within 10 s"
            ),
        }
    };
    assert_eq!(seen.subject.as_str(), "jobs.events.j0.started");
    let jobs = ijs.get_stream("JOBS").await.expect("inspector reads JOBS");
    let info = jobs
        .consumer_info("workers-normal")
        .await
        .expect("inspector reads the workers consumer");
    assert_eq!(info.num_pending, 1, "the queued job is still there");
    let records = ijs
        .get_key_value("jobs")
        .await
        .expect("inspector opens jobs");
    assert!(records.get("acme.none").await.expect("a KV get").is_none());
    admin
        .publish("jobs.events.j1.accepted", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("event stored");
    let events = ijs
        .get_stream("EVENTS")
        .await
        .expect("inspector reads EVENTS");
    let reader = events
        .create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: inspector.new_inbox(),
            filter_subject: "jobs.events.j1.>".into(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("the inspector reads through an ephemeral ordered consumer");
    let mut messages = reader.messages().await.expect("messages");
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .expect("an event within 5 s")
        .expect("stream open")
        .expect("a message");
    assert_eq!(first.subject.as_str(), "jobs.events.j1.accepted");
    drop(messages);

    // ... and changes nothing.
    let publish = ijs
        .publish("jobs.run.normal.factorial", "sneaky".into())
        .await
        .expect("sent");
    assert!(publish.await.is_err(), "the inspector queued a job");
    refused.publish_refused("jobs.run.normal.factorial").await;
    assert!(
        records.put("acme.j1", b"{}".to_vec().into()).await.is_err(),
        "the inspector wrote a record"
    );
    refused.publish_refused("$KV.jobs.acme.j1").await;
    let keys = ijs
        .get_key_value("idempotency")
        .await
        .expect("inspector opens idempotency");
    assert!(
        keys.put("acme.k", b"{}".to_vec().into()).await.is_err(),
        "the inspector claimed an idempotency key (only the store probe's key is allowed)"
    );
    refused.publish_refused("$KV.idempotency.acme.k").await;
    assert!(
        ijs.delete_stream("JOBS").await.is_err(),
        "the inspector deleted JOBS"
    );
    refused.publish_refused("$JS.API.STREAM.DELETE.JOBS").await;
    let durable = events
        .create_consumer(pull::Config {
            durable_name: Some("spy".into()),
            ..Default::default()
        })
        .await;
    assert!(durable.is_err(), "the inspector created a durable consumer");
    refused
        .publish_refused("$JS.API.CONSUMER.CREATE.EVENTS.spy")
        .await;
    // On the one create subject it may use, the server itself refuses a durable.
    let answer: jetstream::response::Response<jetstream::consumer::Info> = ijs
        .request(
            "CONSUMER.CREATE.EVENTS",
            &json!({"stream_name": "EVENTS", "config": {"durable_name": "spy", "ack_policy": "explicit"}}),
        )
        .await
        .expect("the server answers");
    match answer {
        jetstream::response::Response::Err { error } => {
            assert!(error.to_string().contains("durable"), "{error}")
        }
        jetstream::response::Response::Ok(info) => {
            panic!("the inspector made a durable consumer: {info:?}")
        }
    }
    assert!(
        jobs.delete_consumer("workers-normal").await.is_err(),
        "the inspector deleted the workers consumer"
    );
    refused
        .publish_refused("$JS.API.CONSUMER.DELETE.JOBS.workers-normal")
        .await;

    // Nothing any of them tried landed.
    let jobs = admin.get_stream("JOBS").await.expect("JOBS still there");
    let info = jobs
        .consumer_info("workers-normal")
        .await
        .expect("workers still there");
    assert_eq!((info.num_pending, info.num_ack_pending), (1, 0));
    let config = admin.get_key_value("config").await.expect("config");
    assert!(config.entry("global").await.expect("read").is_none());
    let names: Vec<String> = admin
        .get_stream("EVENTS")
        .await
        .expect("EVENTS")
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(!names.iter().any(|n| n == "spy"), "{names:?}");

    // A wrong password, or another role's, is refused at connect.
    for (user, password) in [
        ("gateway", "wrong".to_string()),
        ("controller", secured.password("inspector")),
    ] {
        let err = async_nats::ConnectOptions::with_user_and_password(user.into(), password)
            .connect(&secured.url)
            .await
            .expect_err("a wrong password is refused");
        assert_eq!(
            err.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{user}: {err}"
        );
    }

    // The CLI says why a refused command timed out, and what to do about it; the
    // runtime config is untouched.
    let mut args: Vec<String> = vec!["freeze".into()];
    args.extend(secured.flags("worker"));
    let out = jetmill(&args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("hint: the NATS server refused this user")
            && stderr.contains("$KV.config.global")
            && stderr.contains("--user"),
        "{stderr}"
    );
    let shown = jetmill_ok(&secured, "inspector", &["config", "show", "--json"]).await;
    let shown: Value = serde_json::from_str(&shown).expect("config show --json");
    assert_ne!(shown["global"]["frozen"], json!(true), "{shown}");
}

/// Lines of a JSON log file that mention `needle`.
fn log_lines(path: &Path, needle: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn wait_log(path: &Path, needle: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(line) = log_lines(path, needle).into_iter().next() {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never logged {needle:?}:\n{}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spawn_part(secured: &Secured, role: &str, args: &[&str], log: &Path) -> tokio::process::Child {
    let file = std::fs::File::create(log).expect("log file");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
        .args(args)
        .args(secured.flags(role))
        .env_remove("JETMILL_NATS_URL")
        .env("JETMILL_LOG_FORMAT", "json")
        .env("JETMILL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("start jetmill")
}

#[tokio::test]
async fn a_gateway_and_a_worker_that_may_not_create_streams_wait_for_jetmill_provision() {
    let (secured, _nats) = Secured::start();
    let logs = tempfile::tempdir().expect("log dir");
    let gateway_log = logs.path().join("gateway.log");
    let worker_log = logs.path().join("worker.log");
    let mut gateway = spawn_part(
        &secured,
        "gateway",
        &["gateway", "--listen", "127.0.0.1:0"],
        &gateway_log,
    );
    let mut worker = spawn_part(
        &secured,
        "worker",
        &["worker", "--worker-id", "w-wait"],
        &worker_log,
    );
    // Creating the first stream is refused (no answer: 10 s), then they say what to do.
    for log in [&gateway_log, &worker_log] {
        let line = wait_log(log, "jetmill provision", Duration::from_secs(60)).await;
        assert_eq!(line["missing"], json!("stream JOBS"), "{line}");
    }
    assert!(
        gateway.try_wait().expect("gateway").is_none(),
        "the gateway exited"
    );
    assert!(
        worker.try_wait().expect("worker").is_none(),
        "the worker exited"
    );

    // The operator provisions the workers consumer with other settings than the worker's
    // flags: the worker may not change them, says so, and runs with the stored ones.
    let out = jetmill_ok(
        &secured,
        "controller",
        &["provision", "--max-ack-pending", "500"],
    )
    .await;
    assert!(out.contains("created"), "{out}");
    let listening = wait_log(&gateway_log, "gateway listening", Duration::from_secs(60)).await;
    wait_log(&worker_log, "worker started", Duration::from_secs(60)).await;
    let addr = listening["addr"]
        .as_str()
        .unwrap_or_else(|| panic!("address in {listening}"))
        .to_string();

    let http = reqwest::Client::new();
    let submitted: Value = http
        .post(format!("http://{addr}/v1/jobs"))
        .json(&json!({"kind": "factorial", "input": 1000}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let id = submitted["id"].as_str().expect("id").to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job: Value = http
            .get(format!("http://{addr}/v1/jobs/{id}"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if job["status"] == json!("done") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job not done: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warned = wait_log(&worker_log, "could not update", Duration::from_secs(5)).await;
    assert_eq!(warned["stored_max_ack_pending"], json!(500), "{warned}");
    assert_eq!(warned["wanted_max_ack_pending"], json!(10_000), "{warned}");
    assert!(
        log_lines(&gateway_log, "could not update").is_empty(),
        "the gateway changes no consumer"
    );
}

#[test]
fn the_cluster_config_is_valid_for_every_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc/nats");
    std::fs::create_dir_all(&etc).expect("etc dir");
    for file in ["cluster.conf", "accounts.conf"] {
        std::fs::copy(
            workspace_root().join("docker/nats").join(file),
            etc.join(file),
        )
        .expect("copy config");
    }
    let out = std::process::Command::new("bash")
        .arg(workspace_root().join("scripts/docker-secrets.sh"))
        .arg(dir.path().join("run/secrets"))
        .output()
        .expect("secrets");
    assert!(out.status.success(), "{out:?}");
    for node in ["nats1", "nats2", "nats3"] {
        let out = std::process::Command::new(jetmill_testkit::nats_server_bin())
            .args(["-t", "-c"])
            .arg(etc.join("cluster.conf"))
            .env("NATS_SERVER_NAME", node)
            .output()
            .expect("nats-server -t");
        assert!(
            out.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn a_create_the_server_answers_with_an_error_still_fails_at_once_without_auth() {
    // No auth (as `jetmill dev`): a stream the server refuses (3 replicas on one node) is
    // an error to exit on, not a missing object to wait for.
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let settings = jetmill_natsx::QueueSettings {
        replicas: 3,
        ..Default::default()
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(15),
        jetmill_natsx::until_provisioned(|| {
            jetmill_natsx::provision(client.clone(), settings.clone())
        }),
    )
    .await
    .expect("answered at once, no waiting");
    match outcome {
        Err(e @ jetmill_natsx::NatsxError::Provision { .. }) => {
            assert!(e.to_string().contains("stream JOBS"), "{e}")
        }
        Err(e) => panic!("expected a provisioning error, got {e}"),
        Ok(_) => panic!("3 replicas on a single node were accepted"),
    }
}
