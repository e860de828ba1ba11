//! Live progress: Server-Sent Events of a running job (resumable with
//! `Last-Event-ID`) and the `?wait=` long-poll.

use crate::helpers::{worker_args, TestApp};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    /// Its `id` (the EVENTS sequence); `None` for a `started` the feed derives from the
    /// event after it (`JobEvent::implied_start`), which a client resumes from the id
    /// before it, as an EventSource does.
    id: Option<u64>,
    event: String,
    data: Value,
}

/// An open `GET /v1/jobs/{id}/events`, read event by event.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

impl SseReader {
    async fn open(app: &TestApp, id: &str, last_event_id: Option<u64>) -> SseReader {
        let mut req = app.http.get(app.url(&format!("/v1/jobs/{id}/events")));
        if let Some(last) = last_event_id {
            req = req.header("Last-Event-ID", last.to_string());
        }
        let resp = req.send().await.expect("GET events");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()[reqwest::header::CONTENT_TYPE],
            "text/event-stream"
        );
        SseReader::of(resp)
    }

    /// Open any feed (`path`) with an optional bearer token and `Last-Event-ID`; the
    /// status and body when the answer is not a 200 event stream.
    async fn try_open(
        http: &reqwest::Client,
        url: String,
        token: Option<&str>,
        last_event_id: Option<u64>,
    ) -> Result<SseReader, String> {
        let mut req = http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(last) = last_event_id {
            req = req.header("Last-Event-ID", last.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v == "text/event-stream");
        if status != 200 || !is_sse {
            return Err(format!(
                "{status}: {}",
                resp.text().await.unwrap_or_default()
            ));
        }
        Ok(SseReader::of(resp))
    }

    fn of(resp: reqwest::Response) -> SseReader {
        SseReader {
            body: resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                // Keep-alive comments carry no event.
                if let Some(event) = event {
                    let data = serde_json::from_str(&data).expect("event data is JSON");
                    return Some(Sse { id, event, data });
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(120), self.body.next())
                .await
                .expect("an event or the end within 120 s")?;
            let chunk = chunk.expect("event stream chunk");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn rest(mut self) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

#[tokio::test]
async fn sse_of_a_running_factorial_shows_progress_then_done_and_resumes_without_gaps() {
    let mut app = TestApp::gateway_only().await;
    // Check-ins every 200 ms (a third of ack_wait), so a job of a few seconds reports progress.
    app.start_worker_process("sse", &["--ack-wait-secs", "0.6"]);
    app.workers[0].wait_started().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 2_000_000}))
        .await;

    // Read a few events, drop the connection, resume from the last one seen.
    let mut first = SseReader::open(&app, &id, None).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(first.next().await.expect("stream ended early"));
    }
    drop(first);
    let last = last_id(&seen);
    seen.extend(SseReader::open(&app, &id, last).await.rest().await);

    // The resumed view is exactly the whole story, as a fresh reader sees it afterwards.
    let full = SseReader::open(&app, &id, None).await.rest().await;
    assert_eq!(seen, full);

    let kinds: Vec<&str> = full.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"accepted"), "{kinds:?}");
    assert!(kinds.contains(&"started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    assert_ids_increase(&full);
    let progress: Vec<f64> = full
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["progress"].as_f64().expect("progress value"))
        .collect();
    assert!(!progress.is_empty(), "no progress events: {kinds:?}");
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]) && progress.iter().all(|p| *p > 0.0 && *p <= 1.0),
        "{progress:?}"
    );
    let done = &full.last().expect("events").data;
    assert_eq!(done["status"], "done");
    assert_eq!(done["result_url"], format!("/v1/jobs/{id}/result"));
    assert_eq!(done["job_id"], id.as_str());

    // Resuming after the final event yields nothing and ends at once.
    let after_end = SseReader::open(&app, &id, last_id(&full))
        .await
        .rest()
        .await;
    assert!(after_end.is_empty(), "{after_end:?}");
}

/// The id a client resumes from after `events`: the last one sent.
fn last_id(events: &[Sse]) -> Option<u64> {
    events.iter().rev().find_map(|e| e.id)
}

