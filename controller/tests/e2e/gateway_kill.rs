//! Gateways killed with `kill -9` between an `Idempotency-Key` claim and the publish:
//! every id a client was ever given still ends `done`, because a later request with the
//! same key heals the claim (publishes the stored job under the same id).

use crate::helpers::{free_port, wait_serving, GatewayProcess, TestApp};
use futures::future::join_all;
use jetmill_gateway::idempotency;
use jetmill_proto::{names, now_ms, JobId, JobMessage, JobRequest, Limits};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Submit with `key` until the gateway answers with an id, retrying every error
/// (connection refused or reset, 5xx, 408, 409, 429) as a client would.
async fn submit_until_id(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
    deadline: Instant,
) -> String {
    let mut last = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no id for key {key} before the deadline; last answer: {last}"
        );
        match http
            .post(format!("{base}/v1/jobs"))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let json: Value = resp.json().await.unwrap_or(Value::Null);
                match status {
                    200 | 202 => {
                        return json["id"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{status} without id: {json}"))
                            .to_string()
                    }
                    400 | 401 | 404 | 413 | 422 => {
                        panic!("key {key}: {status} is not a transient error: {json}")
                    }
                    _ => last = format!("{status} {json}"),
                }
            }
            Err(e) => last = format!("request error: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET a job's status from `base`; `None` while it has no record (404).
async fn status_of(http: &reqwest::Client, base: &str, id: &str) -> Option<String> {
    let resp = http
        .get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .expect("GET job from the in-process gateway");
    if resp.status().as_u16() == 404 {
        return None;
    }
    assert!(
        resp.status().is_success(),
        "GET /v1/jobs/{id}: {}",
        resp.status()
    );
    let rec: Value = resp.json().await.expect("record json");
    rec["status"].as_str().map(str::to_string)
}

/// Wait until every id is `done` (failing fast on another terminal state).
async fn wait_all_done(app: &TestApp, ids: &HashSet<String>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut left: BTreeMap<String, Option<String>> =
        ids.iter().map(|id| (id.clone(), None)).collect();
    while !left.is_empty() {
        let round: Vec<String> = left.keys().cloned().collect();
        let answers = join_all(round.iter().map(|id| status_of(&app.http, &app.base, id))).await;
        for (id, status) in round.into_iter().zip(answers) {
            match status.as_deref() {
                Some("done") => {
                    left.remove(&id);
                }
                Some(s @ ("failed" | "cancelled")) => panic!("job {id} ended {s}, not done"),
                _ => {
                    left.insert(id, status);
                }
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} ids handed to clients did not reach done within {timeout:?} \
             (None = no record): {:?}",
            left.len(),
            left.iter().take(20).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_id_given_to_a_client_ends_done_while_gateways_and_workers_are_killed() {
    const SUBMITS: usize = 1000;
    const CLIENTS: usize = 16;
    const GATEWAY_KILLS: usize = 3;
    // The in-process gateway of TestApp only reads the records at the end.
    let mut app = TestApp::gateway_only().await;
    // A short ack wait so a killed worker's jobs come back quickly; more deliveries than
    // the default 5 so a job caught by several kills still gets its run.
    let worker_flags = [
        "--ack-wait-secs",
        "1",
        "--max-deliver",
        "20",
        "--concurrency",
        "2",
    ];
    app.start_worker_process("w0", &worker_flags);
    app.start_worker_process("w1", &worker_flags);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut gateway = GatewayProcess::start(app.nats.url(), port, 0);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    wait_serving(&http, &base, Duration::from_secs(20)).await;

    let deadline = Instant::now() + Duration::from_secs(45);
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let given: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            let (next, answered, given) = (next.clone(), answered.clone(), given.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= SUBMITS {
                        return;
                    }
                    let key = format!("kill-test-{i}");
                    let body = json!({"kind": "factorial", "input": 1 + i % 400});
                    let id = submit_until_id(&http, &base, &key, &body, deadline).await;
                    given
                        .lock()
                        .expect("ids lock")
                        .entry(i)
                        .or_default()
                        .push(id.clone());
                    // The retry of an answered request must name the same job.
                    let again = submit_until_id(&http, &base, &key, &body, deadline).await;
                    given
                        .lock()
                        .expect("ids lock")
                        .entry(i)
                        .or_default()
                        .push(again);
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    // Kill a worker every 2 s (and start a new one), and the gateway each time another
    // quarter of the submits has been answered.
    let mut next_worker = 2;
    let mut last_worker_kill = Instant::now();
    let mut gateway_kills = 0;
    while answered.load(Ordering::SeqCst) < SUBMITS {
        assert!(
            Instant::now() < deadline,
            "submits did not all get an id in time"
        );
        if gateway_kills < GATEWAY_KILLS
            && answered.load(Ordering::SeqCst)
                >= (gateway_kills + 1) * SUBMITS / (GATEWAY_KILLS + 1)
        {
            gateway.kill9();
            gateway_kills += 1;
            gateway = GatewayProcess::start(app.nats.url(), port, gateway_kills);
        }
        if last_worker_kill.elapsed() >= Duration::from_secs(2) {
            let victim = app.workers.len() - 2;
            app.workers[victim].signal("KILL");
            app.start_worker_process(&format!("w{next_worker}"), &worker_flags);
            next_worker += 1;
            last_worker_kill = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in clients {
        c.await.expect("client task");
    }
    assert_eq!(
        gateway_kills, GATEWAY_KILLS,
        "the gateway was killed as planned"
    );

    let given = given.lock().expect("ids lock").clone();
    assert_eq!(given.len(), SUBMITS);
    let mut ids = HashSet::new();
    for (i, answers) in &given {
        let first = &answers[0];
        assert!(
            answers.iter().all(|a| a == first),
            "key {i} was answered with different jobs: {answers:?}"
        );
        ids.insert(first.clone());
    }
    assert_eq!(ids.len(), SUBMITS, "one job per key");
    wait_all_done(&app, &ids, Duration::from_secs(40)).await;
}

/// The job message a gateway builds for `body` (tenant `public`, auth off).
fn message_for(body: &Value) -> JobMessage {
    let req = JobRequest::from_json(body, &Limits::default()).expect("valid body");
    JobMessage {
        id: JobId::new(),
        tenant: names::DEFAULT_TENANT.to_string(),
        spec: req.spec,
        priority: req.priority,
        submitted_at_ms: now_ms(),
        max_attempts: req.max_attempts,
        timeout_ms: req.timeout_ms,
        chaos: req.chaos,
        batch: None,
        run_at_ms: None,
        schedule: None,
        retention_secs: None,
        workflow: None,
    }
}

/// Write the claim a gateway killed right after `claim` leaves: claimed, never published.
async fn leave_claim(app: &TestApp, key: &str, msg: &JobMessage, claimed_at_ms: i64) {
    let (kv_key, value) = idempotency::claim_entry(key, msg, claimed_at_ms).expect("claim entry");
    let store = app
        .js()
        .await
        .get_key_value(names::IDEMPOTENCY_BUCKET)
        .await
        .expect("idempotency bucket");
    store
        .create(&kv_key, value.into())
        .await
        .expect("write the claim");
}

async fn submit_keyed(http: &reqwest::Client, base: &str, key: &str, body: &Value) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/v1/jobs"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("POST /v1/jobs");
    let status = resp.status().as_u16();
    let replayed = resp.headers().get("idempotent-replayed").cloned();
    let json: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200 {
        assert_eq!(
            replayed.as_ref().map(|v| v.as_bytes()),
            Some(&b"true"[..]),
            "{json}"
        );
    }
    (status, json)
}

#[tokio::test]
async fn a_claim_left_by_a_killed_gateway_is_published_by_the_next_submit_with_its_key() {
    let app = TestApp::spawn().await;
    let body = json!({"kind": "factorial", "input": 30});

    // Stale (a minute old): healed at once.
    let stale = message_for(&body);
    leave_claim(&app, "left-behind", &stale, now_ms() - 60_000).await;
    assert_eq!(
        app.http
            .get(app.url(&format!("/v1/jobs/{}", stale.id)))
            .send()
            .await
            .expect("GET")
            .status(),
        404
    );
    let (status, answer) = submit_keyed(&app.http, &app.base, "left-behind", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["id"],
        stale.id.to_string(),
        "the claim's own id, not a new one"
    );
    let rec = app
        .wait_finished(&stale.id.to_string(), Duration::from_secs(20))
        .await;
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["result"], "265252859812191058636308480000000");

    // Fresh (its first request might still be publishing): answered after the grace,
    // with the same id, and it runs.
    let young = message_for(&json!({"kind": "factorial", "input": 31}));
    leave_claim(&app, "just-claimed", &young, now_ms()).await;
    let (status, answer) = submit_keyed(
        &app.http,
        &app.base,
        "just-claimed",
        &json!({"kind": "factorial", "input": 31}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], young.id.to_string());
    let rec = app
        .wait_finished(&young.id.to_string(), Duration::from_secs(20))
        .await;
    assert_eq!(rec["status"], "done", "{rec}");

    // The same key with another body is still refused.
    let (status, problem) = submit_keyed(
        &app.http,
        &app.base,
        "left-behind",
        &json!({"kind": "factorial", "input": 29}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
}

#[tokio::test]
async fn two_gateways_healing_the_same_claim_at_once_queue_it_once() {
    let app = TestApp::gateway_only().await;
    let other = crate::helpers::start_gateway(app.nats.url(), &app.shutdown, |_| {}).await;
    let body = json!({"kind": "fibonacci", "input": 77});
    let msg = message_for(&body);
    leave_claim(&app, "contended", &msg, now_ms() - 60_000).await;
    let answers = join_all((0..8).map(|i| {
        let base = if i % 2 == 0 { &app.base } else { &other };
        submit_keyed(&app.http, base, "contended", &body)
    }))
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answers:?}");
        assert_eq!(answer["id"], msg.id.to_string(), "{answers:?}");
    }
    assert_eq!(app.stream_messages(names::JOBS_STREAM).await, 1);
    let rec = app.get_job(&msg.id.to_string()).await;
    assert_eq!(rec["status"], "pending", "{rec}");
}
