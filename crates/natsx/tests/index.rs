//! The live job index against a real nats-server: it lists what the scan lists, sees
//! writes made through other connections at once, survives a server restart, and
//! follows again at once when its consumer vanishes.

use futures::StreamExt;
use jetmill_natsx::{
    provision, IndexOptions, Jet, JobIndex, ListQuery, Page, Phase, QueueSettings, Records,
};
use jetmill_proto::{JobId, JobKind, JobMessage, JobRecord, JobSpec, JobStatus};
use jetmill_testkit::NatsServer;
use std::time::Duration;

async fn jet(nats: &NatsServer) -> Jet {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    provision(client, QueueSettings::default())
        .await
        .expect("provision")
}

/// A generous barrier: these tests check what the index lists, not how fast it
/// catches up, so a busy machine must not turn them into scans.
fn index(records: &Records) -> JobIndex {
    JobIndex::start(
        records.clone(),
        IndexOptions {
            barrier_timeout: Duration::from_secs(60),
        },
    )
}

fn record(tenant: &str, i: usize) -> JobRecord {
    let spec = match i % 3 {
        0 => JobSpec::Fibonacci {
            n: i as u64,
            modulus: None,
        },
        1 => JobSpec::Factorial { n: i as u64 },
        _ => JobSpec::Sum {
            terms: vec![i.to_string()],
        },
    };
    let mut r = JobRecord::pending(&JobMessage::new(tenant, spec, 1_700_000_000_000));
    r.status = match i % 7 {
        0 => JobStatus::Running,
        1 | 2 => JobStatus::Done,
        3 => JobStatus::Failed,
        _ => JobStatus::Pending,
    };
    r
}

/// Store records with many creates in flight.
async fn create_all(records: &Records, all: &[JobRecord]) {
    futures::stream::iter(all)
        .map(|r| records.create(r))
        .buffer_unordered(64)
        .for_each(|created| async move {
            assert!(created.expect("create record"), "a fresh id");
        })
        .await;
}

/// The query for `tenant`'s newest job.
fn newest_of(tenant: &str) -> ListQuery {
    ListQuery {
        tenant: Some(tenant.into()),
        limit: 1,
        ..Default::default()
    }
}

async fn index_page(index: &JobIndex, q: &ListQuery) -> Page {
    index
        .page(q)
        .await
        .expect("list from the index")
        .expect("the index is ready (generous barrier)")
}

/// Every id of `q`, page by page, from the index; also checks that no page is empty
/// unless the whole listing is (the index knows whether more matches follow).
async fn walk_index(index: &JobIndex, q: &ListQuery) -> Vec<JobId> {
    let mut q = q.clone();
    let mut out = Vec::new();
    loop {
        let page = index_page(index, &q).await;
        assert!(page.jobs.len() <= q.limit, "page over the limit");
        assert!(
            !page.jobs.is_empty() || (out.is_empty() && page.next.is_none()),
            "an empty page in the middle of {q:?}"
        );
        out.extend(page.jobs.iter().map(|r| r.id));
        match page.next {
            Some(c) => {
                assert_eq!(Some(c), page.jobs.last().map(|r| r.id), "cursor = last id");
                q.before = Some(c);
            }
            None => return out,
        }
    }
}

async fn walk_scan(records: &Records, q: &ListQuery) -> Vec<JobId> {
    let mut q = q.clone();
    let mut out = Vec::new();
    loop {
        let page = records.page(&q).await.expect("scan page");
        out.extend(page.jobs.iter().map(|r| r.id));
        match page.next {
            Some(c) => q.before = Some(c),
            None => return out,
        }
    }
}

fn queries() -> Vec<ListQuery> {
    let mut out = Vec::new();
    for tenant in [None, Some("acme"), Some("globex"), Some("nobody")] {
        for status in [
            None,
            Some(JobStatus::Running),
            Some(JobStatus::Done),
            Some(JobStatus::Cancelled),
        ] {
            for kind in [None, Some(JobKind::Sum)] {
                for limit in [1, 7, 50] {
                    out.push(ListQuery {
                        tenant: tenant.map(str::to_string),
                        status,
                        kind,
                        schedule: None,
                        before: None,
                        limit,
                    });
                }
            }
        }
    }
    out
}

async fn assert_same_as_scan(index: &JobIndex, records: &Records) {
    for q in queries() {
        let by_index = walk_index(index, &q).await;
        let by_scan = walk_scan(records, &q).await;
        assert_eq!(by_index, by_scan, "{q:?}");
    }
}

