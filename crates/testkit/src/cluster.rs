//! A JetStream cluster of local nats-server processes, for tests of what jetmill does
//! when a node (and with it a stream's leader) dies.
//!
//! [`NatsCluster::start`] launches `n` real servers on free loopback ports (client,
//! cluster route and monitoring port each), one temp store per node, routes to each
//! other, and waits until JetStream has a meta leader every node agrees on and every
//! node reports healthy. [`NatsCluster::kill`] is a SIGKILL, [`NatsCluster::restart`]
//! starts the node again on the same ports and store. Dropping it kills every node and
//! deletes the stores. Nothing is mocked.

use crate::nats_server_bin;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster's name (`cluster { name }`), the same on every node.
const CLUSTER_NAME: &str = "jetmill-test";

/// One node: its process (while running), ports and store.
struct Node {
    name: String,
    child: Option<Child>,
    client_port: u16,
    monitor_port: u16,
    store: tempfile::TempDir,
    /// Holds the node's config file and its log.
    dir: tempfile::TempDir,
}

/// A running cluster of nats-server processes owned by a test; stopped and cleaned on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    bin: PathBuf,
}

impl NatsCluster {
    /// Start `n` clustered JetStream servers and wait (up to 30 s) until the cluster is
    /// formed: every node healthy, one meta leader they all name.
    ///
    /// Ports are picked free (held open together, so no two nodes share one) and
    /// released just before the servers bind them; if another process takes one in
    /// between (a node exits with "address already in use"), the cluster is started
    /// again on new ports, up to 5 times.
    pub fn start(n: usize) -> NatsCluster {
        assert!(n >= 1, "a cluster needs at least one node");
        for attempt in 1..=5 {
            let mut cluster = Self::configure(n);
            for i in 0..n {
                cluster.launch(i);
            }
            match cluster.try_wait_formed(Duration::from_secs(30)) {
                Ok(()) => return cluster,
                Err(e) if e.contains("address already in use") && attempt < 5 => continue,
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Stores, ports and config files of `n` nodes (not started).
    fn configure(n: usize) -> NatsCluster {
        let bin = nats_server_bin();
        // Held until the configs are written, so every port is distinct.
        let listeners: Vec<std::net::TcpListener> = (0..3 * n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()).expect("bound port"))
            .collect();
        let cluster_ports = &ports[..n];
        let mut nodes = Vec::with_capacity(n);
        for (i, cluster_port) in cluster_ports.iter().enumerate() {
            let store = tempfile::Builder::new()
                .prefix("jetmill-nats-cluster-store")
                .tempdir()
                .expect("temp store dir");
            let dir = tempfile::Builder::new()
                .prefix("jetmill-nats-cluster-node")
                .tempdir()
                .expect("temp node dir");
            let node = Node {
                name: format!("n{i}"),
                child: None,
                client_port: ports[n + i],
                monitor_port: ports[2 * n + i],
                store,
                dir,
            };
            let routes: Vec<String> = cluster_ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            let conf = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{client}\n\
                 http: 127.0.0.1:{monitor}\n\
                 jetstream {{\n  store_dir: \"{store}\"\n}}\n\
                 cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{cluster_port}\n  \
                 routes: [{routes}]\n}}\n",
                name = node.name,
                client = node.client_port,
                monitor = node.monitor_port,
                store = node.store.path().display(),
                routes = routes.join(", "),
            );
            std::fs::write(node.dir.path().join("node.conf"), conf).expect("write node config");
            nodes.push(node);
        }
        drop(listeners);
        NatsCluster { nodes, bin }
    }

    fn launch(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.path().join("node.log"))
            .expect("node log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(node.dir.path().join("node.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        node.child = Some(child);
    }

    /// Number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never: [`NatsCluster::start`] needs one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's client URL, comma separated, as jetmill's `--server` takes them.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Monitoring base URL of node `i` (`/jsz`, `/healthz`).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].monitor_port)
    }

    /// The server name of node `i` (`n0`, `n1`, ...), as JetStream names leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Kill node `i` with SIGKILL (a crash: no leadership hand-over); its store stays.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start node `i` again on its ports and store, and wait until it is healthy
    /// (rejoined the meta group; streams it holds catch up on their own).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.healthy(i) {
            self.check_alive(i);
            assert!(
                Instant::now() < deadline,
                "node {i} not healthy within 30 s of its restart; log:\n{}",
                self.log_tail(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the node leading stream `stream` (of the global account), if a
    /// running node names a leader for it now.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        for i in (0..self.nodes.len()).filter(|i| self.is_running(*i)) {
            let Some(jsz) = get_json(
                &self.monitor_url(i),
                "/jsz?accounts=true&streams=true&leader-only=false",
            ) else {
                continue;
            };
            let accounts = jsz["account_details"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for account in &accounts {
                let streams = account["stream_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for s in streams.iter().filter(|s| s["name"] == stream) {
                    if let Some(leader) = s["cluster"]["leader"].as_str() {
                        if let Some(j) = self.nodes.iter().position(|n| n.name == leader) {
                            return Some(j);
                        }
                    }
                }
            }
        }
        None
    }

    /// Wait up to `timeout` until `stream` has a leader on a running node; its index.
    pub fn wait_stream_leader(&self, stream: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.stream_leader(stream) {
                if self.is_running(i) {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} has no leader within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The stream's message count and last sequence as node `i` holds them (its replica,
    /// leader or follower), for checking that a restarted node caught up.
    pub fn stream_state_on(&self, i: usize, stream: &str) -> Option<(u64, u64)> {
        let jsz = get_json(&self.monitor_url(i), "/jsz?accounts=true&streams=true")?;
        let accounts = jsz["account_details"].as_array()?.clone();
        accounts.iter().find_map(|a| {
            a["stream_detail"].as_array()?.iter().find_map(|s| {
                (s["name"] == stream).then(|| {
                    (
                        s["state"]["messages"].as_u64().unwrap_or(0),
                        s["state"]["last_seq"].as_u64().unwrap_or(0),
                    )
                })
            })
        })
    }

    /// The last lines of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text =
            std::fs::read_to_string(self.nodes[i].dir.path().join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn check_alive(&mut self, i: usize) {
        if let Err(e) = self.alive(i) {
            panic!("{e}");
        }
    }

    /// `Err` with the node's log when node `i` has exited.
    fn alive(&mut self, i: usize) -> Result<(), String> {
        match self.nodes[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            Some(status) => Err(format!(
                "nats-server node {i} exited with {status}; log:\n{}",
                self.log_tail(i)
            )),
            None => Ok(()),
        }
    }

    /// `/healthz` (JetStream included: meta group current, its assets current) says ok.
    fn healthy(&self, i: usize) -> bool {
        get_status(&self.monitor_url(i), "/healthz") == Some(200)
    }

    /// Whether the meta leader `leader` sees every other node as a current, online peer
    /// (else creating an R3 stream can fail with "no suitable peers for placement").
    fn peers_current(&self, leader: Option<&str>) -> bool {
        let Some(i) = leader.and_then(|l| self.nodes.iter().position(|n| n.name == l)) else {
            return false;
        };
        let Some(jsz) = get_json(&self.monitor_url(i), "/jsz") else {
            return false;
        };
        let peers = jsz["meta_cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        peers.len() == self.nodes.len() - 1
            && peers
                .iter()
                .all(|p| p["current"] == true && p["offline"] != true)
    }

    /// Wait until every node is healthy, all name the same meta leader, and it sees
    /// every other node as a current peer.
    fn try_wait_formed(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..self.nodes.len() {
                self.alive(i)?;
            }
            let all_healthy = (0..self.nodes.len()).all(|i| self.healthy(i));
            let leaders: Vec<Option<String>> = (0..self.nodes.len())
                .map(|i| {
                    get_json(&self.monitor_url(i), "/jsz").and_then(|j| {
                        let l = j["meta_cluster"]["leader"].as_str()?.to_string();
                        (!l.is_empty()).then_some(l)
                    })
                })
                .collect();
            let agreed = leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]);
            if all_healthy && agreed && self.peers_current(leaders[0].as_deref()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the nats cluster did not form within {timeout:?} (meta leaders seen: \
                     {leaders:?}); log of node 0:\n{}",
                    self.log_tail(0)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// `GET path` over plain HTTP/1.0; the status code and body, or `None` if unreachable.
fn http_get(base: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn get_status(base: &str, path: &str) -> Option<u16> {
    http_get(base, path).map(|(s, _)| s)
}

fn get_json(base: &str, path: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(base, path)?;
    if status != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}
