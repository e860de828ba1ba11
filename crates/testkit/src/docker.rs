//! A real Docker engine for tests: one at a time, started if needed, left as found.
//!
//! Only one dockerd can run on a machine, so [`Docker::acquire`] first takes an exclusive
//! `flock` on `/tmp/jetmill-docker.lock` (held until the handle drops; manual runs use
//! `flock /tmp/jetmill-docker.lock CMD`). If no daemon answers it starts `dockerd` (log in
//! `target/docker-test/dockerd.log`), after recording what dockerd changes on the host:
//! iptables and ip6tables rules, `net.ipv4.ip_forward`, the `docker0`/`docker_gwbridge`
//! links. On drop it removes the stacks and compose projects the test registered, leaves
//! the swarm it created, stops the daemon it started and puts all of that back.
//!
//! Nothing is installed here (`scripts/install-docker.sh` does that). If dockerd cannot
//! start, [`Docker::acquire`] fails saying why; `JETMILL_SKIP_DOCKER_TESTS=1` makes
//! [`skipped`] true so tests can opt out. Images are built from local bases only (no
//! registry is needed): see [`Docker::images`].

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Docker client used: Debian's 20.10 (BuildKit builds without buildx).
pub const DOCKER: &str = "/usr/bin/docker";
/// The lock every Docker user on the machine holds for its whole duration.
pub const LOCK_PATH: &str = "/tmp/jetmill-docker.lock";
/// The glibc base image (the host's libc, loader and libgcc; nothing else).
pub const GLIBC_BASE: &str = "jetmill-test/glibc-base:bookworm";
/// The debootstrap minbase image with haproxy, for the swarm's load balancer.
pub const HAPROXY_BASE: &str = "jetmill-test/haproxy-base:bookworm";

/// What went wrong talking to Docker (the message says what to do).
#[derive(Debug)]
pub struct DockerError(pub String);

impl std::fmt::Display for DockerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DockerError {}

/// Result of the Docker helpers.
pub type Result<T> = std::result::Result<T, DockerError>;

fn err(msg: impl Into<String>) -> DockerError {
    DockerError(msg.into())
}

/// True (with a note on stderr) when `JETMILL_SKIP_DOCKER_TESTS=1` asks to skip Docker tests.
pub fn skipped() -> bool {
    let skip = std::env::var("JETMILL_SKIP_DOCKER_TESTS").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("JETMILL_SKIP_DOCKER_TESTS=1: skipping a Docker test");
    }
    skip
}

/// The tags of the test images [`Docker::images`] built.
#[derive(Debug, Clone)]
pub struct Images {
    /// `docker/Dockerfile --target jetmill` with the debug `jetmill` binary.
    pub jetmill: String,
    /// `docker/Dockerfile --target nats` (nats-server + docker/nats/*.conf).
    pub nats: String,
    /// haproxy on a debootstrap minbase (`docker/haproxy.cfg` is mounted by the stack).
    pub haproxy: String,
}

/// Host state dockerd changes, recorded before it starts.
struct HostSnapshot {
    iptables: Vec<u8>,
    ip6tables: Vec<u8>,
    ip_forward: String,
    links: Vec<&'static str>,
}

const DOCKER_LINKS: [&str; 2] = ["docker0", "docker_gwbridge"];

impl HostSnapshot {
    fn take() -> Result<HostSnapshot> {
        Ok(HostSnapshot {
            iptables: run_ok(Command::new("iptables-save"))?.stdout,
            ip6tables: run_ok(Command::new("ip6tables-save"))?.stdout,
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .map_err(|e| err(format!("read ip_forward: {e}")))?
                .trim()
                .to_string(),
            links: DOCKER_LINKS
                .into_iter()
                .filter(|l| link_exists(l))
                .collect(),
        })
    }

