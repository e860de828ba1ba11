//! Priorities: a queued `high` job takes the next free slot ahead of a `normal` backlog,
//! `normal` goes before `low`, and a `low` job is not starved by a backlog above it.

use crate::helpers::{worker_args, TestApp};
use serde_json::{json, Value};
use std::time::Duration;
use time::OffsetDateTime;

fn started_at(record: &Value) -> OffsetDateTime {
    let at = record["started_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no started_at: {record}"));
    OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("started_at {at:?}: {e}"))
}

/// Submit `n` sum jobs at `priority`; their ids.
async fn submit(app: &TestApp, n: usize, priority: &str, tag: u64) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n as u64 {
        ids.push(
            app.submit_ok(json!({"kind": "sum", "input": [tag, i], "priority": priority}))
                .await,
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_job_takes_the_next_free_slot_ahead_of_a_normal_backlog_and_low_is_not_starved() {
    // Queued while no worker runs (as with the workers frozen): 60 normal, then 5 low,
    // then one high, submitted last.
    let app = TestApp::gateway_only().await;
    let normal = submit(&app, 60, "normal", 1).await;
    let low = submit(&app, 5, "low", 2).await;
    let high = submit(&app, 1, "high", 3).await;

    // One worker with one slot and no prefetch (which, while kernels are quick, takes
    // up to 32 more per round): jobs start one after another, so start times are the
    // order the worker took them in, a fetch round each.
    let mut args = worker_args(app.nats.url());
    args.concurrency = Some(1);
    args.prefetch = 0;
    app.start_worker_in_process(args);

    let mut all = Vec::new();
    for id in high.iter().chain(&normal).chain(&low) {
        let rec = app.wait_finished(id, Duration::from_secs(60)).await;
        assert_eq!(rec["status"], "done", "{rec}");
        all.push((id.clone(), started_at(&rec)));
    }
    let start = |id: &String| all.iter().find(|(i, _)| i == id).map(|(_, t)| *t);
    let high_start = start(&high[0]).expect("high started");
    let mut order = all.clone();
    order.sort_by_key(|(_, t)| *t);
    assert_eq!(
        order[0].0,
        high[0],
        "the high job, submitted last, started first; order: {:?}",
        order.iter().map(|(i, _)| i).collect::<Vec<_>>()
    );
    assert!(normal
        .iter()
        .chain(&low)
        .all(|id| start(id).is_some_and(|t| t >= high_start)));

    // Normal before low, mostly: the first low job starts after several normal ones.
    let first_low = low.iter().filter_map(start).min().expect("low started");
    let normal_before = normal
        .iter()
        .filter(|id| start(id).is_some_and(|t| t < first_low))
        .count();
    assert!(
        normal_before >= 7,
        "only {normal_before} normal jobs started before the first low one"
    );
    // Not starved: a low job starts while normal ones still wait.
    let last_normal = normal
        .iter()
        .filter_map(start)
        .max()
        .expect("normal started");
    assert!(
        first_low < last_normal,
        "the low jobs waited for the whole normal backlog"
    );
}
