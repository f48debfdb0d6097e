//! Shared harness for the agent's integration tests: they run the real `peregrine-agent`
//! binary as root against this kernel and read what it prints.
#![allow(dead_code)]

pub mod stack;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use peregrine_event::Event;

/// These tests load eBPF programs and start containers: without root they cannot mean anything,
/// so they fail (never skip).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "integration tests must run as root (they load eBPF programs and run containers)"
    );
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running agent in standalone `--events` mode, writing to a file.
pub struct Agent {
    child: Option<Child>,
    pub output: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

pub const WAIT: Duration = Duration::from_secs(30);

impl Agent {
    /// `standalone --events` writing to a file, plus `extra` options.
    pub fn start(extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("events.jsonl");
        let mut args: Vec<String> = vec!["standalone".into(), "--events".into(), "--output".into()];
        args.push(output.to_string_lossy().into_owned());
        args.extend(extra.iter().map(|s| s.to_string()));
        Agent::spawn(dir, output, &args, &[], true)
    }

    /// Any subcommand and options, with extra environment (for `run` against a local AWS).
    pub fn start_with(args: &[String], env: &[(String, String)]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("unused");
        Agent::spawn(dir, output, args, env, true)
    }

    /// `standalone` writing findings (not events) to [`Agent::output`], plus `extra` options;
    /// ready once `/healthz` answers, whatever its status.
    pub fn start_findings(extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("findings.jsonl");
        let mut args: Vec<String> = vec!["standalone".into(), "--output".into()];
        args.push(output.to_string_lossy().into_owned());
        args.extend(extra.iter().map(|s| s.to_string()));
        Agent::spawn(dir, output, &args, &[], false)
    }

    /// [`Agent::start`], ready once `/healthz` answers, whatever its status (an agent that is
    /// expected to start degraded).
    pub fn start_unchecked(extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("events.jsonl");
        let mut args: Vec<String> = vec!["standalone".into(), "--events".into(), "--output".into()];
        args.push(output.to_string_lossy().into_owned());
        args.extend(extra.iter().map(|s| s.to_string()));
        Agent::spawn(dir, output, &args, &[], false)
    }

    fn spawn(
        dir: tempfile::TempDir,
        output: PathBuf,
        args: &[String],
        env: &[(String, String)],
        expect_ok: bool,
    ) -> Agent {
        require_root();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_peregrine-agent"))
            .args(args)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.path().join("agent.log"))
                    .unwrap(),
            )
            .spawn()
            .expect("start peregrine-agent");
        let mut agent = Agent {
            child: Some(child),
            output,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(body) = agent.get("/healthz") {
                assert!(
                    !expect_ok || body.contains("\"status\":\"ok\""),
                    "agent degraded at start: {body}"
                );
                break;
            }
            if let Some(status) = agent.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited at start ({status}): {}", agent.log());
            }
            assert!(
                Instant::now() < deadline,
                "agent not ready: {}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    /// Kills the agent without letting it clean up, as a crash or OOM kill would.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("agent already stopped");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("agent.log")).unwrap_or_default()
    }

    /// A plain HTTP GET against the agent's metrics server.
    pub fn get(&self, path: &str) -> Option<String> {
        http_get(self.port, path)
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").expect("metrics endpoint")
    }