    /// Put the host back: rules (every table dockerd touched is replaced by its old
    /// contents), forwarding, and the bridges dockerd created.
    fn restore(&self) {
        for (bin, rules) in [
            ("iptables-restore", &self.iptables),
            ("ip6tables-restore", &self.ip6tables),
        ] {
            if let Err(e) = restore_rules(bin, rules) {
                eprintln!("docker harness: {bin} failed: {e}");
            }
        }
        for link in DOCKER_LINKS {
            if !self.links.contains(&link) && link_exists(link) {
                let _ = Command::new("ip").args(["link", "del", link]).status();
            }
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
    }
}

fn restore_rules(bin: &str, rules: &[u8]) -> std::io::Result<()> {
    // A table dockerd created that was not in the dump (e.g. nat when the host had
    // none) keeps its rules otherwise: flush those first, and put its built-in chains
    // back to the kernel's ACCEPT policy (dockerd sets FORWARD to DROP, which a flush
    // leaves in place).
    let save = String::from_utf8_lossy(rules).to_string();
    let flush = if bin.starts_with("ip6") {
        "ip6tables"
    } else {
        "iptables"
    };
    for table in ["filter", "nat"] {
        if !save.contains(&format!("*{table}\n")) {
            let _ = Command::new(flush)
                .args(["-t", table, "-F"])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new(flush)
                .args(["-t", table, "-X"])
                .stderr(Stdio::null())
                .status();
            let chains: &[&str] = if table == "filter" {
                &["INPUT", "FORWARD", "OUTPUT"]
            } else {
                &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
            };
            for chain in chains {
                let _ = Command::new(flush)
                    .args(["-t", table, "-P", chain, "ACCEPT"])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let mut child = Command::new(bin).stdin(Stdio::piped()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules)?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("{bin} exited with {status}")));
    }
    Ok(())
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A compose project a test used, to take down on drop.
struct Project {
    file: PathBuf,
    name: String,
    envs: Vec<(String, String)>,
}

/// A dockerd this handle started, and what to put back when it stops.
struct Daemon {
    child: Child,
    snapshot: HostSnapshot,
    log: PathBuf,
}

/// Exclusive use of the machine's Docker engine; cleans up on drop (see the module docs).
pub struct Docker {
    /// Held (flock) for the handle's whole life.
    _lock: File,
    daemon: Option<Daemon>,
    /// Whether this handle initialised a swarm (left on drop).
    swarm: std::cell::Cell<bool>,
    stacks: RefCell<Vec<String>>,
    /// Compose projects: (compose file, project name, its variables).
    projects: RefCell<Vec<Project>>,
}

impl Docker {
    /// Take the machine's Docker lock (waiting for other users) and make sure a daemon
    /// answers, starting one if needed. Fails saying why when dockerd cannot start.
    pub fn acquire() -> Result<Docker> {
        if !Path::new(DOCKER).is_file() {
            return Err(err(format!(
                "{DOCKER} not found: run scripts/install-docker.sh (Debian's docker.io), or set \
                 JETMILL_SKIP_DOCKER_TESTS=1 to skip the Docker tests"
            )));
        }
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .map_err(|e| err(format!("open {LOCK_PATH}: {e}")))?;
        lock.lock()
            .map_err(|e| err(format!("flock {LOCK_PATH}: {e}")))?;
        let mut docker = Docker {
            _lock: lock,
            daemon: None,
            swarm: std::cell::Cell::new(false),
            stacks: RefCell::new(Vec::new()),
            projects: RefCell::new(Vec::new()),
        };
        if !docker.answers() {
            docker.daemon = Some(start_daemon()?);
            // Nobody used this daemon (it was not running): a swarm it rejoined is what a
            // killed earlier test left. Leave it, so tests start from a plain engine.
            let state = docker.cli(["info", "--format", "{{.Swarm.LocalNodeState}}"])?;
            if state.trim() == "active" {
                eprintln!("docker harness: leaving a swarm left over by an earlier run");
                docker.cli(["swarm", "leave", "--force"])?;
            }
        }
        Ok(docker)
    }

    fn answers(&self) -> bool {
        Command::new(DOCKER)
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Run `/usr/bin/docker ARGS`; its stdout, or an error with its stderr.
    pub fn cli<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(DOCKER);
        command.args(args).env("DOCKER_BUILDKIT", "1");
        Ok(String::from_utf8_lossy(&run_ok(command)?.stdout).to_string())
    }

    /// Run `docker-compose -f FILE -p PROJECT ARGS` with `envs`; stdout or an error.
    /// The project is taken down (`down -v`) on drop.
    pub fn compose(
        &self,
        file: &Path,
        project: &str,
        envs: &[(&str, &str)],
        args: &[&str],
    ) -> Result<String> {
        let mut projects = self.projects.borrow_mut();
        if !projects.iter().any(|p| p.name == project) {
            // A clean slate: what a killed earlier run may have left of this project.
            remove_labelled(&format!("label=com.docker.compose.project={project}"));
            projects.push(Project {
                file: file.to_path_buf(),
                name: project.to_string(),
                envs: envs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
        }
        drop(projects);
        compose_cmd(file, project, envs, args)
    }

    /// `docker stack deploy --resolve-image never -c FILE NAME` with `envs` (for the
    /// file's `${VAR}`s); the stack, its volumes and networks are removed on drop.
    pub fn stack_deploy(&self, file: &Path, name: &str, envs: &[(&str, &str)]) -> Result<()> {
        let mut stacks = self.stacks.borrow_mut();
        if !stacks.iter().any(|s| s == name) {
            // A clean slate: what a killed earlier run may have left of this stack.
            let listed = self.cli(["stack", "ls", "--format", "{{.Name}}"])?;
            if listed.lines().any(|l| l.trim() == name) {
                remove_stack(name)?;
            }
            stacks.push(name.to_string());
        }
        drop(stacks);
        let mut command = Command::new(DOCKER);
        command
            .args(["stack", "deploy", "--resolve-image", "never", "-c"])
            .arg(file)
            .arg(name);
        for (k, v) in envs {
            command.env(k, v);
        }
        run_ok(command).map(|_| ())
    }

    /// Make this engine a single-node swarm (`--advertise-addr 127.0.0.1`), left on drop.
    pub fn swarm(&self) -> Result<()> {
        let state = self.cli(["info", "--format", "{{.Swarm.LocalNodeState}}"])?;
        if state.trim() != "active" {
            self.cli(["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
            self.swarm.set(true);
        }
        Ok(())
    }

    /// Build the jetmill, nats and haproxy test images from local bases (the bases once
    /// per daemon, checked by tag; Docker's cache makes a rebuild of the same binary quick)
    /// and return their tags (`jetmill-test/jetmill:test`, ...). The binary is
    /// `$CARGO_TARGET_DIR/debug/jetmill` (default `target/`); see [`Docker::images_with`].
    pub fn images(&self) -> Result<Images> {
        let bin = jetmill_bin(&crate::workspace_root())?;
        self.images_with("test", &bin)
    }

    /// [`Docker::images`] tagged `tag` (e.g. `v1`, then `v2` to roll a service to a new
    /// image) with this `jetmill` binary (an integration test passes
    /// `env!("CARGO_BIN_EXE_jetmill")`, wherever cargo's target dir is).
    pub fn images_with(&self, tag: &str, bin: &Path) -> Result<Images> {
        let root = crate::workspace_root();
        let base_dir = root.join("target/docker-base");
        std::fs::create_dir_all(&base_dir).map_err(|e| err(format!("mkdir: {e}")))?;
        self.glibc_base(&base_dir)?;
        let nats_bin = self.nats_bin_image(&base_dir)?;
        let haproxy = self.haproxy_base(&base_dir)?;
        // The build context: docker/ plus the prebuilt binary (target/ is dockerignored).
        let ctx = root.join("target/docker-context");
        let _ = std::fs::remove_dir_all(&ctx);
        std::fs::create_dir_all(ctx.join("prebuilt/data"))
            .map_err(|e| err(format!("mkdir context: {e}")))?;
        copy_dir(&root.join("docker"), &ctx.join("docker"))?;
        std::fs::copy(bin, ctx.join("prebuilt/jetmill"))
            .map_err(|e| err(format!("copy {}: {e}", bin.display())))?;
        let images = Images {
            jetmill: format!("jetmill-test/jetmill:{tag}"),
            nats: format!("jetmill-test/nats:{tag}"),
            haproxy,
        };
        for (target, image) in [("jetmill", &images.jetmill), ("nats", &images.nats)] {
            let dockerfile = root.join("docker/Dockerfile");
            let mut args: Vec<std::ffi::OsString> = vec!["build".into(), "-q".into(), "-f".into()];
            args.push(dockerfile.into());
            for a in [
                "--target",
                target,
                "-t",
                image,
                "--build-arg",
                "BINARIES=prebuilt",
                "--build-arg",
                &format!("RUNTIME_IMAGE={GLIBC_BASE}"),
                "--build-arg",
                &format!("NATS_IMAGE={nats_bin}"),
                // A label per tag so two tags of the same inputs are distinct images
                // (a rolling update to a new tag then really replaces the tasks).
                "--label",
                &format!("jetmill.test.tag={tag}"),
            ] {
                args.push(a.into());
            }
            args.push(ctx.clone().into());
            self.cli(args)
                .map_err(|e| err(format!("docker build --target {target}: {e}")))?;
        }
        Ok(images)
    }

    fn has_image(&self, tag: &str) -> bool {
        self.cli(["image", "inspect", "--format", "{{.Id}}", tag])
            .is_ok()
    }

    /// The host's glibc (bookworm), loader and libgcc in an otherwise empty image.
    fn glibc_base(&self, base_dir: &Path) -> Result<()> {
        if self.has_image(GLIBC_BASE) {
            return Ok(());
        }
        let stage = base_dir.join("glibc");
        let _ = std::fs::remove_dir_all(&stage);
        for dir in ["lib/x86_64-linux-gnu", "lib64", "tmp"] {
            std::fs::create_dir_all(stage.join(dir)).map_err(|e| err(format!("mkdir: {e}")))?;
        }
        for lib in [
            "lib/x86_64-linux-gnu/libgcc_s.so.1",
            "lib/x86_64-linux-gnu/libm.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib64/ld-linux-x86-64.so.2",
        ] {
            std::fs::copy(Path::new("/").join(lib), stage.join(lib))
                .map_err(|e| err(format!("copy /{lib}: {e}")))?;
        }
        let mut chmod = Command::new("chmod");
        chmod.arg("1777").arg(stage.join("tmp"));
        run_ok(chmod)?;
        import_dir(&stage, GLIBC_BASE)
    }

    /// An image holding only the test nats-server binary at `/nats-server` (the layout
    /// of the official `nats` image), tagged by its version.
    fn nats_bin_image(&self, base_dir: &Path) -> Result<String> {
        let bin = crate::nats_server_bin();
        let version = run_ok({
            let mut c = Command::new(&bin);
            c.arg("--version");
            c
        })?;
        let version = String::from_utf8_lossy(&version.stdout)
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or("unknown")
            .trim_start_matches('v')
            .to_string();
        let tag = format!("jetmill-test/nats-server:{version}");
        if self.has_image(&tag) {
            return Ok(tag);
        }
        let stage = base_dir.join("nats-server");
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(&stage).map_err(|e| err(format!("mkdir: {e}")))?;
        std::fs::copy(&bin, stage.join("nats-server"))
            .map_err(|e| err(format!("copy {}: {e}", bin.display())))?;
        import_dir(&stage, &tag)?;
        Ok(tag)
    }

    /// `debootstrap --variant=minbase --include=haproxy bookworm` through apt's mirror;
    /// the rootfs tarball is cached in `target/docker-base/` (delete it to rebuild).
    fn haproxy_base(&self, base_dir: &Path) -> Result<String> {
        if self.has_image(HAPROXY_BASE) {
            return Ok(HAPROXY_BASE.to_string());
        }
        let tarball = base_dir.join("bookworm-minbase-haproxy.tar");
        if !tarball.is_file() {
            let root = base_dir.join("bookworm-rootfs");
            let _ = std::fs::remove_dir_all(&root);
            let log = base_dir.join("debootstrap.log");
            let out = File::create(&log).map_err(|e| err(format!("create log: {e}")))?;
            let status = Command::new("debootstrap")
                .args(["--variant=minbase", "--include=haproxy", "bookworm"])
                .arg(&root)
                .arg(apt_mirror())
                .stdout(out.try_clone().map_err(|e| err(e.to_string()))?)
                .stderr(out)
                .status()
                .map_err(|e| {
                    err(format!(
                        "debootstrap (scripts/install-docker.sh installs it): {e}"
                    ))
                })?;
            if !status.success() {
                return Err(err(format!(
                    "debootstrap failed ({status}); see {}",
                    log.display()
                )));
            }
            let partial = tarball.with_extension("tar.partial");
            let mut tar = Command::new("tar");
            tar.arg("-C").arg(&root).arg("-cf").arg(&partial).arg(".");
            run_ok(tar)?;
            std::fs::rename(&partial, &tarball).map_err(|e| err(format!("rename: {e}")))?;
            let _ = std::fs::remove_dir_all(&root);
        }
        let mut import = Command::new(DOCKER);
        import.arg("import").arg(&tarball).arg(HAPROXY_BASE);
        run_ok(import)?;
        Ok(HAPROXY_BASE.to_string())
    }
}

/// The first `URIs:`/`deb` mirror apt is configured with (debootstrap's default otherwise).
fn apt_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            if entry
                .path()
                .extension()
                .is_some_and(|x| x == "sources" || x == "list")
            {
                texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in texts {
        for line in text.lines() {
            let line = line.trim();
            let url = line
                .strip_prefix("URIs:")
                .map(|u| u.split_whitespace().next().unwrap_or(""))
                .or_else(|| {
                    line.strip_prefix("deb ")
                        .and_then(|rest| rest.split_whitespace().find(|w| w.starts_with("http")))
                });
            if let Some(url) = url {
                if url.starts_with("http") && !url.contains("security") {
                    return url.to_string();
                }
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

fn import_dir(stage: &Path, tag: &str) -> Result<()> {
    let tar = Command::new("tar")
        .arg("-C")
        .arg(stage)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("tar: {e}")))?;
    let Some(stdout) = tar.stdout else {
        return Err(err("tar: no stdout"));
    };
    let out = Command::new(DOCKER)
        .args(["import", "-", tag])
        .stdin(stdout)
        .output()
        .map_err(|e| err(format!("docker import: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "docker import {tag}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(from).arg(to);
    run_ok(cp).map(|_| ())
}

/// The debug `jetmill` binary cargo built for the tests (`target/debug/jetmill`).
fn jetmill_bin(root: &Path) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug/jetmill");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(err(format!(
            "{} not found: build it first (cargo build -p jetmill)",
            bin.display()
        )))
    }
}

fn compose_cmd(file: &Path, project: &str, envs: &[(&str, &str)], args: &[&str]) -> Result<String> {
    let mut command = Command::new("docker-compose");
    command
        .arg("-f")
        .arg(file)
        .args(["-p", project])
        .args(args)
        .env("DOCKER_BUILDKIT", "1")
        .env("COMPOSE_DOCKER_CLI_BUILD", "1");
    for (k, v) in envs {
        command.env(k, v);
    }
    Ok(String::from_utf8_lossy(&run_ok(command)?.stdout).to_string())
}

/// Run a command; its output if it succeeded, else an error with its stderr.
fn run_ok(mut command: Command) -> Result<Output> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(format!("{shown}: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(err(format!(
            "{shown} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Start dockerd (the host state recorded first) and wait up to 60 s for `docker info`.
fn start_daemon() -> Result<Daemon> {
    let snapshot = HostSnapshot::take().map_err(|e| {
        err(format!(
            "cannot record the host's network state before starting dockerd ({e}); scripts/install-docker.sh installs iptables and iproute2"
        ))
    })?;
    let dir = crate::workspace_root().join("target/docker-test");
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("mkdir {}: {e}", dir.display())))?;
    let log = dir.join("dockerd.log");
    let file = File::create(&log).map_err(|e| err(format!("create {}: {e}", log.display())))?;
    let child = Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| err(e.to_string()))?)
        .stderr(file)
        .spawn()
        .map_err(|e| {
            err(format!(
                "cannot start dockerd ({e}): run scripts/install-docker.sh, or set \
                 JETMILL_SKIP_DOCKER_TESTS=1 to skip the Docker tests"
            ))
        })?;
    let mut daemon = Daemon {
        child,
        snapshot,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new(DOCKER)
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(daemon);
        }
        let exited = daemon.child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            let why = match exited {
                Some(status) => format!("dockerd exited with {status}"),
                None => "dockerd did not answer `docker info` within 60 s".to_string(),
            };
            let tail = log_tail(&daemon.log, 20);
            stop_daemon(&mut daemon);
            return Err(err(format!(
                "{why} (log {}):\n{tail}\nSet JETMILL_SKIP_DOCKER_TESTS=1 to skip the Docker tests",
                daemon.log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// SIGTERM dockerd, wait (it stops its containers and its containerd), then restore.
fn stop_daemon(daemon: &mut Daemon) {
    let pid = daemon.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if daemon.child.try_wait().ok().flatten().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("docker harness: dockerd did not stop within 60 s; killing it");
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.snapshot.restore();
}

impl Drop for Docker {
    fn drop(&mut self) {
        for project in self.projects.take() {
            let envs: Vec<(&str, &str)> = project
                .envs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let down = ["down", "-v", "--remove-orphans", "-t", "5"];
            if let Err(e) = compose_cmd(&project.file, &project.name, &envs, &down) {
                eprintln!("docker harness: compose down {}: {e}", project.name);
            }
            // Whatever compose could not take down (e.g. its file no longer parses).
            remove_labelled(&format!(
                "label=com.docker.compose.project={}",
                project.name
            ));
        }
        for stack in self.stacks.take() {
            if let Err(e) = remove_stack(&stack) {
                eprintln!("docker harness: stack rm {stack}: {e}");
                remove_labelled(&format!("label=com.docker.stack.namespace={stack}"));
            }
        }
        // Earlier builds of the test images that a newer build untagged.
        let mut prune = Command::new(DOCKER);
        prune.args(["image", "prune", "-f", "--filter", "label=jetmill.test.tag"]);
        let _ = run_ok(prune);
        if self.swarm.get() {
            let mut leave = Command::new(DOCKER);
            leave.args(["swarm", "leave", "--force"]);
            if let Err(e) = run_ok(leave) {
                eprintln!("docker harness: swarm leave: {e}");
            }
            // The swarm's local bridge network outlives the swarm (and is recreated with
            // its link at every daemon start): remove it too.
            let mut gw = Command::new(DOCKER);
            gw.args(["network", "rm", "docker_gwbridge"]);
            let _ = run_ok(gw);
        }
        if let Some(mut daemon) = self.daemon.take() {
            stop_daemon(&mut daemon);
        }
    }
}

/// Force-remove the containers, then networks and volumes, matching a label filter.
fn remove_labelled(filter: &str) {
    for (ls, rm) in [
        (&["ps", "-aq"][..], &["rm", "-f", "-v"][..]),
        (&["network", "ls", "-q"][..], &["network", "rm"][..]),
        (&["volume", "ls", "-q"][..], &["volume", "rm", "-f"][..]),
    ] {
        let mut list = Command::new(DOCKER);
        list.args(ls).args(["--filter", filter]);
        let Ok(out) = run_ok(list) else { continue };
        let ids = String::from_utf8_lossy(&out.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut remove = Command::new(DOCKER);
            remove.args(rm).args(&ids);
            if let Err(e) = run_ok(remove) {
                eprintln!("docker harness: {e}");
            }
        }
    }
}

/// `docker stack rm`, then wait for its containers to go and remove its volumes.
fn remove_stack(name: &str) -> Result<()> {
    let mut rm = Command::new(DOCKER);
    rm.args(["stack", "rm", name]);
    run_ok(rm)?;
    let label = format!("label=com.docker.stack.namespace={name}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut ps = Command::new(DOCKER);
        ps.args(["ps", "-aq", "--filter", &label]);
        let containers = String::from_utf8_lossy(&run_ok(ps)?.stdout).to_string();
        let mut nets = Command::new(DOCKER);
        nets.args(["network", "ls", "-q", "--filter", &label]);
        let networks = String::from_utf8_lossy(&run_ok(nets)?.stdout).to_string();
        if containers.trim().is_empty() && networks.trim().is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(err(format!(
                "stack {name} still has containers/networks after 90 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut vols = Command::new(DOCKER);
    vols.args(["volume", "ls", "-q", "--filter", &label]);
    let volumes = String::from_utf8_lossy(&run_ok(vols)?.stdout).to_string();
    let volumes: Vec<&str> = volumes.split_whitespace().collect();
    if !volumes.is_empty() {
        let mut rmv = Command::new(DOCKER);
        rmv.args(["volume", "rm"]).args(&volumes);
        run_ok(rmv)?;
    }
    Ok(())
}
