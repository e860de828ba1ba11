//! `docker/stack.yml`'s autoscaler service against the real swarm: `jetmill autoscale`
//! (swarm backend, the inspector's NATS credentials, the manager's Engine API socket)
//! scales the labelled `worker` service. The idle queue takes it from its 2 replicas to
//! the minimum; a burst of queued jobs (workers frozen, so the burst stays queued) takes
//! it to the maximum within a bounded time; once the burst is done (resumed) it goes back
//! to the minimum. The decisions show in the autoscaler's `/metrics`, and every job is
//! done exactly once.

use crate::helpers::{assert_done_once, bin, docker_or_skip, jwt, nats, Api, Secrets};
use futures::StreamExt;
use jetmill_testkit::docker::Docker;
use jetmill_testkit::workspace_root;
use serde_json::json;
use std::time::{Duration, Instant};

const STACK: &str = "ja";
const WORKER: &str = "ja_worker";
const AUTOSCALER: &str = "ja_autoscaler";
const MIN: u32 = 1;
const MAX: u32 = 3;
const JOBS: u64 = 40;
/// From the burst queued to MAX workers running: one autoscaler tick (1 s here) plus the
/// tasks' start. Measured well under 10 s; generous for a loaded 2-core machine.
const SCALE_UP_BOUND: Duration = Duration::from_secs(45);

/// A free TCP port on this host (for a `mode: host` published port).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The running worker containers' ids.
fn worker_containers(d: &Docker) -> Vec<String> {
    d.cli([
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={WORKER}"),
        "--filter",
        "status=running",
    ])
    .map(|s| {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// The worker service's healthcheck command as its spec holds it now.
fn worker_healthcheck(d: &Docker) -> String {
    d.cli([
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck.Test}}",
        WORKER,
    ])
    .map(|s| s.trim().to_string())
    .unwrap_or_default()
}

/// The worker service's replicas as asked for, and its running tasks (containers).
fn workers(d: &Docker) -> (u32, u32) {
    let replicas = d
        .cli([
            "service",
            "inspect",
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}}",
            WORKER,
        ])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let running = d
        .cli([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={WORKER}"),
            "--filter",
            "status=running",
        ])
        .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count() as u32)
        .unwrap_or(0);
    (replicas, running)
}

/// The autoscaler's and the worker service's tasks and recent logs: what a failed wait
/// shows, since the stack is removed when the test ends.
fn diagnose(d: &Docker) -> String {
    diagnose_services(d, &[AUTOSCALER, WORKER])
}

/// [`diagnose`] for the services `services`.
fn diagnose_services(d: &Docker, services: &[&str]) -> String {
    let mut out = String::new();
    for &svc in services {
        let ps = d
            .cli(["service", "ps", "--no-trunc", svc])
            .unwrap_or_else(|e| format!("(service ps: {e})"));
        // Both streams: the services log to stderr.
        let logs = std::process::Command::new("/usr/bin/docker")
            .args(["service", "logs", "--no-task-ids", "--tail", "40", svc])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_else(|e| format!("(service logs: {e})"));
        let status = d
            .cli([
                "service",
                "inspect",
                "--format",
                "{{json .UpdateStatus}}\n{{json .Spec}}\n{{json .PreviousSpec}}",
                svc,
            ])
            .unwrap_or_else(|e| format!("(service inspect: {e})"));
        out.push_str(&format!(
            "--- {svc} tasks:\n{ps}\n--- {svc} update status, spec, previous spec:\n{status}\n--- {svc} logs:\n{logs}\n"
        ));
    }
    out
}

