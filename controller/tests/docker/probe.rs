//! `jetmill probe URL`, the images' health check (no Docker needed).

use jetmill_testkit::NatsServer;
use std::process::Command;

fn probe(url: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jetmill"))
        .args(["probe", url, "--timeout", "2s"])
        .output()
        .expect("run jetmill probe");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn probe_exits_0_on_a_2xx_answer_and_1_with_a_reason_otherwise() {
    let nats = NatsServer::start();
    let (code, err) = probe(&format!(
        "{}/healthz?js-enabled-only=true",
        nats.monitor_url()
    ));
    assert_eq!(code, Some(0), "healthy server: {err}");

    let (code, err) = probe(&format!("{}/no-such-page", nats.monitor_url()));
    assert_eq!(code, Some(1), "404 is unhealthy");
    assert!(err.contains("404"), "says the status: {err}");

    // Nothing listens on the client port's HTTP side after the server stops.
    let monitor = nats.monitor_url().to_string();
    drop(nats);
    let (code, err) = probe(&format!("{monitor}/healthz"));
    assert_eq!(code, Some(1), "refused connection is unhealthy");
    assert!(err.contains("probe"), "says why: {err}");

    let (code, err) = probe("not a url");
    assert_eq!(
        code,
        Some(1),
        "a bad URL is unhealthy, not Docker's reserved 2"
    );
    assert!(err.contains("invalid URL"), "{err}");
}
