//! Live progress: Server-Sent Events of a running job (resumable with
//! `Last-Event-ID`) and the `?wait=` long-poll.

use crate::helpers::TestApp;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: u64,
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
                if let (Some(id), Some(event)) = (id, event) {
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
    let last = seen.last().map(|e| e.id);
    seen.extend(SseReader::open(&app, &id, last).await.rest().await);

    // The resumed view is exactly the whole story, as a fresh reader sees it afterwards.
    let full = SseReader::open(&app, &id, None).await.rest().await;
    assert_eq!(seen, full);

    let kinds: Vec<&str> = full.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"accepted"), "{kinds:?}");
    assert!(kinds.contains(&"started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    assert!(full.windows(2).all(|w| w[0].id < w[1].id), "{full:?}");
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

fn last_id(events: &[Sse]) -> Option<u64> {
    events.last().map(|e| e.id)
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
