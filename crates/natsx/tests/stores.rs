//! The schedule and batch stores and the record watches against a real nats-server.

use futures::StreamExt;
use jetmill_natsx::schedules::{self, SetPaused};
use jetmill_natsx::{batches, provision, QueueSettings};
use jetmill_proto::{
    BatchItem, BatchRecord, JobId, JobMessage, JobRecord, JobSpec, JobStatus, ScheduleRecord,
};
use jetmill_testkit::NatsServer;
use std::time::Duration;
use time::OffsetDateTime;

async fn provisioned() -> (NatsServer, jetmill_natsx::Jet) {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let jet = provision(client, QueueSettings::default())
        .await
        .expect("provision");
    (nats, jet)
}

fn schedule(tenant: &str) -> ScheduleRecord {
    let now = OffsetDateTime::now_utc();
    ScheduleRecord {
        id: JobId::new(),
        tenant: tenant.into(),
        cron: "@hourly".into(),
        time_zone: "UTC".into(),
        job: serde_json::json!({"kind": "factorial", "input": 5}),
        paused: true,
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn schedules_are_listed_per_tenant_oldest_first_and_gone_once_deleted() {
    let (_nats, jet) = provisioned().await;
    let (a1, a2, b1) = (schedule("a"), schedule("a"), schedule("b"));
    for s in [&a1, &a2, &b1] {
        schedules::create(&jet, s).await.expect("create");
    }
    let ids = |list: Vec<ScheduleRecord>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(schedules::list(&jet, "a").await.expect("list")),
        [a1.id, a2.id]
    );

    let Ok(SetPaused::Written(resumed)) = schedules::set_paused(&jet, "a", &a1.id, false).await
    else {
        panic!("not written");
    };
    assert!(!resumed.paused);
    let (stored, _) = schedules::get(&jet, "a", &a1.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored, resumed);

    schedules::delete(&jet, "a", &a1.id).await.expect("delete");
    assert_eq!(schedules::get(&jet, "a", &a1.id).await.expect("get"), None);
    assert_eq!(
        schedules::set_paused(&jet, "a", &a1.id, true)
            .await
            .expect("set"),
        SetPaused::Missing
    );
    assert_eq!(
        ids(schedules::list(&jet, "a").await.expect("list")),
        [a2.id]
    );
    assert_eq!(
        ids(schedules::list(&jet, "b").await.expect("list")),
        [b1.id]
    );
    // No clock was started: stopping it is a no-op.
    schedules::stop_clock(&jet, &a2.id).await.expect("stop");
}

#[tokio::test]
async fn a_batch_is_stored_once_and_found_by_id_alone() {
    let (_nats, jet) = provisioned().await;
    let record = BatchRecord {
        id: JobId::new(),
        tenant: "t1".into(),
        created_at: OffsetDateTime::now_utc(),
        items: vec![BatchItem::accepted(
            0,
            JobId::new(),
            JobStatus::Pending,
            false,
        )],
    };
    batches::store(&jet, &record).await.expect("store");
    // A second store (a retried request's) counts as stored and changes nothing.
    batches::store(&jet, &record).await.expect("store again");
    let got = batches::get(&jet, "t1", &record.id).await.expect("get");
    assert_eq!(got.as_ref(), Some(&record));
    assert_eq!(
        batches::get(&jet, "t2", &record.id).await.expect("get"),
        None
    );
    let found = batches::find(&jet, &record.id).await.expect("find");
    assert_eq!(found, Some(record));
    assert_eq!(
        batches::find(&jet, &JobId::new()).await.expect("find"),
        None
    );
}

#[tokio::test]
async fn a_tenant_watch_yields_its_writes_decoded_with_revisions_and_skips_deletes() {
    let (_nats, jet) = provisioned().await;
    let msg =
        |tenant: &str| JobMessage::new(tenant, JobSpec::Factorial { n: 10 }, 1_700_000_000_000);
    let (mine, other) = (msg("t1"), msg("t2"));
    let mut tenant = jet
        .records
        .watch_tenant::<JobRecord>("t1")
        .await
        .expect("watch");
    let mut one = jet
        .records
        .watch_one::<JobRecord>("t1", &mine.id)
        .await
        .expect("watch");
    jet.records
        .create(&JobRecord::pending(&other))
        .await
        .expect("create");
    jet.records
        .create(&JobRecord::pending(&mine))
        .await
        .expect("create");
    assert!(jet
        .records
        .delete_if("t1", &mine.id, |_| true)
        .await
        .expect("delete"));
    jet.records
        .create(&JobRecord::pending(&mine))
        .await
        .expect("create again");
    let (_, revision) = jet
        .records
        .get("t1", &mine.id)
        .await
        .expect("get")
        .expect("stored");
    for changes in [&mut tenant, &mut one] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let next = tokio::time::timeout(Duration::from_secs(5), changes.next())
                .await
                .expect("in time")
                .expect("open")
                .expect("no error");
            assert_eq!(next.id, mine.id);
            assert_eq!(next.record.status, JobStatus::Pending);
            seen.push(next.revision);
        }
        assert!(seen[0] < seen[1], "{seen:?}");
        assert_eq!(seen[1], revision);
    }
}
