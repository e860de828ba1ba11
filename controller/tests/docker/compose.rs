//! `docker/compose.yml` on a real engine: up with 3 workers, 500 jobs, one worker container
//! killed mid-run, every job done exactly once, `down -v` leaves nothing behind.

use crate::helpers::{
    bin, docker_or_skip, done_events, event_counts, jwt, nats, slow_sum, wait_for, Api, Secrets,
};
use futures::StreamExt;
use jetmill_testkit::workspace_root;
use std::time::{Duration, Instant};

const PROJECT: &str = "jetmill-test-compose";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_3_workers_500_jobs_a_worker_killed_mid_run_every_job_done_exactly_once() {
    let started = Instant::now();
    let Some(d) = docker_or_skip() else {
        return;
    };
    let images = d.images_with("compose", bin()).expect("build test images");
    eprintln!("images built after {:?}", started.elapsed());
    let secrets = Secrets::generate();
    let secret = secrets.get("jwt-secret");
    let secrets_dir = secrets.path();
    let file = workspace_root().join("docker/compose.yml");
    let env = [
        ("JETMILL_IMAGE", images.jetmill.as_str()),
        ("JETMILL_NATS_IMAGE", images.nats.as_str()),
        ("JETMILL_HTTP_PUBLISH", "127.0.0.1:"),
        ("JETMILL_NATS_PUBLISH", "127.0.0.1:"),
        ("JETMILL_SECRETS_DIR", secrets_dir.as_str()),
        ("JETMILL_ACK_WAIT_SECS", "5"),
    ];
    let up = d.compose(
        &file,
        PROJECT,
        &env,
        &["up", "-d", "--no-build", "--scale", "worker=3"],
    );
    if let Err(e) = &up {
        let logs = d.compose(
            &file,
            PROJECT,
            &env,
            &["logs", "--no-color", "--tail", "30"],
        );
        panic!("compose up: {e}\nlogs:\n{}", logs.unwrap_or_default());
    }
    let port = |service: &str, port: &str| {
        let out = d
            .compose(&file, PROJECT, &env, &["port", service, port])
            .expect("compose port");
        out.trim().to_string()
    };
    let api = Api::new(
        format!("http://{}", port("gateway", "8080")),
        jwt(&secret, "t1"),
    );
    let js = nats(
        &format!("nats://{}", port("nats", "4222")),
        &secrets,
        "inspector",
    )
    .await;
    api.wait_ready(Duration::from_secs(60)).await;
    let workers: Vec<String> = d
        .compose(&file, PROJECT, &env, &["ps", "-q", "worker"])
        .expect("ps worker")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(workers.len(), 3, "three worker containers: {workers:?}");
    wait_for("3 healthy workers", Duration::from_secs(60), || async {
        workers.iter().all(|c| {
            d.cli(["inspect", "--format", "{{.State.Health.Status}}", c])
                .is_ok_and(|s| s.trim() == "healthy")
        })
    })
    .await;
    eprintln!("up after {:?}", started.elapsed());

    // 500 jobs; kill one worker (SIGKILL: no drain) once 100 are done.
    let deadline = Instant::now() + Duration::from_secs(180);
    let submit = {
        let api = &api;
        futures::stream::iter(0..500u64)
            .map(move |i| async move {
                let (body, want) = slow_sum(i);
                (
                    api.submit(&format!("compose-{i}"), &body, deadline).await,
                    want,
                )
            })
            .buffered(16)
            .collect::<Vec<_>>()
    };
    let kill = async {
        wait_for(
            "100 jobs done before the kill",
            Duration::from_secs(120),
            || async { done_events(&js).await >= 100 },
        )
        .await;
        let victim = &workers[1];
        d.cli(["kill", victim]).expect("docker kill a worker");
        eprintln!(
            "killed worker container {victim} after {} done",
            done_events(&js).await
        );
    };
    let (jobs, ()) = futures::join!(submit, kill);
    let ids: Vec<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
    let records = api.wait_all_finished(&ids, Duration::from_secs(180)).await;
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
    let counts = event_counts(&js).await;
    for id in &ids {
        assert_eq!(
            counts.get(&(id.clone(), "done".to_string())),
            Some(&1),
            "job {id}: exactly one done event"
        );
    }
    let retried = ids
        .iter()
        .filter(|id| counts.contains_key(&((*id).clone(), "retried".to_string())))
        .count();
    eprintln!(
        "all 500 done exactly once after {:?} ({retried} retried)",
        started.elapsed()
    );

    // SIGTERM reaches jetmill as PID 1: a worker stops well before the 40 s grace, exit 0.
    let stopping = Instant::now();
    d.cli(["stop", "-t", "40", &workers[2]])
        .expect("docker stop");
    let took = stopping.elapsed();
    let code = d
        .cli(["inspect", "--format", "{{.State.ExitCode}}", &workers[2]])
        .expect("inspect exit code");
    assert_eq!(code.trim(), "0", "a drained worker exits 0 on SIGTERM");
    assert!(took < Duration::from_secs(20), "docker stop took {took:?}");

    d.compose(&file, PROJECT, &env, &["down", "-v", "-t", "10"])
        .expect("compose down -v");
    let label = format!("label=com.docker.compose.project={PROJECT}");
    for kind in ["container", "network", "volume"] {
        let mut args = vec![kind, "ls", "-q", "--filter", &label];
        if kind == "container" {
            args.insert(2, "-a");
        }
        let left = d.cli(&args).expect("ls");
        assert!(left.trim().is_empty(), "{kind}s left after down -v: {left}");
    }
    eprintln!("compose scenario took {:?}", started.elapsed());
}