#[tokio::test]
async fn the_index_lists_what_the_scan_lists_through_writes_updates_and_deletes() {
    let nats = NatsServer::start();
    let jet = jet(&nats).await;
    // Some records before the index starts (bootstrap), more after (live).
    let before: Vec<JobRecord> = (0..120)
        .map(|i| record(if i % 4 == 0 { "globex" } else { "acme" }, i))
        .collect();
    create_all(&jet.records, &before).await;
    let index = index(&jet.records);
    let after: Vec<JobRecord> = (120..200)
        .map(|i| record(if i % 5 == 0 { "globex" } else { "acme" }, i))
        .collect();
    create_all(&jet.records, &after).await;
    assert_same_as_scan(&index, &jet.records).await;
    assert_eq!(index.stats().jobs, 200);
    assert_eq!(index.stats().tenants, 2);

    // Status changes move jobs between filters; deletes and purges remove them.
    let acme: Vec<&JobRecord> = before
        .iter()
        .chain(&after)
        .filter(|r| r.tenant == "acme")
        .collect();
    for r in acme.iter().take(30) {
        jet.records
            .update("acme", &r.id, None, |rec| {
                rec.status = JobStatus::Cancelled;
                true
            })
            .await
            .expect("update");
    }
    let kv = jet.records.kv();
    let deleted = acme[40].id;
    let purged = acme[41].id;
    kv.delete(format!("acme.{deleted}"))
        .await
        .expect("kv delete");
    kv.purge(format!("acme.{purged}")).await.expect("kv purge");
    assert_same_as_scan(&index, &jet.records).await;
    assert_eq!(index.stats().jobs, 198);
    let cancelled = walk_index(
        &index,
        &ListQuery {
            tenant: Some("acme".into()),
            status: Some(JobStatus::Cancelled),
            limit: 10,
            ..Default::default()
        },
    )
    .await;
    let mut expected: Vec<JobId> = acme.iter().take(30).map(|r| r.id).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(cancelled, expected);
    let everything = walk_index(
        &index,
        &ListQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .await;
    assert!(!everything.contains(&deleted) && !everything.contains(&purged));
}

#[tokio::test]
async fn writes_through_another_connection_are_listed_by_the_next_call() {
    let nats = NatsServer::start();
    let reader = jet(&nats).await;
    let writer = jet(&nats).await;
    let index = index(&reader.records);
    let newest = |tenant: &str, status| ListQuery {
        tenant: Some(tenant.into()),
        status,
        limit: 1,
        ..Default::default()
    };
    for i in 0..25 {
        let mut r = record("acme", i);
        r.status = JobStatus::Pending;
        assert!(writer.records.create(&r).await.expect("create"));
        let page = index_page(&index, &newest("acme", None)).await;
        assert_eq!(page.jobs.first().map(|j| j.id), Some(r.id), "write {i}");

        writer
            .records
            .update("acme", &r.id, None, |rec| {
                rec.status = JobStatus::Running;
                true
            })
            .await
            .expect("update");
        let page = index_page(&index, &newest("acme", Some(JobStatus::Running))).await;
        assert_eq!(page.jobs.first().map(|j| j.id), Some(r.id), "update {i}");
        let page = index_page(&index, &newest("acme", Some(JobStatus::Pending))).await;
        assert!(
            page.jobs.iter().all(|j| j.id != r.id),
            "no longer pending after update {i}"
        );
    }
}

#[tokio::test]
async fn a_thousand_stored_records_bootstrap_into_one_ordered_listing() {
    let nats = NatsServer::start();
    let jet = jet(&nats).await;
    let mut all: Vec<JobRecord> = (0..1000).map(|i| record("acme", i)).collect();
    create_all(&jet.records, &all).await;
    let index = index(&jet.records);
    let listed = walk_index(
        &index,
        &ListQuery {
            tenant: Some("acme".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await;
    all.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
    assert_eq!(listed, all.iter().map(|r| r.id).collect::<Vec<_>>());
    let stats = index.stats();
    assert_eq!((stats.phase, stats.jobs), (Phase::Live, 1000));
}

#[tokio::test]
async fn the_index_follows_the_bucket_across_a_server_restart() {
    let mut nats = NatsServer::start();
    let jet = jet(&nats).await;
    let first = record("acme", 1);
    assert!(jet.records.create(&first).await.expect("create"));
    let index = index(&jet.records);
    let newest = newest_of("acme");
    assert_eq!(
        index_page(&index, &newest).await.jobs.first().map(|r| r.id),
        Some(first.id)
    );

    nats.restart();
    // The client reconnects by itself; retry the write until it lands.
    let second = record("acme", 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match jet.records.create(&second).await {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "no write within 30 s of the restart: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        index_page(&index, &newest).await.jobs.first().map(|r| r.id),
        Some(second.id),
        "the index caught up with a write made after the restart"
    );
}

/// A consumer that vanishes under the live index (its server died in a stream leader
/// election, or an operator deleted it) is replaced within seconds, from the last
/// applied write: async-nats' own repair would take 10 s of missed heartbeats first,
/// then retries up to 10 s apart, while listings scan and usage answers 503.
#[tokio::test]
async fn the_index_follows_again_within_seconds_when_its_consumer_vanishes() {
    let nats = NatsServer::start();
    let jet = jet(&nats).await;
    let first = record("acme", 1);
    assert!(jet.records.create(&first).await.expect("create"));
    let index = index(&jet.records);
    let mut progress = index.progress();
    tokio::time::timeout(
        Duration::from_secs(30),
        progress.wait_for(|p| p.phase == Phase::Live),
    )
    .await
    .expect("the index goes live")
    .expect("index task");

    let stream = &jet.records.kv().stream;
    let mut consumers = stream.consumers();
    let mut deleted = 0;
    while let Some(info) = consumers.next().await {
        let info = info.expect("consumer info");
        if info.config.description.as_deref() == Some("jetmill gateway job index") {
            stream.delete_consumer(&info.name).await.expect("delete");
            deleted += 1;
        }
    }
    assert_eq!(deleted, 1, "the index follows with one consumer");

    let second = record("acme", 2);
    assert!(jet.records.create(&second).await.expect("create"));
    let head = stream
        .clone()
        .get_info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let caught_up = tokio::time::timeout(
        Duration::from_secs(6),
        progress.wait_for(|p| p.phase == Phase::Live && p.applied >= head),
    )
    .await
    .is_ok();
    assert!(
        caught_up,
        "the index applied the write made after its consumer vanished within 6 s (at {:?}, head {head})",
        *progress.borrow()
    );
    let newest = newest_of("acme");
    assert_eq!(
        index_page(&index, &newest).await.jobs.first().map(|r| r.id),
        Some(second.id)
    );
}