/// Like `wait_for`, but a timeout panics with the autoscaler's and workers' logs.
async fn wait_or_diagnose<F, Fut>(d: &Docker, what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        if Instant::now() >= deadline {
            panic!("{what}: not within {timeout:?}\n{}", diagnose(d));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The autoscaler's `/metrics` scrape (empty when it does not answer yet).
async fn scrape(http: &reqwest::Client, url: &str) -> String {
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => String::new(),
    }
}

/// The value of the sample named exactly `series` (`name{labels}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}

/// `jetmill_autoscale_decisions_total` for the worker service in `direction`, all reasons.
fn decisions(text: &str, direction: &str) -> f64 {
    let prefix = format!(
        "jetmill_autoscale_decisions_total{{service=\"{WORKER}\",direction=\"{direction}\","
    );
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    sample(text, &format!("{name}{{service=\"{WORKER}\"}}"))
}

fn log_op(started: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

/// Run the `jetmill` CLI as the controller role against the stack's NATS nodes.
fn controller(nats_url: &str, secrets: &Secrets, args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .args([
            "--server",
            nats_url,
            "--user",
            "controller",
            "--password-file",
        ])
        .arg(secrets.dir.path().join("nats-controller-password"))
        .output()
        .expect("run jetmill");
    assert!(
        out.status.success(),
        "jetmill {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_autoscaler_scales_the_worker_service_to_max_on_a_burst_and_back_to_min_when_idle() {
    let started = Instant::now();
    let Some(d) = docker_or_skip() else {
        return;
    };
    let images = d.images_with("test", bin()).expect("build test images");
    log_op(started, "images built");
    d.swarm().expect("swarm init");
    let secrets = Secrets::generate();
    let secret = secrets.get("jwt-secret");
    let secrets_dir = secrets.path();
    let ports: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
    let (min, max) = (MIN.to_string(), MAX.to_string());
    let env = [
        ("JETMILL_IMAGE", images.jetmill.as_str()),
        ("JETMILL_NATS_IMAGE", images.nats.as_str()),
        ("JETMILL_HAPROXY_IMAGE", images.haproxy.as_str()),
        ("JETMILL_HTTP_PORT", ports[0].as_str()),
        ("JETMILL_NATS1_PORT", ports[1].as_str()),
        ("JETMILL_NATS2_PORT", ports[2].as_str()),
        ("JETMILL_NATS3_PORT", ports[3].as_str()),
        ("JETMILL_AUTOSCALE_METRICS_PORT", ports[4].as_str()),
        ("JETMILL_SECRETS_DIR", secrets_dir.as_str()),
        ("JETMILL_WORKERS_MIN", min.as_str()),
        ("JETMILL_WORKERS_MAX", max.as_str()),
        // Short windows, so the test takes seconds instead of minutes.
        ("JETMILL_AUTOSCALE_INTERVAL", "1s"),
        ("JETMILL_AUTOSCALE_DOWN_COOLDOWN", "3s"),
        ("JETMILL_AUTOSCALE_STABILIZATION", "5s"),
    ];
    d.stack_deploy(&workspace_root().join("docker/stack.yml"), STACK, &env)
        .expect("stack deploy");
    log_op(started, "stack deployed");
    let api = Api::new(format!("http://127.0.0.1:{}", ports[0]), jwt(&secret, "t1"));
    let deadline = Instant::now() + Duration::from_secs(180);
    while !api.is_ready().await {
        // Which part of the stack did not come up, when it does not.
        assert!(
            Instant::now() < deadline,
            "the gateway is not ready through haproxy within 180 s\n{}",
            diagnose_services(&d, &["ja_nats1", "ja_provision", "ja_gateway", "ja_lb"])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    log_op(started, "ready through haproxy");
    let metrics_url = format!("http://127.0.0.1:{}/metrics", ports[4]);
    let nats_url = format!(
        "nats://127.0.0.1:{},nats://127.0.0.1:{},nats://127.0.0.1:{}",
        ports[1], ports[2], ports[3]
    );

    // The stack starts 2 workers; with nothing queued the autoscaler takes them to MIN.
    wait_or_diagnose(
        &d,
        "the idle worker service at its minimum",
        Duration::from_secs(120),
        || async { workers(&d) == (MIN, MIN) },
    )
    .await;
    log_op(started, &format!("idle: {WORKER} at {MIN}/{MIN}"));
    let text = scrape(&api.http, &metrics_url).await;
    assert_eq!(
        gauge(&text, "jetmill_autoscale_desired_workers"),
        Some(f64::from(MIN)),
        "{text}"
    );
    let downs_before = decisions(&text, "down");
    // Scaling changes the replicas and nothing else: the spec keeps its healthcheck, and
    // the tasks that stay are not replaced (a changed task template would roll them all).
    let healthcheck = worker_healthcheck(&d);
    assert!(
        healthcheck.contains("probe"),
        "the worker's healthcheck survives a scale: {healthcheck:?}\n{}",
        diagnose(&d)
    );
    let at_min = worker_containers(&d);
    assert!(
        downs_before >= 1.0,
        "a down decision for 2 -> {MIN}: {text}"
    );
    let ups_before = decisions(&text, "up");

    // Frozen workers start nothing, so the burst stays queued until resumed.
    controller(&nats_url, &secrets, &["freeze", "--timeout", "30s"]);
    log_op(started, "workers frozen");
    let deadline = Instant::now() + Duration::from_secs(120);
    let ids: Vec<String> = futures::stream::iter(0..JOBS)
        .map(|i| {
            let api = &api;
            async move {
                let body = json!({"kind": "sum", "input": [i, i, 1]});
                api.submit(&format!("autoscale-{i}"), &body, deadline).await
            }
        })
        .buffered(8)
        .collect()
        .await;
    let burst = Instant::now();
    log_op(started, &format!("{JOBS} jobs queued"));
    wait_or_diagnose(
        &d,
        "the worker service at its maximum after the burst",
        SCALE_UP_BOUND,
        || async { workers(&d) == (MAX, MAX) },
    )
    .await;
    let scale_up = burst.elapsed();
    log_op(
        started,
        &format!(
            "burst: {WORKER} at {MAX}/{MAX} {:.1} s after the burst was queued",
            scale_up.as_secs_f64()
        ),
    );
    // The next tick sees the running tasks.
    wait_or_diagnose(
        &d,
        "metrics: desired and actual workers at the maximum",
        Duration::from_secs(20),
        || async {
            let text = scrape(&api.http, &metrics_url).await;
            gauge(&text, "jetmill_autoscale_desired_workers") == Some(f64::from(MAX))
                && gauge(&text, "jetmill_autoscale_actual_workers") == Some(f64::from(MAX))
        },
    )
    .await;
    let at_max = worker_containers(&d);
    assert!(
        at_min.iter().all(|c| at_max.contains(c)),
        "scaling up kept the running worker ({at_min:?}), did not replace it: {at_max:?}\n{}",
        diagnose(&d)
    );
    assert_eq!(
        worker_healthcheck(&d),
        healthcheck,
        "healthcheck after scaling up"
    );
    let text = scrape(&api.http, &metrics_url).await;
    assert!(
        decisions(&text, "up") > ups_before,
        "an up decision for the burst: {text}"
    );
    assert_eq!(
        sample(&text, "jetmill_autoscale_queue_depth"),
        Some(JOBS as f64),
        "the frozen burst is the queue: {text}\n{}",
        diagnose(&d)
    );

    controller(&nats_url, &secrets, &["resume", "--timeout", "30s"]);
    log_op(started, "workers resumed");
    let records = api.wait_all_finished(&ids, Duration::from_secs(120)).await;
    log_op(started, "all finished");
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec["status"], "done", "job {i}: {rec}");
        assert_eq!(
            rec["result"].as_str(),
            Some((2 * i + 1).to_string().as_str()),
            "job {i}: {rec}"
        );
    }
    let js = nats(&nats_url, &secrets, "inspector").await;
    assert_done_once(&js, &ids, JOBS as usize).await;

    let idle = Instant::now();
    wait_or_diagnose(
        &d,
        "the worker service back at its minimum after the burst",
        Duration::from_secs(120),
        || async { workers(&d) == (MIN, MIN) },
    )
    .await;
    log_op(
        started,
        &format!(
            "idle again: {WORKER} at {MIN}/{MIN} {:.1} s after the last job finished",
            idle.elapsed().as_secs_f64()
        ),
    );
    wait_or_diagnose(
        &d,
        "metrics: desired and actual workers at the minimum",
        Duration::from_secs(20),
        || async {
            let text = scrape(&api.http, &metrics_url).await;
            gauge(&text, "jetmill_autoscale_desired_workers") == Some(f64::from(MIN))
                && gauge(&text, "jetmill_autoscale_actual_workers") == Some(f64::from(MIN))
        },
    )
    .await;
    let text = scrape(&api.http, &metrics_url).await;
    assert!(
        decisions(&text, "down") > downs_before,
        "a down decision after the burst: {text}"
    );
    eprintln!(
        "autoscaler metrics at the end:\n{}",
        text.lines()
            .filter(|l| l.starts_with("jetmill_autoscale_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    log_op(started, "autoscale scenario done; removing the stack");
}
