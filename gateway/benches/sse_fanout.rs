//! 10,000 SSE clients on one job's feed on one gateway: are all served, how much
//! gateway memory does each cost, and how fast does one event reach them all.
//!
//! ```sh
//! ulimit -n 20000   # this process and the gateway each hold one socket per client
//! cargo bench -p jetmill-gateway --bench sse_fanout
//! SSE_BENCH_CLIENTS=2000 cargo bench -p jetmill-gateway --bench sse_fanout
//! ```
//!
//! It starts a nats-server (`jetmill-testkit`, `$JETMILL_NATS_SERVER`) and the gateway in
//! a child process (this binary re-executed), so the RSS read from `/proc/<pid>/status`
//! is the gateway's alone. No worker runs: the job stays pending with its `accepted`
//! event, the first event every client must get; then the job is cancelled and every
//! client must get `cancelled` and the end of its stream.

use anyhow::{bail, Context};
use jetmill_gateway::{Application, GatewayArgs};
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Set in the child: run a gateway against this NATS URL.
const GATEWAY_ENV: &str = "JETMILL_SSE_BENCH_GATEWAY";
/// Connections being opened at once (a connect storm would overflow the accept backlog).
const OPENING: usize = 256;

fn main() -> anyhow::Result<()> {
    if let Ok(nats) = std::env::var(GATEWAY_ENV) {
        return run_gateway(&nats);
    }
    let clients = match std::env::var("SSE_BENCH_CLIENTS") {
        Ok(n) => n.parse().context("SSE_BENCH_CLIENTS must be a number")?,
        Err(_) => 10_000,
    };
    tokio::runtime::Runtime::new()?.block_on(bench(clients))
}

/// The gateway under test; stops when its stdin closes (the bench ended or died).
fn run_gateway(nats: &str) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let args = GatewayArgs::local(nats, SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let app = Application::build(&args).await?;
        println!("listening {}", app.local_addr());
        let stop = CancellationToken::new();
        let on_eof = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            on_eof.cancel();
        });
        app.run_until_stopped(stop).await?;
        Ok(())
    })
}

/// Open files this process may have.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

/// One HTTP/1.1 request with `Connection: close`; the status and body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// One SSE client: served once it has the 200 head and `accepted`; done once it has
/// `cancelled` and the end of the chunked body.
async fn client(
    addr: SocketAddr,
    path: Arc<String>,
    opening: Arc<tokio::sync::Semaphore>,
    served: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let permit = opening.acquire().await?;
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let has = |buf: &[u8], what: &[u8]| buf.windows(what.len()).any(|w| w == what);
    let mut permit = Some(permit);
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed early: {}", String::from_utf8_lossy(&buf));
        }
        buf.extend_from_slice(&chunk[..n]);
        if permit.is_some() && has(&buf, b"event: accepted") {
            if !buf.starts_with(b"HTTP/1.1 200") {
                bail!("not served: {}", String::from_utf8_lossy(&buf));
            }
            permit = None;
            served.fetch_add(1, Ordering::SeqCst);
        }
        if has(&buf, b"event: cancelled") && buf.ends_with(b"\r\n0\r\n\r\n") {
            done.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
    }
}

/// Wait until `count` reaches `want`, failing on the first client error or the deadline.
async fn wait_for(
    what: &str,
    count: &AtomicUsize,
    want: usize,
    errors: &mut tokio::sync::mpsc::UnboundedReceiver<anyhow::Error>,
    within: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while count.load(Ordering::SeqCst) < want {
        if let Ok(e) = errors.try_recv() {
            bail!(
                "{what}: a client failed after {} did: {e:#}",
                count.load(Ordering::SeqCst)
            );
        }
        if start.elapsed() > within {
            bail!(
                "{what}: only {} of {want} within {within:?}",
                count.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(start.elapsed())
}

async fn bench(clients: usize) -> anyhow::Result<()> {
    if let Some(limit) = open_files_limit() {
        if limit < clients + 512 {
            bail!(
                "{clients} clients need `ulimit -n` >= {} (it is {limit})",
                clients + 512
            );
        }
    }
    let nats = jetmill_testkit::NatsServer::start();
    let mut gateway = Command::new(std::env::current_exe()?)
        .env(GATEWAY_ENV, nats.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the gateway child")?;
    let pid = gateway.id();
    let mut line = String::new();
    std::io::BufReader::new(gateway.stdout.take().context("gateway stdout")?)
        .read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .context("gateway did not say where it listens")?
        .parse()?;

    let (status, body) = http(
        addr,
        "POST",
        "/v1/jobs",
        r#"{"kind":"factorial","input":1000}"#,
    )
    .await?;
    if status != 202 {
        bail!("submit answered {status}: {body}");
    }
    let job: serde_json::Value = serde_json::from_str(&body)?;
    let id = job["id"].as_str().context("job id")?.to_string();
    let path = Arc::new(format!("/v1/jobs/{id}/events"));

    let rss_before = rss_kib(pid)?;
    let (err_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let served = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..clients {
        let (path, opening, served, done, err_tx) = (
            path.clone(),
            opening.clone(),
            served.clone(),
            done.clone(),
            err_tx.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = client(addr, path, opening, served, done).await {
                let _ = err_tx.send(e);
            }
        });
    }
    let connect = wait_for(
        "served",
        &served,
        clients,
        &mut errors,
        Duration::from_secs(300),
    )
    .await?;
    let rss_after = rss_kib(pid)?;

    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let consumers = js
        .get_stream(jetmill_proto::names::EVENTS_STREAM)
        .await?
        .info()
        .await?
        .state
        .consumer_count;

    let (status, body) = http(addr, "DELETE", &format!("/v1/jobs/{id}"), "").await?;
    if status != 200 {
        bail!("cancel answered {status}: {body}");
    }
    let deliver = wait_for(
        "cancelled",
        &done,
        clients,
        &mut errors,
        Duration::from_secs(300),
    )
    .await?;

    let delta = rss_after.saturating_sub(rss_before);
    println!("sse_fanout: {clients} clients on one job's /v1/jobs/{{id}}/events, one gateway");
    println!(
        "  all served (200 + history) in {:.2} s",
        connect.as_secs_f64()
    );
    println!("  consumers on EVENTS while served: {consumers}");
    println!(
        "  gateway RSS {} KiB -> {} KiB: {:.1} KiB per client",
        rss_before,
        rss_after,
        delta as f64 / clients as f64
    );
    println!(
        "  one event (cancelled) to all {clients} clients and their streams ended: {:.0} ms",
        deliver.as_secs_f64() * 1e3
    );
    drop(gateway.stdin.take());
    let _ = gateway.kill();
    let _ = gateway.wait();
    Ok(())
}
