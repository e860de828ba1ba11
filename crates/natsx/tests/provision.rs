//! Provisioning against a real nats-server that does not answer for a while.

use jetmill_natsx::{provision, until_provisioned, NatsxError, QueueSettings};
use jetmill_testkit::NatsServer;
use std::time::{Duration, Instant};

/// A worker or gateway started while JetStream cannot answer (a cluster still electing
/// its leaders; here a frozen server) waits and provisions once it answers, instead of
/// exiting with "timed out".
#[tokio::test]
async fn provisioning_waits_through_a_server_that_does_not_answer_yet() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    nats.set_frozen(true);

    // One attempt alone is a retryable "did not answer", not a refusal.
    match provision(client.clone(), QueueSettings::default()).await {
        Err(NatsxError::Unavailable { what, .. }) => assert!(!what.is_empty()),
        Err(other) => panic!("a frozen server must read as unavailable, got: {other}"),
        Ok(_) => panic!("a frozen server provisioned nothing"),
    }

    let thaw_after = Duration::from_secs(1);
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { until_provisioned(|| provision(client.clone(), QueueSettings::default())).await }
    });
    let frozen_at = Instant::now();
    tokio::time::sleep(thaw_after).await;
    assert!(
        !waiting.is_finished(),
        "provisioning finished while the server was frozen"
    );
    nats.set_frozen(false);
    let jet = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("provisioning finishes within 30 s of the thaw")
        .expect("task")
        .expect("provisioned once the server answers");
    assert!(frozen_at.elapsed() >= thaw_after);
    // The streams exist and work.
    let missing = jet.records.get("t", &jetmill_proto::JobId::new()).await;
    assert!(missing.expect("read a record").is_none());
}