    /// The value of a metric line `name{labels} value` (labels matched verbatim).
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// Waits until metric `series` reaches at least `min` (metrics refresh on a 1 s tick).
    pub fn wait_metric(&self, series: &str, min: f64) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.metric(series).unwrap_or(0.0);
            if v >= min {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {v} (< {min})\n{}",
                self.metrics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every complete line the agent has written so far.
    pub fn events(&self) -> Vec<Event> {
        read_events(&self.output)
    }

    /// Waits until an event satisfying `pred` appears; panics with context after [`WAIT`].
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no event: {what}\nagent log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT and waits up to `limit` for the agent to exit: its status, or `None` (and the
    /// agent killed) if it did not stop in time.
    pub fn interrupt(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("agent already stopped");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the agent to stop (SIGTERM) and waits for it; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("agent already stopped");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as above.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            // Bounded: an agent that does not stop must not hang the test run (nor be orphaned).
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP GET against an agent's metrics server on `port`: the body of a 200 answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

pub fn read_events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line ({e}): {l}")))
        .collect()
}

pub fn unique(tag: &str) -> String {
    format!("pg-{tag}-{}", random_hex(12))
}

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub fn sha256_of(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

// ------------------------------------------------------------------------------------------
// Containers: a private containerd, a busybox rootfs, overlay mounts and cgroups, each cleaned
// up by its guard.

pub struct Containerd {
    child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        Self::start_in(dir, socket)
    }

    /// A containerd listening on `socket` (its state lives in a fresh directory).
    pub fn start_at(socket: &Path) -> Containerd {
        Self::start_in(tempfile::tempdir().unwrap(), socket.to_path_buf())
    }

    fn start_in(dir: tempfile::TempDir, socket: PathBuf) -> Containerd {
        require_root();
        let config = dir.path().join("config.toml");
        // A private instance: its own root, state and socket, the CRI plugin off (no kubelet).
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\naddress = {:?}\n[ttrpc]\naddress = {:?}\n",
                dir.path().join("root"),
                dir.path().join("state"),
                socket,
                dir.path().join("containerd.sock.ttrpc"),
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd must be installed (scripts/setup installs it)");
        let c = Containerd { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A directory holding busybox and its applet links.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "etc",
        "root",
        "root/.ssh",
        "run",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("busybox-static must be installed");
    let status = Command::new(root.join("bin/busybox"))
        .arg("--install")
        .arg("-s")
        .arg(root.join("bin"))
        .status()
        .unwrap();
    assert!(status.success());
    // --install -s links to the absolute /bin/busybox of the host; make the links relative.
    for entry in std::fs::read_dir(root.join("bin")).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != "busybox" && p.is_symlink() {
            std::fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink("busybox", &p).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    root
}

/// An overlayfs mount (lower: `lower`, upper/work: fresh directories under `dir`).
pub struct Overlay {
    pub merged: PathBuf,
    pub upper: PathBuf,
}

impl Overlay {
    pub fn mount(lower: &Path, dir: &Path) -> Overlay {
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .status()
            .unwrap();
        assert!(status.success(), "mounting overlayfs failed");
        Overlay { merged, upper }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
    }
}

/// Removes the kubelet-style parent cgroups a test created (the container's own is removed by
/// the runtime).
pub struct CgroupParents(pub Vec<String>);

impl Drop for CgroupParents {
    fn drop(&mut self) {
        let Some(mount) = cgroup2_mount() else { return };
        for rel in self.0.iter().rev() {
            let _ = std::fs::remove_dir(mount.join(rel.trim_start_matches('/')));
        }
        // cgroup v1 hierarchies on hybrid hosts get the same directories.
        if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup") {
            for d in dirs.flatten() {
                for rel in self.0.iter().rev() {
                    let _ = std::fs::remove_dir(d.path().join(rel.trim_start_matches('/')));
                }
            }
        }
    }
}

pub fn cgroup2_mount() -> Option<PathBuf> {
    node_agent::container::cgroup2_mount()
}

pub fn random_hex(n: usize) -> String {
    let mut out = String::new();
    let mut x = rand_nanos() ^ (u128::from(std::process::id()) << 64);
    while out.len() < n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(&format!("{:x}", (x >> 64) as u64 & 0xf));
    }
    out
}

/// A pod's identity for a test container.
pub struct Pod {
    pub cid: String,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub container: String,
}

pub fn pod() -> Pod {
    let h = random_hex(32);
    Pod {
        cid: random_hex(64),
        uid: format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ),
        name: unique("web"),
        namespace: "payments".into(),
        container: "app".into(),
    }
}

/// Runs `script` in the pod's container under kubelet-style cgroups
/// (`/kubepods/besteffort/pod<uid>/<container id>`), to completion. The returned guard removes
/// the parent cgroups: keep it for the rest of the test.
#[must_use = "dropping the guard removes the pod's cgroups"]
pub fn run_in_kubelet_cgroup(
    cd: &Containerd,
    rootfs: &Path,
    p: &Pod,
    script: &str,
) -> CgroupParents {
    let qos = "/kubepods/besteffort";
    let pod_cg = format!("{qos}/pod{}", p.uid);
    let guard = CgroupParents(vec!["/kubepods".into(), qos.into(), pod_cg.clone()]);
    run_container(cd, rootfs, p, Some(&format!("{pod_cg}/{}", p.cid)), script);
    guard
}

/// Runs `script` in a container (busybox rootfs at `rootfs`) with CRI labels, to completion.
pub fn run_container(cd: &Containerd, rootfs: &Path, p: &Pod, cgroup: Option<&str>, script: &str) {
    let mut args: Vec<String> = vec![
        "-n".into(),
        "k8s.io".into(),
        "run".into(),
        "--rm".into(),
        "--rootfs".into(),
    ];
    if let Some(cg) = cgroup {
        args.extend(["--cgroup".into(), cg.into()]);
    }
    for (k, v) in [
        ("io.kubernetes.pod.name", &p.name),
        ("io.kubernetes.pod.namespace", &p.namespace),
        ("io.kubernetes.pod.uid", &p.uid),
        ("io.kubernetes.container.name", &p.container),
    ] {
        args.extend(["--label".into(), format!("{k}={v}")]);
    }
    args.extend([
        rootfs.to_string_lossy().into_owned(),
        p.cid.clone(),
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cd.ctr(&args);
    assert!(
        out.status.success(),
        "ctr run failed: {}\n{}\ncontainerd log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        cd.log()
    );
}