/// Ids strictly increase, and only an implied `started` comes without one.
fn assert_ids_increase(events: &[Sse]) {
    let ids: Vec<u64> = events.iter().filter_map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e.id.is_some() || e.event == "started"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_quick_job_stores_no_started_yet_its_feed_shows_one_and_a_slow_job_stores_its_own() {
    let app = TestApp::spawn().await;
    let stored_types = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_string())
            .collect()
    };

    // Quick (well under --running-after-ms): EVENTS holds accepted and done only; the
    // done carries the attempt's start, and the feed shows the started it stands for.
    let quick = app
        .submit_ok(json!({"kind": "factorial", "input": 20}))
        .await;
    app.wait_finished(&quick, Duration::from_secs(30)).await;
    let feed = SseReader::open(&app, &quick, None).await.rest().await;
    let kinds: Vec<&str> = feed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["accepted", "started", "done"], "{feed:?}");
    let (accepted, started, done) = (&feed[0], &feed[1], &feed[2]);
    assert_eq!(started.id, None, "an implied started has no id of its own");
    assert!(accepted.id.is_some() && done.id.is_some(), "{feed:?}");
    assert_eq!(started.data["status"], "running");
    assert_eq!(started.data["attempt"], 1);
    assert_eq!(started.data["worker"], done.data["worker"]);
    let begun = done.data["started_at_ms"]
        .as_i64()
        .expect("done carries started_at_ms");
    assert_eq!(started.data["at_ms"].as_i64(), Some(begun));
    assert!(
        begun <= done.data["at_ms"].as_i64().expect("at_ms"),
        "{feed:?}"
    );
    let record = app.get_job(&quick).await;
    assert_eq!(record["attempts"], 1, "{record}");
    // What the stream itself holds: no started message.
    let js = app.js().await;
    let stream = js
        .get_stream(jetmill_proto::names::EVENTS_STREAM)
        .await
        .expect("EVENTS");
    let started_subject = format!("jobs.events.{quick}.started");
    assert!(
        stream
            .get_last_raw_message_by_subject(&started_subject)
            .await
            .is_err(),
        "a quick attempt stores no started"
    );
    // Resuming after `accepted` (the last id before the implied started) misses nothing.
    let resumed = SseReader::open(&app, &quick, accepted.id)
        .await
        .rest()
        .await;
    assert_eq!(resumed, feed[1..].to_vec());

    // Slow (its kernel outlives --running-after-ms): a started of its own, with an id,
    // and a done without started_at_ms, so the feed shows one started, not two.
    let slow = app
        .submit_ok(json!({"kind": "factorial", "input": 20, "chaos": {"delay_ms": 300}}))
        .await;
    app.wait_finished(&slow, Duration::from_secs(30)).await;
    let feed = SseReader::open(&app, &slow, None).await.rest().await;
    let kinds: Vec<&str> = feed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["accepted", "started", "done"], "{feed:?}");
    assert!(feed.iter().all(|e| e.id.is_some()), "{feed:?}");
    assert!(feed[2].data.get("started_at_ms").is_none(), "{feed:?}");
    assert!(
        stream
            .get_last_raw_message_by_subject(&format!("jobs.events.{slow}.started"))
            .await
            .is_ok(),
        "a slow attempt stores its started"
    );
    assert_eq!(
        stored_types(app.events_of(&slow).await),
        ["accepted", "started", "done"]
    );
}

