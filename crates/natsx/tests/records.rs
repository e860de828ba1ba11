//! The record store against a real nats-server: compare-and-set really serializes writers.

use jetmill_natsx::{provision, QueueSettings, Update};
use jetmill_proto::{JobId, JobMessage, JobRecord, JobSpec, JobStatus};
use jetmill_testkit::NatsServer;

fn message() -> JobMessage {
    JobMessage::new("t1", JobSpec::Factorial { n: 10 }, 1_700_000_000_000)
}

/// A fresh server with everything provisioned (keep the server alive while testing).
async fn provisioned() -> (NatsServer, jetmill_natsx::Jet) {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let jet = provision(client, QueueSettings::default())
        .await
        .expect("provision");
    (nats, jet)
}

#[tokio::test]
async fn concurrent_updates_all_land_and_terminal_states_stick() {
    let (_nats, jet) = provisioned().await;
    let msg = message();
    let pending = JobRecord::pending(&msg);
    assert!(jet.records.create(&pending).await.expect("create"));
    assert!(
        !jet.records.create(&pending).await.expect("second create"),
        "create never overwrites"
    );

    // 20 writers each bump `attempts` once; with CAS none of the increments is lost.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let records = jet.records.clone();
        let id = msg.id;
        tasks.push(tokio::spawn(async move {
            records
                .update("t1", &id, None, |r| {
                    r.attempts += 1;
                    true
                })
                .await
        }));
    }
    for t in tasks {
        assert!(matches!(
            t.await.expect("join").expect("update"),
            Update::Applied(_)
        ));
    }
    let (rec, _) = jet
        .records
        .get("t1", &msg.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(rec.attempts, 20);

    // done, then a late `running` is refused by the transition rule and the record stays done.
    let done = jet
        .records
        .update("t1", &msg.id, None, |r| {
            r.status = JobStatus::Done;
            true
        })
        .await
        .expect("mark done");
    assert!(matches!(done, Update::Applied(_)));
    let late = jet
        .records
        .update("t1", &msg.id, None, |r| {
            if !r.status.can_become(JobStatus::Running) {
                return false;
            }
            r.status = JobStatus::Running;
            true
        })
        .await
        .expect("late update");
    assert!(matches!(late, Update::Unchanged(ref r) if r.status == JobStatus::Done));
    let (rec, _) = jet
        .records
        .get("t1", &msg.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(rec.status, JobStatus::Done);

    // A missing record is created from the fallback (a worker that overtook the gateway).
    let other = message();
    let created = jet
        .records
        .update("t1", &other.id, Some(&JobRecord::pending(&other)), |r| {
            r.status = JobStatus::Running;
            true
        })
        .await
        .expect("create via update");
    assert!(matches!(created, Update::Applied(ref r) if r.status == JobStatus::Running));
    assert!(matches!(
        jet.records
            .update("t1", &JobId::new(), None, |_| true)
            .await,
        Ok(Update::Missing)
    ));
}

#[tokio::test]
async fn provisioning_twice_is_harmless() {
    let nats = NatsServer::start();
    for _ in 0..2 {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let jet = provision(client, QueueSettings::default())
            .await
            .expect("provision");
        let consumers = jet.workers_consumers().await.expect("consumers");
        assert_eq!(consumers.len(), 3, "one per priority");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_connect_error() {
    // Bind then drop a listener to get a loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let args = jetmill_natsx::NatsArgs::with_url(format!("nats://127.0.0.1:{port}"));
    let err = jetmill_natsx::connect(&args, "test")
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(err, jetmill_natsx::NatsxError::Connect { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "the message names the URL: {err}"
    );
}

/// A writer holding an old version (the worker's `done` write starting from the revision
/// it read before computing) must not overwrite a newer write: its compare-and-set fails,
/// it re-reads, and `decide` sees, and keeps, what the other writer stored.
#[tokio::test]
async fn a_write_from_a_stale_version_rereads_and_keeps_the_newer_write() {
    let (_nats, jet) = provisioned().await;
    let msg = message();
    assert!(jet
        .records
        .create(&JobRecord::pending(&msg))
        .await
        .expect("create"));
    let old = jet
        .records
        .read_version("t1", &msg.id, None)
        .await
        .expect("read")
        .expect("exists");

    // Another writer moves the record on (a progress write, say).
    let newer = jet
        .records
        .update("t1", &msg.id, None, |r| {
            r.status = JobStatus::Running;
            r.progress = 0.5;
            true
        })
        .await
        .expect("update");
    assert!(matches!(newer, Update::Applied(_)));

    // The stale writer's change lands on top of the newer record, called once per try.
    let result = Some("3628800".to_string());
    let mut calls = 0;
    let (update, after) = jet
        .records
        .update_from("t1", &msg.id, Some(old), None, |r| {
            calls += 1;
            if !r.status.can_become(JobStatus::Done) {
                return false;
            }
            r.status = JobStatus::Done;
            r.result = result.clone();
            true
        })
        .await
        .expect("update from a stale version");
    assert_eq!(calls, 2, "one failed compare-and-set, one re-read");
    let Update::Applied(written) = update else {
        panic!("expected the write to land, got {update:?}")
    };
    assert_eq!(written.progress, 0.5, "the newer write is kept");
    assert_eq!(written.result.as_deref(), Some("3628800"));
    let (stored, _) = jet
        .records
        .get("t1", &msg.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored, written);

    // The returned version is current: writing from it needs no re-read.
    let mut calls = 0;
    let (again, _) = jet
        .records
        .update_from("t1", &msg.id, after, None, |r| {
            calls += 1;
            r.attempts = 7;
            true
        })
        .await
        .expect("update from the returned version");
    assert!(matches!(again, Update::Applied(_)));
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn key_scans_in_quick_succession_do_not_exhaust_the_consumer_limit() {
    // nats-server allows 1,000 consumers per stream by default; every scan makes one.
    let (_nats, jet) = provisioned().await;
    let msg = message();
    assert!(jet
        .records
        .create(&JobRecord::pending(&msg))
        .await
        .expect("create"));
    for i in 0..1100 {
        let keys = jet
            .records
            .keys_matching("t1.*")
            .await
            .unwrap_or_else(|e| panic!("scan {i}: {e}"));
        assert_eq!(keys, vec![format!("t1.{}", msg.id)]);
    }
}
