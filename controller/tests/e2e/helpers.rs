//! `TestApp`: a nats-server, a gateway on a free port, and workers, per test.

use jetmill_gateway::{Application, GatewayArgs};
use jetmill_testkit::NatsServer;
use jetmill_worker::WorkerArgs;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running jetmill on its own nats-server, stopped on drop.
pub struct TestApp {
    pub nats: NatsServer,
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub workers: Vec<WorkerProcess>,
}

/// A `jetmill worker` child process, killed on drop.
pub struct WorkerProcess {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl WorkerProcess {
    /// Wait until the worker logged that it started (its subscriptions are live).
    pub async fn wait_started(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains("worker started")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker did not start within 30 s; its log ({}):\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send a signal by name (`KILL`, `TERM`, `INT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// Wait for the process to exit; returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let early_exit = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Some(status) = early_exit {
                eprintln!("worker process had already exited: {status}");
            }
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Start a gateway on a free loopback port against `nats_url`; returns its base URL.
/// It stops when `shutdown` is cancelled.
pub async fn start_gateway(
    nats_url: &str,
    shutdown: &CancellationToken,
    configure: impl FnOnce(&mut GatewayArgs),
) -> String {
    let mut args = GatewayArgs::local(nats_url, SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("gateway defaults");
    // Most tests exercise the workers with repeated inputs, which the result cache
    // would answer without them; the cache's own tests turn it back on.
    args.result_cache = false;
    configure(&mut args);
    let app = Application::build(&args).await.expect("gateway starts");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    base
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Worker flags for tests: quick retries, short drain.
pub fn worker_args(nats_url: &str) -> WorkerArgs {
    let mut w = WorkerArgs::local(nats_url).expect("worker defaults");
    w.retry_base_ms = 50;
    w.drain_grace_secs = 5.0;
    w
}

impl TestApp {
    /// nats-server + gateway, no worker yet.
    pub async fn gateway_only() -> TestApp {
        Self::gateway_with(|_| {}).await
    }

    /// nats-server + a gateway whose defaults `configure` may change (auth, cache...).
    pub async fn gateway_with(configure: impl FnOnce(&mut GatewayArgs)) -> TestApp {
        Self::on(NatsServer::start(), configure).await
    }

    /// A gateway (configured by `configure`) on a nats-server the test started itself,
    /// e.g. one with a small store.
    pub async fn on(nats: NatsServer, configure: impl FnOnce(&mut GatewayArgs)) -> TestApp {
        let shutdown = CancellationToken::new();
        let base = start_gateway(nats.url(), &shutdown, configure).await;
        TestApp {
            nats,
            base,
            http: reqwest::Client::new(),
            shutdown,
            workers: Vec::new(),
        }
    }

    /// nats-server + gateway + one in-process worker.
    pub async fn spawn() -> TestApp {
        let app = Self::gateway_only().await;
        app.start_worker_in_process(worker_args(app.nats.url()));
        app
    }

    /// Run a worker inside this test process until the app is dropped.
    pub fn start_worker_in_process(&self, args: WorkerArgs) {
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = jetmill_worker::run(args, token).await {
                panic!("in-process worker failed: {e:#}");
            }
        });
    }

    /// Start `jetmill worker` as a separate process.
    pub fn start_worker_process(&mut self, id: &str, extra: &[&str]) {
        let log =
            std::env::temp_dir().join(format!("jetmill-test-{}-{id}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("worker log file");
        let child = Command::new(env!("CARGO_BIN_EXE_jetmill"))
            .args(["worker", "--server", self.nats.url(), "--worker-id", id])
            .args(if extra.contains(&"--retry-base-ms") {
                &[][..]
            } else {
                &["--retry-base-ms", "50"][..]
            })
            .args(extra)
            .env_remove("JETMILL_NATS_URL")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start jetmill worker");
        self.workers.push(WorkerProcess { child, log });
    }

    /// Run the `jetmill` CLI against this app's NATS and gateway.
    pub async fn jetmill(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
            .args(args)
            .env("JETMILL_NATS_URL", self.nats.url())
            .env("JETMILL_GATEWAY_URL", &self.base)
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output()
            .await
            .expect("run jetmill")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST a job body; returns (status, json body).
    pub async fn submit(&self, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url("/v1/jobs"))
            .json(body)
            .send()
            .await
            .expect("POST /v1/jobs");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Submit and expect 202; returns the job id.
    pub async fn submit_ok(&self, body: Value) -> String {
        let (status, json) = self.submit(&body).await;
        assert_eq!(status, 202, "submit {body} -> {json}");
        json["id"].as_str().expect("id in 202 body").to_string()
    }

    pub async fn get_job(&self, id: &str) -> Value {
        let resp = self
            .http
            .get(self.url(&format!("/v1/jobs/{id}")))
            .send()
            .await
            .expect("GET job");
        assert_eq!(resp.status().as_u16(), 200, "GET /v1/jobs/{id}");
        resp.json().await.expect("job json")
    }

    /// Poll the record until its status is terminal; panics after `timeout`.
    pub async fn wait_finished(&self, id: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = self.get_job(id).await;
            if matches!(
                last["status"].as_str(),
                Some("done" | "failed" | "cancelled")
            ) {
                return last;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} did not finish within {timeout:?}; last record: {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// DELETE /v1/jobs/{id}; returns (status, json body).
    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(self.url(&format!("/v1/jobs/{id}")))
            .send()
            .await
            .expect("DELETE job");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Poll the record until `pred` holds; returns it, panics after `timeout`.
    pub async fn wait_record(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rec = self.get_job(id).await;
            if pred(&rec) {
                return rec;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id}: {what} not reached within {timeout:?}; last record: {rec}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lifecycle events of one job, in order, as JSON, as the feeds show them: an
    /// event standing for its attempt's `started` (`JobEvent::implied_start`) is
    /// preceded by that `started`.
    pub async fn events_of(&self, id: &str) -> Vec<Value> {
        use async_nats::jetstream::consumer::{pull, DeliverPolicy};
        use futures::{StreamExt, TryStreamExt};
        let js = self.js().await;
        let stream = js
            .get_stream(jetmill_proto::names::EVENTS_STREAM)
            .await
            .expect("events stream");
        let subject = format!("jobs.events.{id}.*");
        let counts: Vec<(String, usize)> = stream
            .info_with_subjects(&subject)
            .await
            .expect("subjects")
            .try_collect()
            .await
            .expect("subject counts");
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                filter_subject: subject,
                ..Default::default()
            })
            .await
            .expect("ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut out = Vec::new();
        for _ in 0..total {
            let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .expect("event within 10 s")
                .expect("stream open")
                .expect("event");
            let event: jetmill_proto::JobEvent =
                serde_json::from_slice(&m.payload).expect("event json");
            if let Some(started) = event.implied_start() {
                out.push(serde_json::to_value(started).expect("event json"));
            }
            out.push(serde_json::from_slice(&m.payload).expect("event json"));
        }
        out
    }

    /// A JetStream context on the test's server, for inspecting state.
    pub async fn js(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.nats.url())
            .await
            .expect("connect to test nats");
        async_nats::jetstream::new(client)
    }

    /// The `jobs` KV bucket (job records), for tests that read or write it directly.
    pub async fn jobs_kv(&self) -> async_nats::jetstream::kv::Store {
        self.js()
            .await
            .get_key_value("jobs")
            .await
            .expect("jobs bucket")
    }

    /// Messages currently in a stream.
    pub async fn stream_messages(&self, stream: &str) -> u64 {
        let js = self.js().await;
        let mut s = js.get_stream(stream).await.expect("stream exists");
        s.info().await.expect("stream info").state.messages
    }
}

/// A `jetmill gateway` child process on a fixed port, killed on drop.
pub struct GatewayProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl GatewayProcess {
    pub fn start(nats_url: &str, port: u16, generation: usize) -> GatewayProcess {
        let log = std::env::temp_dir().join(format!(
            "jetmill-test-{}-gateway-{port}-{generation}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).expect("gateway log file");
        let child = Command::new(env!("CARGO_BIN_EXE_jetmill"))
            .args(["gateway", "--server", nats_url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // Distinct inputs anyway; the cache must not answer for the workers.
            .args(["--result-cache", "false"])
            .env_remove("JETMILL_NATS_URL")
            .env_remove("JETMILL_LISTEN")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start jetmill gateway");
        GatewayProcess { child, log }
    }

    pub fn kill9(&mut self) {
        let ok = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -KILL gateway failed");
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- last lines of {} ---", self.log.display());
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A free loopback port (bound and released; the gateway binds it with SO_REUSEADDR).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Wait until `base` answers `/healthz`.
pub async fn wait_serving(http: &reqwest::Client, base: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway at {base} not serving after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A record's RFC 3339 time `field` as Unix ms.
pub fn ms(rec: &Value, field: &str) -> i64 {
    use time::format_description::well_known::Rfc3339;
    let text = rec[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {rec}"));
    let t = time::OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