#[tokio::test]
async fn long_poll_returns_when_the_job_ends_or_the_wait_is_over() {
    let mut app = TestApp::gateway_only().await;
    // No worker yet: a short wait returns the record as it is.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 25, "chaos": {"delay_ms": 500}}))
        .await;
    let rec: Value = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}?wait=200ms")))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("record");
    assert_eq!(rec["status"], "pending", "{rec}");

    app.start_worker_process("poll", &[]);
    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}?wait=60s")))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    let rec: Value = resp.json().await.expect("record");
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["result"], "15511210043330985984000000");

    let resp = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}?wait=soon")))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);
    let problem: Value = resp.json().await.expect("problem");
    assert_eq!(problem["field"], "wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_jobs_feed_streams_every_jobs_events_from_now_on() {
    let app = TestApp::spawn().await;
    let before = app
        .submit_ok(json!({"kind": "factorial", "input": 7}))
        .await;
    app.wait_finished(&before, Duration::from_secs(20)).await;

    let resp = app
        .http
        .get(app.url("/v1/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /v1/events");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let ids = [
        app.submit_ok(json!({"kind": "factorial", "input": 8}))
            .await,
        app.submit_ok(json!({"kind": "sum", "input": [1, 2]})).await,
    ];
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let done_of = |text: &str, id: &str| {
        text.split("\n\n")
            .any(|b| b.contains("event: done") && b.contains(id))
    };
    while !ids.iter().all(|id| done_of(&text, id)) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("both jobs' done events within 20 s; got:\n{text}"))
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for id in &ids {
        for ev in ["accepted", "started", "done"] {
            assert!(
                text.split("\n\n")
                    .any(|b| b.contains(&format!("event: {ev}")) && b.contains(id.as_str())),
                "{ev} of {id} in the feed:\n{text}"
            );
        }
    }
    assert!(
        !text.contains(before.as_str()),
        "the feed starts at new events:\n{text}"
    );
}

