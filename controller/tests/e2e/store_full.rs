//! A full JetStream store is not the job's fault: jobs whose results cannot be stored
//! wait (handed back, uncounted) instead of burning their attempts, and every one of
//! them finishes once space is freed.

use crate::helpers::TestApp;
use async_nats::jetstream::stream;
use jetmill_proto::names;
use jetmill_testkit::{NatsServer, Options};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// JetStream's whole file store in this test.
const STORE: u64 = 4 * 1024 * 1024;
/// Filler message size; the room left after filling is four of them (< 80 KB).
const CHUNK: usize = 16 * 1024;
/// Room made after filling, in filler messages.
const ROOM: u64 = 4;
/// Jobs whose results (~100 KB each, Object Store) cannot fit in the room left.
const JOBS: u64 = 8;
/// Their inputs: F(480000) has 100,313 digits, one Object Store chunk (128 KiB), so
/// a refused upload leaves nothing behind (see the note on partial uploads below).
const FIRST_N: u64 = 480_000;
/// Every job is handed back at least this often while the store is full, more than
/// `--max-deliver` (2), so counting a hand-back as an attempt would fail them.
const HAND_BACKS: usize = 3;

fn sha256_of_fibonacci(n: u64) -> String {
    let out = jetmill_compute::run(
        &jetmill_compute::Task::Fibonacci { n },
        &jetmill_compute::Control::silent(2),
    )
    .expect("fibonacci");
    hex::encode(Sha256::digest(out.decimal.as_bytes()))
}

#[tokio::test]
async fn a_full_store_delays_jobs_without_failing_them_and_all_finish_once_space_is_freed() {
    let nats = NatsServer::start_with(Options {
        max_file_store: Some(STORE),
    });
    let mut app = TestApp::on(nats, |_| {}).await;

    // Fill the store with a stream of our own, then leave room for the jobs' messages,
    // records and events, but not for one result. (A result of several chunks whose
    // upload is refused part way leaves its first chunks in the store: the Object
    // Store client does not remove them. Single-chunk results keep this test about
    // the worker.)
    let js = app.js().await;
    let filler = js
        .create_stream(stream::Config {
            name: "FILLER".into(),
            subjects: vec!["filler.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("filler stream");
    let chunk = bytes::Bytes::from(vec![b'x'; CHUNK]);
    let mut stored = 0u64;
    loop {
        let published = match js.publish("filler.data", chunk.clone()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if !published {
            break;
        }
        stored += 1;
        assert!(
            stored * (CHUNK as u64) < 2 * STORE,
            "the store never filled up: is max_file_store applied?"
        );
    }
    assert!(stored > 10, "only {stored} filler messages fit");
    for seq in stored + 1 - ROOM..=stored {
        filler.delete_message(seq).await.expect("make room");
    }

    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push((
            app.submit_ok(json!({"kind": "fibonacci", "input": FIRST_N + i}))
                .await,
            FIRST_N + i,
        ));
    }
    app.start_worker_process("w", &["--max-deliver", "2", "--concurrency", "2"]);
    let log = app.workers[0].log.clone();

    // While the store is full: every job is handed back again and again, and none
    // fails, is terminated or leaves the queue.
    let handed_back = |id: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(id) && l.contains("handing the job back (not counted"))
            .count()
    };
    // A hand-back does not count; the one thing that can is an attempt already
    // recorded `running` whose hand-back write the full store refused as well (the
    // next delivery cannot tell it from a worker that died), and the worker logs it.
    let lost_writes = |id: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(id) && l.contains("could not put the record back to pending"))
            .count() as u64
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        for (id, _) in &ids {
            let rec = app.get_job(id).await;
            assert!(
                matches!(rec["status"].as_str(), Some("pending" | "running")),
                "a job must not end while the store is full: {rec}"
            );
            assert!(
                rec["attempts"].as_u64().unwrap_or(0) <= 1 + lost_writes(id),
                "hand-backs are not attempts: {rec}"
            );
        }
        assert_eq!(
            app.stream_messages(names::JOBS_STREAM).await,
            JOBS,
            "every job is still queued"
        );
        if ids.iter().all(|(id, _)| handed_back(id) >= HAND_BACKS) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs were not handed back {HAND_BACKS} times each within 90 s: {:?}",
            ids.iter()
                .map(|(id, _)| handed_back(id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Free the space: every waiting job finishes.
    filler.purge().await.expect("purge the filler");
    for (id, n) in &ids {
        let rec: Value = app.wait_finished(id, Duration::from_secs(120)).await;
        assert_eq!(rec["status"], "done", "{rec}");
        let attempts = rec["attempts"].as_u64().unwrap_or(0);
        assert!(
            (1..=1 + lost_writes(id)).contains(&attempts),
            "handed back {} times, {} hand-back writes refused: {rec}",
            handed_back(id),
            lost_writes(id)
        );
        assert_eq!(rec["result_info"]["location"]["store"], "object", "{rec}");
        assert_eq!(
            rec["result_info"]["sha256"].as_str(),
            Some(sha256_of_fibonacci(*n).as_str()),
            "F({n}) stored whole"
        );
    }
    let emptied = jetmill_testkit::wait_until(Duration::from_secs(30), || async {
        app.stream_messages(names::JOBS_STREAM).await == 0
    })
    .await;
    assert!(emptied, "every job acked once done");
}
