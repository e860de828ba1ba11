//! Shared by the Docker scenarios: the engine (or a skip), the HTTP API through a
//! published port, and exactly-once counts from the EVENTS stream.

use futures::{StreamExt, TryStreamExt};
use jetmill_testkit::docker::{self, Docker};
use jetmill_testkit::workspace_root;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The machine's Docker engine, or `None` when `JETMILL_SKIP_DOCKER_TESTS=1`.
/// Panics saying why when dockerd cannot be used.
pub fn docker_or_skip() -> Option<Docker> {
    if docker::skipped() {
        return None;
    }
    match Docker::acquire() {
        Ok(d) => Some(d),
        Err(e) => panic!("Docker is needed for this test: {e}"),
    }
}

/// The `jetmill` binary cargo built for these tests (copied into the test images).
pub fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_jetmill"))
}

/// An HS256 bearer token for tenant `sub`, valid for an hour.
pub fn jwt(secret: &str, sub: &str) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    encode(
        &Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign token")
}

/// The gateway API at `base` with a bearer token.
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String, token: String) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        Api { base, token, http }
    }

    /// `GET /readyz` answers 200 now.
    pub async fn is_ready(&self) -> bool {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Wait until `GET /readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_ready().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway at {} not ready within {timeout:?}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Submit a job under `key` (its `Idempotency-Key`), retrying transport errors and
    /// 5xx (a gateway or NATS node may be restarting) until `deadline`: a retry of a
    /// request that did reach a gateway gets the same job, never a second one. Returns
    /// the job id.
    pub async fn submit(&self, key: &str, body: &Value, deadline: Instant) -> String {
        let mut last = String::new();
        while Instant::now() < deadline {
            let resp = self
                .http
                .post(format!("{}/v1/jobs", self.base))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .await;
            match resp {
                // 200: a replay of an earlier attempt that got through.
                Ok(r) if matches!(r.status().as_u16(), 200 | 202) => {
                    let v: Value = r.json().await.expect("202 body");
                    return v["id"].as_str().expect("id").to_string();
                }
                Ok(r) if r.status().is_server_error() => {
                    last = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
                }
                Ok(r) => panic!(
                    "submit {body}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("submit {body} kept failing; last: {last}");
    }

    /// The job record (retrying transport errors and 5xx until `deadline`).
    pub async fn get(&self, id: &str, deadline: Instant) -> Value {
        let mut last = String::new();
        while Instant::now() < deadline {
            let resp = self
                .http
                .get(format!("{}/v1/jobs/{id}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => return r.json().await.expect("record"),
                Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("GET /v1/jobs/{id} kept failing; last: {last}");
    }

    /// Wait until every job is terminal; returns the records.
    pub async fn wait_all_finished(&self, ids: &[String], timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        futures::stream::iter(ids)
            .map(|id| async move {
                loop {
                    let rec = self.get(id, deadline).await;
                    if matches!(
                        rec["status"].as_str(),
                        Some("done" | "failed" | "cancelled")
                    ) {
                        return rec;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "job {id} not finished within {timeout:?}: {rec}"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
            .buffered(16)
            .collect()
            .await
    }
}

/// A job that takes 50-150 ms (so kills land mid-run) and whose result is known.
pub fn slow_sum(i: u64) -> (Value, String) {
    (
        json!({"kind": "sum", "input": [i, i, 1], "chaos": {"delay_ms": [50, 150]}}),
        (2 * i + 1).to_string(),
    )
}

/// Deployment secrets made by the real `scripts/docker-secrets.sh` into a temp dir.
pub struct Secrets {
    pub dir: tempfile::TempDir,
}

impl Secrets {
    pub fn generate() -> Secrets {
        let dir = tempfile::tempdir().expect("secrets dir");
        let out = std::process::Command::new(workspace_root().join("scripts/docker-secrets.sh"))
            .arg(dir.path())
            .output()
            .expect("run scripts/docker-secrets.sh");
        assert!(
            out.status.success(),
            "docker-secrets.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Secrets { dir }
    }

    pub fn path(&self) -> String {
        self.dir.path().to_string_lossy().to_string()
    }

    /// One secret's value (trailing newline trimmed).
    pub fn get(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_else(|e| panic!("read secret {name}: {e}"))
            .trim_end()
            .to_string()
    }
}

/// Connect to NATS at `url` (comma-separated for a cluster) as the role `user` with the
/// password from `secrets`, retrying for a while (a published port may need a moment).
pub async fn nats(url: &str, secrets: &Secrets, user: &str) -> async_nats::jetstream::Context {
    let deadline = Instant::now() + Duration::from_secs(60);
    let urls: Vec<&str> = url.split(',').collect();
    let password = secrets.get(&format!("nats-{user}-password"));
    loop {
        let options =
            async_nats::ConnectOptions::new().user_and_password(user.to_string(), password.clone());
        match options.connect(urls.as_slice()).await {
            Ok(c) => return async_nats::jetstream::new(c),
            Err(e) => assert!(Instant::now() < deadline, "connect {url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `done` events in EVENTS so far.
pub async fn done_events(js: &async_nats::jetstream::Context) -> usize {
    let Ok(stream) = js.get_stream(jetmill_proto::names::EVENTS_STREAM).await else {
        return 0;
    };
    let Ok(counts) = stream.info_with_subjects("jobs.events.*.done").await else {
        return 0;
    };
    let counts: Vec<(String, usize)> = counts.try_collect().await.unwrap_or_default();
    counts.iter().map(|(_, n)| n).sum()
}

/// How many events of each (job id, type) the EVENTS stream holds, from the stream's
/// per-subject counts (`jobs.events.<id>.<type>`): a read the `inspector` role may do.
pub async fn event_counts(js: &async_nats::jetstream::Context) -> HashMap<(String, String), usize> {
    let stream = js
        .get_stream(jetmill_proto::names::EVENTS_STREAM)
        .await
        .expect("events stream");
    let counts: Vec<(String, usize)> = stream
        .info_with_subjects(jetmill_proto::names::EVENTS_SUBJECTS)
        .await
        .expect("subject counts")
        .try_collect()
        .await
        .expect("subject counts");
    let mut out = HashMap::new();
    for (subject, n) in counts {
        let parts: Vec<&str> = subject.split('.').collect();
        if parts.len() == 4 {
            *out.entry((parts[2].to_string(), parts[3].to_string()))
                .or_insert(0) += n;
        }
    }
    out
}

/// Poll `cond` every 250 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every job of `ids` has exactly one `done` event, and the stream holds `total` in all.
pub async fn assert_done_once(js: &async_nats::jetstream::Context, ids: &[String], total: usize) {
    let counts = event_counts(js).await;
    for id in ids {
        assert_eq!(
            counts.get(&(id.clone(), "done".to_string())),
            Some(&1),
            "job {id}: exactly one done event"
        );
    }
    assert_eq!(done_events(js).await, total, "no other done events");
}
