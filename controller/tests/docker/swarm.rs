//! `docker/stack.yml` on a real single-node swarm: 3 NATS nodes with R3 streams, 2
//! gateways behind haproxy, workers. 2,000 jobs go in through the load balancer while the
//! JOBS stream leader's NATS container is killed and the worker service is scaled
//! 2 -> 4 -> 1 and rolled to a new image tag: nothing lost, nothing completed twice.

use crate::helpers::{assert_done_once, bin, docker_or_skip, jwt, nats, wait_for, Api, Secrets};
use futures::StreamExt;
use jetmill_testkit::docker::Docker;
use jetmill_testkit::workspace_root;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const STACK: &str = "jt";
const JOBS: u64 = 2000;

/// A free TCP port on this host (for a `mode: host` published port).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Running tasks of a service: (container id, image) per task.
fn running_tasks(d: &Docker, service: &str) -> Vec<(String, String)> {
    let out = d
        .cli([
            "ps",
            "--filter",
            &format!("label=com.docker.swarm.service.name={STACK}_{service}"),
            "--filter",
            "status=running",
            "--format",
            "{{.ID}} {{.Image}}",
        ])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, image)| (id.to_string(), image.to_string()))
        .collect()
}

fn log_op(started: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_3_nats_nodes_r3_2000_jobs_through_haproxy_survive_a_nats_kill_scaling_and_a_rolling_update(
) {
    let started = Instant::now();
    let Some(d) = docker_or_skip() else {
        return;
    };
    let v1 = d.images_with("v1", bin()).expect("build test images v1");
    let v2 = d.images_with("v2", bin()).expect("build test images v2");
    log_op(started, "images built");
    d.swarm().expect("swarm init");
    let secrets = Secrets::generate();
    let secret = secrets.get("jwt-secret");
    let secrets_dir = secrets.path();
    let ports: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
    let env = [
        ("JETMILL_IMAGE", v1.jetmill.as_str()),
        ("JETMILL_NATS_IMAGE", v1.nats.as_str()),
        ("JETMILL_HAPROXY_IMAGE", v1.haproxy.as_str()),
        ("JETMILL_HTTP_PORT", ports[0].as_str()),
        ("JETMILL_NATS1_PORT", ports[1].as_str()),
        ("JETMILL_NATS2_PORT", ports[2].as_str()),
        ("JETMILL_NATS3_PORT", ports[3].as_str()),
        ("JETMILL_SECRETS_DIR", secrets_dir.as_str()),
        // This scenario scales the workers by hand; the autoscaler (autoscale.rs) would
        // undo it.
        ("JETMILL_AUTOSCALER_REPLICAS", "0"),
        ("JETMILL_AUTOSCALE_METRICS_PORT", ports[4].as_str()),
    ];
    d.stack_deploy(&workspace_root().join("docker/stack.yml"), STACK, &env)
        .expect("stack deploy");
    log_op(started, "stack deployed");
    let api = Api::new(format!("http://127.0.0.1:{}", ports[0]), jwt(&secret, "t1"));
    api.wait_ready(Duration::from_secs(180)).await;
    log_op(started, "ready through haproxy");
    let nats_url = format!(
        "nats://127.0.0.1:{},nats://127.0.0.1:{},nats://127.0.0.1:{}",
        ports[1], ports[2], ports[3]
    );
    let js = nats(&nats_url, &secrets, "inspector").await;
    // Streams are created by the first gateway or worker: wait for R3 JOBS with a leader.
    let wait = Instant::now() + Duration::from_secs(120);
    let leader = loop {
        if let Ok(mut s) = js.get_stream(jetmill_proto::names::JOBS_STREAM).await {
            if let Ok(info) = s.info().await {
                let cluster = info.cluster.clone().unwrap_or_default();
                let leader = cluster.leader.unwrap_or_default();
                if info.config.num_replicas == 3
                    && cluster.replicas.len() == 2
                    && !leader.is_empty()
                {
                    break leader;
                }
            }
        }
        assert!(
            Instant::now() < wait,
            "JOBS at 3 replicas with a leader: not within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for stream in [jetmill_proto::names::EVENTS_STREAM, "KV_jobs"] {
        let mut s = js.get_stream(stream).await.expect("stream");
        let replicas = s.info().await.expect("info").config.num_replicas;
        assert_eq!(replicas, 3, "{stream} has 3 replicas");
    }
    log_op(started, &format!("JOBS leader is {leader}"));

    let submitted = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(300);
    let submit = {
        let (api, submitted) = (&api, &submitted);
        futures::stream::iter(0..JOBS)
            .map(move |i| async move {
                // About 100 submissions a second, so the operations below happen while
                // jobs are still arriving.
                tokio::time::sleep(Duration::from_millis(80)).await;
                let body =
                    json!({"kind": "sum", "input": [i, i, 1], "chaos": {"delay_ms": [10, 50]}});
                let id = api.submit(&format!("swarm-{i}"), &body, deadline).await;
                submitted.fetch_add(1, Ordering::Relaxed);
                (id, (2 * i + 1).to_string())
            })
            .buffered(8)
            .collect::<Vec<_>>()
    };
    let operations = async {
        let at = |n: usize| {
            let submitted = &submitted;
            async move {
                wait_for(
                    &format!("{n} submitted"),
                    Duration::from_secs(300),
                    || async { submitted.load(Ordering::Relaxed) >= n },
                )
                .await;
            }
        };
        at(300).await;
        let victim = running_tasks(&d, &leader);
        assert_eq!(victim.len(), 1, "one task of {leader}: {victim:?}");
        d.cli(["kill", &victim[0].0])
            .expect("docker kill the JOBS leader");
        log_op(
            started,
            &format!("killed {leader} (JOBS leader) container {}", victim[0].0),
        );
        at(700).await;
        d.cli(["service", "scale", "-d", &format!("{STACK}_worker=4")])
            .expect("scale to 4");
        log_op(started, "worker service scaled to 4");
        wait_for("4 running workers", Duration::from_secs(90), || async {
            running_tasks(&d, "worker").len() == 4
        })
        .await;
        at(1200).await;
        d.cli(["service", "scale", "-d", &format!("{STACK}_worker=1")])
            .expect("scale to 1");
        log_op(started, "worker service scaled to 1");
        at(1600).await;
        d.cli([
            "service",
            "update",
            "-d",
            "--no-resolve-image",
            "--image",
            &v2.jetmill,
            &format!("{STACK}_worker"),
        ])
        .expect("rolling update to v2");
        log_op(started, "worker service rolling to the v2 image");
    };
    let (jobs, ()) = futures::join!(submit, operations);
    log_op(started, "all submitted");
    let ids: Vec<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
    let records = api.wait_all_finished(&ids, Duration::from_secs(300)).await;
    log_op(started, "all finished");
    for ((id, want), rec) in jobs.iter().zip(&records) {
        assert_eq!(rec["status"], "done", "job {id}: {rec}");
        assert_eq!(
            rec["result"].as_str(),
            Some(want.as_str()),
            "job {id}: {rec}"
        );
    }
    let again = records
        .iter()
        .filter(|r| r["attempts"].as_u64().unwrap_or(0) > 1)
        .count();
    eprintln!("{again} jobs ran more than once (handed back or redelivered, one done each)");
    assert_done_once(&js, &ids, JOBS as usize).await;
    wait_for(
        "the worker service runs v2 only",
        Duration::from_secs(120),
        || async {
            let tasks = running_tasks(&d, "worker");
            tasks.len() == 1 && tasks.iter().all(|(_, image)| image == &v2.jetmill)
        },
    )
    .await;
    let restarted = running_tasks(&d, &leader);
    assert_eq!(
        restarted.len(),
        1,
        "{leader} is running again: {restarted:?}"
    );
    log_op(started, "swarm scenario done; removing the stack");
}
