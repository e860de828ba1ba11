//! `jetmill autoscale --backend local`: worker processes follow the queue.
//!
//! A burst of queued jobs (workers frozen, so it stays queued) raises the workers to
//! the maximum within a bound; once the queue empties they go back to the minimum
//! after the (short, for the test) stabilization window and cooldown. Both are seen
//! in the real process table and in the autoscaler's `/metrics`.

use crate::helpers::TestApp;
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The autoscaler (or `jetmill dev`) process, killed on drop (its workers die with
/// it: kill_on_drop).
struct Autoscaler {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Autoscaler {
    fn start(nats_url: &str, extra: &[&str]) -> Autoscaler {
        let mut args = vec!["autoscale", "--backend", "local", "--server", nats_url];
        args.extend_from_slice(extra);
        Self::spawn(&args)
    }

    /// Run `jetmill <args>`, reading its stderr.
    fn spawn(args: &[&str]) -> Autoscaler {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jetmill"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jetmill autoscale");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Autoscaler {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Read output until a line starts with `prefix`; returns the rest of it.
    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line
                        .trim()
                        .strip_prefix(prefix)
                        .map(|r| r.trim().to_string());
                    self.seen.push(line);
                    if let Some(rest) = found {
                        return rest;
                    }
                }
                Err(_) => panic!("no {prefix:?} line; output:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The autoscaler's live `jetmill worker` children, read from /proc.
    fn workers(&self) -> Vec<u32> {
        children_of(self.child.id())
    }
}

impl Drop for Autoscaler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            let tail: Vec<&String> = self.seen.iter().rev().take(60).collect();
            eprintln!("--- last lines of the autoscaler ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Live (not zombie) processes whose parent is `parent` and that run `worker`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the `(comm)` field: state, ppid, ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) || state == Some("Z") {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|arg| arg == b"worker") {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .map(|(_, r)| !r.starts_with('Z') && !r.starts_with('X'))
        })
        .unwrap_or(false)
}

/// Sum of the samples of `metric` whose labels include all of `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Run `jetmill <args>` against `nats_url`; assert it succeeds.
async fn jetmill_ok(nats_url: &str, args: &[&str]) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetmill"))
        .args(args)
        .env("JETMILL_NATS_URL", nats_url)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run jetmill");
    assert!(
        out.status.success(),
        "jetmill {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wait until `cond` holds, scraping `/metrics` each round; panics with `what` past
/// `timeout`. Returns the time it took and the last scrape.
async fn wait_scaled(
    http: &reqwest::Client,
    metrics_url: &str,
    scaler: &Autoscaler,
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut(&[u32], &Scrape) -> bool,
) -> (Duration, Scrape) {
    let start = Instant::now();
    loop {
        let scrape = crate::metrics::scrape(http, metrics_url).await;
        let workers = scaler.workers();
        if cond(&workers, &scrape) {
            return (start.elapsed(), scrape);
        }
        assert!(
            start.elapsed() < timeout,
            "{what} not within {timeout:?}: worker processes {workers:?}, metrics {:?}",
            scrape
                .samples
                .iter()
                .filter(|s| s.metric.starts_with("jetmill_autoscale"))
                .map(|s| format!("{}{:?}={:?}", s.metric, s.labels, s.value))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_burst_scales_local_workers_to_the_max_and_an_idle_queue_back_to_the_min() {
    let app = TestApp::gateway_only().await;
    let nats = app.nats.url().to_string();
    let mut scaler = Autoscaler::start(
        &nats,
        &[
            "--min",
            "1",
            "--max",
            "3",
            "--jobs-per-worker",
            "2",
            "--worker-concurrency",
            "1",
            "--interval",
            "200ms",
            "--down-cooldown",
            "1s",
            "--stabilization",
            "1s",
            "--drain-timeout",
            "20s",
        ],
    );
    let metrics_url = scaler.wait_line("autoscaler metrics:", Duration::from_secs(30));
    let http = reqwest::Client::new();
    let local = [("service", "local")];

    // An empty queue: the minimum, one worker.
    wait_scaled(
        &http,
        &metrics_url,
        &scaler,
        Duration::from_secs(15),
        "start at the min of 1",
        |workers, m| {
            workers.len() == 1
                && value(m, "jetmill_autoscale_actual_workers", &local) == 1.0
                && value(
                    m,
                    "jetmill_autoscale_decisions_total",
                    &[("direction", "up"), ("reason", "below_min")],
                ) == 1.0
        },
    )
    .await;

    // Frozen workers fetch nothing, so the burst stays queued while they scale.
    jetmill_ok(&nats, &["freeze", "--timeout", "10s"]).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            app.submit_ok(json!({"kind": "factorial", "input": 100 + i}))
                .await,
        );
    }

    // 12 queued at 2 per worker wants 6: the maximum, 3, within one tick (+ start-up).
    let (took, scrape) = wait_scaled(
        &http,
        &metrics_url,
        &scaler,
        Duration::from_secs(15),
        "scale-up to the max of 3",
        |workers, m| {
            workers.len() == 3
                && value(m, "jetmill_autoscale_actual_workers", &local) == 3.0
                && value(m, "jetmill_autoscale_desired_workers", &local) == 3.0
        },
    )
    .await;
    eprintln!("scaled up to 3 worker processes in {took:?}");
    assert_eq!(value(&scrape, "jetmill_autoscale_queue_depth", &[]), 12.0);
    let ups = value(
        &scrape,
        "jetmill_autoscale_decisions_total",
        &[
            ("service", "local"),
            ("direction", "up"),
            ("reason", "load"),
        ],
    );
    assert_eq!(
        ups, 1.0,
        "one up decision for the load, straight to the max"
    );
    // While the queue stays, the maximum holds (and says why), nothing goes down.
    let (_, scrape) = wait_scaled(
        &http,
        &metrics_url,
        &scaler,
        Duration::from_secs(10),
        "holding at the max",
        |_, m| {
            value(
                m,
                "jetmill_autoscale_decisions_total",
                &[("direction", "hold"), ("reason", "at_max")],
            ) >= 3.0
        },
    )
    .await;
    assert_eq!(
        value(
            &scrape,
            "jetmill_autoscale_decisions_total",
            &[("direction", "down")]
        ),
        0.0
    );
    assert_eq!(scaler.workers().len(), 3);
    let first_three = scaler.workers();

    // Let them run the burst; the idle queue then goes back to the minimum.
    jetmill_ok(&nats, &["resume", "--timeout", "10s"]).await;
    for id in &ids {
        let job = app.wait_finished(id, Duration::from_secs(30)).await;
        assert_eq!(job["status"], "done", "{job}");
    }
    let (took, scrape) = wait_scaled(
        &http,
        &metrics_url,
        &scaler,
        Duration::from_secs(30),
        "scale-down to the min of 1",
        |workers, m| {
            workers.len() == 1
                && value(m, "jetmill_autoscale_actual_workers", &local) == 1.0
                && value(m, "jetmill_autoscale_desired_workers", &local) == 1.0
        },
    )
    .await;
    eprintln!("scaled down to 1 worker process {took:?} after the last job finished");
    assert_eq!(value(&scrape, "jetmill_autoscale_queue_depth", &[]), 0.0);
    assert!(
        value(
            &scrape,
            "jetmill_autoscale_decisions_total",
            &[("direction", "down"), ("reason", "low_load")],
        ) >= 1.0
    );
    // The scale-down went through the stabilization window first.
    assert!(
        value(
            &scrape,
            "jetmill_autoscale_decisions_total",
            &[("direction", "hold"), ("reason", "stabilizing")],
        ) >= 1.0
    );

    // SIGTERM stops the autoscaler and every worker it started.
    scaler.stop("TERM").await;
    for pid in first_three {
        assert!(!alive(pid), "worker {pid} outlived the autoscaler");
    }
}

impl Autoscaler {
    /// Send `sig`, wait for a successful exit.
    async fn stop(&mut self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "did not stop within 30 s of SIG{sig}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "exit after SIG{sig}: {status}");
    }
}

#[tokio::test]
async fn jetmill_dev_autoscale_runs_worker_processes_and_stops_them_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_string_lossy().to_string();
    let nats_bin = jetmill_testkit::nats_server_bin()
        .to_string_lossy()
        .to_string();
    let mut dev = Autoscaler::spawn(&[
        "dev",
        "--nats-port",
        "0",
        "--listen",
        "127.0.0.1:0",
        "--dir",
        &dir_arg,
        "--nats-server",
        &nats_bin,
        "--autoscale",
        "--autoscale-min",
        "2",
        "--autoscale-max",
        "2",
        "--interval",
        "200ms",
    ]);
    let api = dev.wait_line("API:", Duration::from_secs(60));
    let metrics_line = dev.wait_line("metrics:", Duration::from_secs(10));
    let urls: Vec<&str> = metrics_line
        .split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .collect();
    assert_eq!(urls.len(), 2, "gateway and autoscaler: {metrics_line}");
    assert!(metrics_line.contains("(autoscaler)"), "{metrics_line}");
    let autoscaler_metrics = urls[1].to_string();
    let http = reqwest::Client::new();
    let (_, _) = wait_scaled(
        &http,
        &autoscaler_metrics,
        &dev,
        Duration::from_secs(30),
        "two worker processes",
        |workers, m| {
            workers.len() == 2
                && value(
                    m,
                    "jetmill_autoscale_actual_workers",
                    &[("service", "local")],
                ) == 2.0
        },
    )
    .await;
    let workers = dev.workers();

    // The child workers run jobs.
    let resp = http
        .post(&api)
        .json(&json!({"kind": "factorial", "input": 30}))
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status().as_u16(), 202);
    let job: serde_json::Value = resp.json().await.expect("job JSON");
    let id = job["id"].as_str().expect("job id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: serde_json::Value = http
            .get(format!("{api}/{id}"))
            .send()
            .await
            .expect("get job")
            .json()
            .await
            .expect("job JSON");
        if got["status"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "job not done: {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Ctrl-C stops the gateway, the workers and nats-server.
    dev.stop("INT").await;
    for pid in workers {
        assert!(!alive(pid), "worker {pid} outlived jetmill dev");
    }
}