/// Open files this process may have (`Max open files` soft limit in /proc/self/limits).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Consumers on the `EVENTS` stream now.
async fn events_consumers(app: &TestApp) -> usize {
    let js = app.js().await;
    let mut stream = js
        .get_stream(jetmill_proto::names::EVENTS_STREAM)
        .await
        .expect("events stream");
    stream
        .info()
        .await
        .expect("stream info")
        .state
        .consumer_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_watchers_of_one_job_all_see_it_to_done_on_one_consumer() {
    const WATCHERS: usize = 1_500;
    // Client and server ends of every connection live in this process.
    if let Some(limit) = open_files_limit() {
        assert!(
            limit >= 2 * WATCHERS + 512,
            "this test needs {} open files, the limit is {limit}: raise it (ulimit -n 8192)",
            2 * WATCHERS + 512
        );
    }
    let app = TestApp::gateway_only().await;
    // No worker yet: the job waits, with its `accepted` event stored, until all watch.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 20_000}))
        .await;
    let url = app.url(&format!("/v1/jobs/{id}/events"));
    let connected = Arc::new(AtomicUsize::new(0));
    let (refused_tx, mut refused) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut watchers = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        let (http, url, connected, refused) = (
            app.http.clone(),
            url.clone(),
            connected.clone(),
            refused_tx.clone(),
        );
        watchers.push(tokio::spawn(async move {
            let mut reader = match SseReader::try_open(&http, url, None, None).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = refused.send(e);
                    return None;
                }
            };
            // The job's history (its `accepted`) reaches a watcher that came late.
            let first = reader.next().await.expect("the job's first event");
            connected.fetch_add(1, Ordering::SeqCst);
            let mut seen = vec![first];
            seen.extend(reader.rest().await);
            Some(seen)
        }));
    }
    drop(refused_tx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::SeqCst) < WATCHERS {
        if let Ok(why) = refused.try_recv() {
            let served = connected.load(Ordering::SeqCst);
            panic!("a watcher was not served ({served} were): {why}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {WATCHERS} watchers got the job's first event within 120 s",
            connected.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The gateway's fan-out and room for a short-lived history read; not one per client.
    let consumers = events_consumers(&app).await;
    assert!(
        consumers <= 3,
        "{consumers} consumers on EVENTS while {WATCHERS} clients follow a job"
    );

    app.start_worker_in_process(worker_args(app.nats.url()));
    let mut stories = Vec::with_capacity(WATCHERS);
    for w in watchers {
        stories.push(w.await.expect("watcher task").expect("watcher served"));
    }
    let story = &stories[0];
    let kinds: Vec<&str> = story.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"accepted"), "{kinds:?}");
    assert!(kinds.contains(&"started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    assert_ids_increase(story);
    assert_eq!(story.last().expect("events").data["status"], "done");
    for (i, other) in stories.iter().enumerate() {
        assert_eq!(other, story, "watcher {i} saw another story");
    }
    // Everyone saw exactly what the stream holds for the job.
    let stored = app.events_of(&id).await;
    assert_eq!(story.len(), stored.len(), "{kinds:?} vs {stored:?}");
    assert!(events_consumers(&app).await <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_show_only_the_callers_jobs_and_the_all_jobs_feed_resumes() {
    const ACME: &str = "key-acme-feeds-0123";
    const GLOBEX: &str = "key-globex-feeds-0123";
    const ROOT: &str = "key-root-feeds-0123";
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("api-keys");
    std::fs::write(
        &keys,
        format!("{ACME} acme\n{GLOBEX} globex\n{ROOT} ops admin\n"),
    )
    .expect("write api keys");
    let app = TestApp::gateway_with(|a| a.auth.api_keys = Some(keys)).await;
    let all = app.url("/v1/events");
    assert!(
        SseReader::try_open(&app.http, all.clone(), None, None)
            .await
            .err()
            .is_some_and(|e| e.starts_with("401")),
        "the all-jobs feed needs a token"
    );
    let mut acme_feed = SseReader::try_open(&app.http, all.clone(), Some(ACME), None)
        .await
        .expect("acme's feed");
    let mut admin_feed = SseReader::try_open(&app.http, all.clone(), Some(ROOT), None)
        .await
        .expect("the admin's feed");

    let submit = |token: &'static str, input: u64| {
        let req = app
            .http
            .post(app.url("/v1/jobs"))
            .bearer_auth(token)
            .json(&json!({"kind": "factorial", "input": input}));
        async move {
            let resp = req.send().await.expect("POST /v1/jobs");
            assert_eq!(resp.status().as_u16(), 202);
            let body: Value = resp.json().await.expect("202 body");
            body["id"].as_str().expect("job id").to_string()
        }
    };
    // No worker: each job has its `accepted`; acme's then gets `cancelled`.
    let a = submit(ACME, 11).await;
    let b = submit(GLOBEX, 12).await;
    let resp = app
        .http
        .delete(app.url(&format!("/v1/jobs/{a}")))
        .bearer_auth(ACME)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status().as_u16(), 200);

    let acme_first = acme_feed.next().await.expect("acme's first event");
    let acme_second = acme_feed.next().await.expect("acme's second event");
    let mine = |e: &Sse| (e.event.clone(), e.data["job_id"].as_str().map(String::from));
    assert_eq!(mine(&acme_first), ("accepted".into(), Some(a.clone())));
    assert_eq!(mine(&acme_second), ("cancelled".into(), Some(a.clone())));
    let mut admin = Vec::new();
    while admin.len() < 3 {
        admin.push(admin_feed.next().await.expect("admin feed event"));
    }
    assert_eq!(
        admin.iter().map(mine).collect::<Vec<_>>(),
        vec![
            ("accepted".into(), Some(a.clone())),
            ("accepted".into(), Some(b.clone())),
            ("cancelled".into(), Some(a.clone())),
        ]
    );
    assert_eq!(
        acme_second.id, admin[2].id,
        "one stream sequence for everyone"
    );

    // A reconnect after acme's first event gets the rest of acme's events only.
    drop(acme_feed);
    let mut resumed = SseReader::try_open(&app.http, all, Some(ACME), acme_first.id)
        .await
        .expect("acme's resumed feed");
    assert_eq!(resumed.next().await, Some(acme_second));

    // A job's feed: its owner and admins only.
    let b_feed = app.url(&format!("/v1/jobs/{b}/events"));
    let refused = SseReader::try_open(&app.http, b_feed.clone(), Some(ACME), None)
        .await
        .err();
    assert!(
        refused.as_deref().is_some_and(|e| e.starts_with("404")),
        "{refused:?}"
    );
    let refused = SseReader::try_open(&app.http, b_feed.clone(), None, None)
        .await
        .err();
    assert!(
        refused.as_deref().is_some_and(|e| e.starts_with("401")),
        "{refused:?}"
    );
    for token in [GLOBEX, ROOT] {
        let mut feed = SseReader::try_open(&app.http, b_feed.clone(), Some(token), None)
            .await
            .expect("b's feed");
        let first = feed.next().await.expect("b's first event");
        assert_eq!(mine(&first), ("accepted".into(), Some(b.clone())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_feeds_end_when_the_gateway_shuts_down() {
    let app = TestApp::gateway_only().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 9}))
        .await;
    let mut job = SseReader::open(&app, &id, None).await;
    assert_eq!(job.next().await.map(|e| e.event), Some("accepted".into()));
    let all = SseReader::try_open(&app.http, app.url("/v1/events"), None, None)
        .await
        .expect("all-jobs feed");
    app.shutdown.cancel();
    // Both streams end (the job never ran), so a graceful stop is not held open.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        (job.rest().await, all.rest().await)
    })
    .await
    .expect("feeds end within 20 s of shutdown");
    assert_eq!(ended, (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_jobs_feed_resumes_from_further_back_than_the_gateway_keeps() {
    let app = TestApp::gateway_only().await;
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 10}))
        .await;
    let mut job = SseReader::open(&app, &id, None).await;
    let accepted = job.next().await.expect("accepted");
    // More events than the gateway's ring of recent events holds (8,192), from another
    // job, straight into the stream.
    const OTHERS: usize = 9_000;
    let other = "01a207e4-e83b-72f9-ab26-1de816ec8030";
    let js = app.js().await;
    let publish = async {
        for chunk in (0..OTHERS).collect::<Vec<_>>().chunks(500) {
            let mut acks = Vec::with_capacity(chunk.len());
            for i in chunk {
                let event = json!({"job_id": other, "tenant": "public", "type": "progress",
                    "at_ms": 1, "attempt": 1, "progress": (i + 1) as f64 / (OTHERS + 1) as f64});
                let subject = format!("jobs.events.{other}.progress");
                let ack = js.publish(subject, event.to_string().into()).await;
                acks.push(ack.expect("publish"));
            }
            for ack in acks {
                ack.await.expect("stored");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), publish)
        .await
        .expect("9,000 events stored within 60 s");
    let (status, _) = app.cancel(&id).await;
    assert_eq!(status, 200);
    // The job's feed ends at `cancelled`: the gateway has handled every event before it.
    let rest = tokio::time::timeout(Duration::from_secs(60), job.rest())
        .await
        .expect("the job's feed ends within 60 s");
    assert_eq!(rest.last().map(|e| e.event.as_str()), Some("cancelled"));

    let resumed = SseReader::try_open(
        &app.http,
        app.url("/v1/events"),
        None,
        Some(accepted.id.expect("accepted has an id") - 1),
    )
    .await
    .expect("resumed feed");
    let mut resumed = resumed;
    let mut seen = Vec::new();
    let read = async {
        while seen.len() < OTHERS + 2 {
            seen.push(resumed.next().await.expect("resumed event"));
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .is_err()
    {
        panic!(
            "only {} of {} resumed events within 60 s",
            seen.len(),
            OTHERS + 2
        );
    }
    assert_eq!(seen[0], accepted);
    assert_eq!(seen.last(), rest.last());
    assert!(
        seen.windows(2)
            .all(|w| w[0].id.zip(w[1].id).is_some_and(|(a, b)| a + 1 == b)),
        "a gap or a repeat"
    );
    assert!(seen[1..=OTHERS].iter().all(|e| e.data["job_id"] == other));
}

#[tokio::test]
async fn a_gateway_nobody_watches_follows_no_events_until_its_first_watcher() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process("unwatched", &[]);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 12}))
        .await;
    assert_eq!(
        app.wait_finished(&id, Duration::from_secs(60)).await["status"],
        "done"
    );
    // Jobs ran, and no consumer on EVENTS delivered their events to the gateway.
    assert_eq!(events_consumers(&app).await, 0);
    // The first watcher starts the fan-out and still gets the whole story.
    let mut feed = SseReader::open(&app, &id, None).await;
    let mut seen = Vec::new();
    while let Some(e) = feed.next().await {
        seen.push(e.event);
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("accepted"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("done"), "{seen:?}");
    assert_eq!(events_consumers(&app).await, 1, "one fan-out now");
}
