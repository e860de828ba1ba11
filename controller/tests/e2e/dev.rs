//! `jetmill dev` as a user runs it: one command, a URL, Ctrl-C stops everything.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn jetmill_dev_serves_jobs_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jetmill"))
        .args([
            "dev",
            "--nats-port",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(dir.path())
        .arg("--nats-server")
        .arg(jetmill_testkit::nats_server_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jetmill dev");

    // Read stderr on a thread until the API line appears; keep draining afterwards.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let api = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no API line from jetmill dev; output: {seen:#?}"));
        if let Some(rest) = line.trim().strip_prefix("API:") {
            break rest.trim().to_string();
        }
        seen.push(line);
    };
    assert!(
        api.starts_with("http://127.0.0.1:") && api.ends_with("/v1/jobs"),
        "{api}"
    );

    // The next line names both /metrics endpoints: gateway first, then the worker.
    let metrics_line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no metrics line from jetmill dev; output: {seen:#?}"));
        if line.trim().starts_with("metrics:") {
            break line;
        }
        seen.push(line);
    };
    let metrics_urls: Vec<&str> = metrics_line
        .split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .collect();
    assert_eq!(metrics_urls.len(), 2, "{metrics_line}");

    let http = reqwest::Client::new();
    for url in &metrics_urls {
        let scrape = crate::metrics::scrape(&http, url).await;
        assert!(!scrape.samples.is_empty(), "{url} exposes metrics");
    }
    let resp = http
        .post(&api)
        .json(&serde_json::json!({"kind": "factorial", "input": 25}))
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let job_url = format!("{api}/{id}");
    let ok = jetmill_testkit::wait_until(Duration::from_secs(30), || async {
        let rec: serde_json::Value = http
            .get(&job_url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        rec["result"] == "15511210043330985984000000"
    })
    .await;
    assert!(ok, "factorial(25) through jetmill dev");
    assert!(
        dir.path().join("nats").is_dir(),
        "JetStream data lives under --dir"
    );

    // Ctrl-C: everything stops, exit code 0, and the nats-server child is gone.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "jetmill dev did not stop within 30 s of Ctrl-C"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "jetmill dev exit status {exit}");
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("jetmill dev stopped")),
        "{lines:#?}"
    );
    let pid_files: Vec<_> = std::fs::read_dir(dir.path().join("ports"))
        .map(|d| d.flatten().count())
        .into_iter()
        .collect();
    // nats-server removes its ports file when it exits cleanly.
    assert_eq!(
        pid_files,
        vec![0],
        "nats-server left its ports file: it did not shut down cleanly"
    );
}
