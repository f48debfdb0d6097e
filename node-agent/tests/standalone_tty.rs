//! `peregrine-agent standalone` for people and for tools: the real binary, as root on this
//! kernel, with its standard output on a pseudo-terminal (one escaped, coloured line per
//! finding) and on a pipe (GuardDuty's finding JSON, one object per line).
//!
//! Each run writes a cgroups `release_agent` file (a finding on any host) in a directory whose
//! name an attacker chose: terminal escapes, the 8-bit CSI and a bidi override.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    fs::File,
    io::Read,
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{WAIT, free_port, http_get, require_root};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

const TYPE: &str = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";
/// The directory's name as the text format must show it.
const SHOWN: &str = r"rel\x1b[2J\x1b]0;owned\x07\u{202e}hs.exe\x9b31m";

/// A directory holding the attacker-named directory, for one test at a time: the finding
/// aggregates per host, so each agent would count the other tests' writes too.
struct Scene {
    _dir: tempfile::TempDir,
    target: PathBuf,
    _one_at_a_time: MutexGuard<'static, ()>,
}

static SCENE: Mutex<()> = Mutex::new(());

impl Scene {
    fn new() -> Scene {
        let one_at_a_time = SCENE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let evil = dir
            .path()
            .join("rel\u{1b}[2J\u{1b}]0;owned\u{7}\u{202e}hs.exe\u{9b}31m");
        std::fs::create_dir(&evil).unwrap();
        Scene {
            target: evil.join("release_agent"),
            _dir: dir,
            _one_at_a_time: one_at_a_time,
        }
    }

    /// Writes the release_agent file: one occurrence of the finding.
    fn trigger(&self) {
        std::fs::write(&self.target, "/tmp/x\n").unwrap();
    }
}

/// Everything read from a child's standard output, by a thread.
struct Output {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Output {
    fn read_from(mut src: impl Read + Send + 'static) -> Output {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = bytes.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // A pty's master reads EIO once the last slave is closed: the end, like EOF.
            while let Ok(n) = src.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Output {
            bytes,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Waits until the output holds `what`.
    fn wait_for(&self, what: &str, agent: &Agent) {
        let deadline = Instant::now() + WAIT;
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the output:\n{}\nagent log:\n{}",
                self.text(),
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything, once the writer has closed its end.
    fn finish(mut self) -> String {
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.text()
    }
}

struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// `standalone` with its standard output on `stdout`, ready once `/healthz` answers.
    fn start(stdout: Stdio, env: &[(&str, &str)], args: &[&str]) -> Agent {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_peregrine-agent"));
        cmd.args(["standalone", "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(File::create(dir.path().join("agent.log")).unwrap());
        let child = cmd.spawn().expect("start peregrine-agent");
        // `cmd` holds our copy of the pty's slave: closed here, so that the master reads the
        // end once the agent exits.
        drop(cmd);
        let mut agent = Agent { child, dir };
        let deadline = Instant::now() + Duration::from_secs(120);
        while http_get(port, "/healthz").is_none() {
            if let Some(status) = agent.child.try_wait().unwrap() {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM, and the agent's exit (it prints pending updates first).
    fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}: {}", self.log());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pseudo-terminal: the master to read, the slave for the agent's standard output.
fn open_pty() -> (File, File) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .expect("a pseudo-terminal (/dev/ptmx)");
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        // Not this test's controlling terminal.
        .custom_flags(libc::O_NOCTTY)
        .open(Path::new(std::ffi::OsStr::from_bytes(name.as_bytes())))
        .unwrap();
    (File::from(master), slave)
}

/// Runs the agent on a pty with `env` and `args`, triggers the finding twice and stops it: the
/// lines about our directory (the terminal's CR LF made LF), and all output.
fn run_on_pty(env: &[(&str, &str)], args: &[&str], shown: &str) -> (Vec<String>, String) {
    let scene = Scene::new();
    let (master, slave) = open_pty();
    let out = Output::read_from(master);
    let mut agent = Agent::start(Stdio::from(slave), env, args);
    scene.trigger();
    out.wait_for(shown, &agent);
    scene.trigger();
    agent.stop();
    let all = out.finish().replace("\r\n", "\n");
    let ours = all
        .lines()
        .filter(|l| l.contains(TYPE) && l.contains("hs.exe"))
        .map(str::to_owned)
        .collect();
    (ours, all)
}

/// `2025-11-24T16:00:00Z  ` at the start of a line.
fn starts_with_time(l: &str) -> bool {
    let b = l.as_bytes();
    b.len() > 22
        && b[..20].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && &l[20..22] == "  "
}

#[test]
fn on_a_terminal_each_finding_is_one_escaped_coloured_line() {
    let (lines, all) = run_on_pty(&[], &[], SHOWN);
    // The first occurrence at once, the second (aggregated) at shutdown with its count.
    assert_eq!(lines.len(), 2, "{all}");
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let pid = std::process::id();
    let high = "\u{1b}[1m\u{1b}[31mHigh\u{1b}[0m    ";
    for (l, count) in lines.iter().zip(["", " ×2"]) {
        assert!(starts_with_time(l), "{l:?}");
        let rest = &l[22..];
        let want = format!("{high}  {TYPE}{count}  host  ");
        assert!(rest.starts_with(&want), "{rest:?} does not start {want:?}");
        // The process (our test binary, cut to its bound) and the evidence.
        assert!(rest.contains(&format!("[{pid}]  release_agent=")), "{l:?}");
        let tail: String = exe
            .chars()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(rest.contains(&tail), "{l:?} lacks {tail}");
        assert!(l.ends_with(&format!("{SHOWN}/release_agent")), "{l:?}");
    }
    // Nothing of the attacker's reached the terminal raw: once the colour codes are taken
    // out, no escape, C1 control or bidi override is left anywhere in the output.
    let bare = all
        .replace("\u{1b}[1m", "")
        .replace("\u{1b}[31m", "")
        .replace("\u{1b}[0m", "");
    assert!(
        !bare
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{bare:?}"
    );
}

#[test]
fn no_color_keeps_the_lines_and_drops_the_colour() {
    let (lines, all) = run_on_pty(&[("NO_COLOR", "1")], &[], SHOWN);
    assert_eq!(lines.len(), 2, "{all}");
    assert!(
        lines[0][20..].starts_with(&format!("  High      {TYPE}  host  ")),
        "{lines:?}"
    );
    assert!(!all.contains('\u{1b}'), "{all:?}");
}

#[test]
fn into_a_pipe_findings_are_json_lines() {
    let scene = Scene::new();
    let mut agent = Agent::start(Stdio::piped(), &[], &[]);
    let out = Output::read_from(agent.child.stdout.take().unwrap());
    scene.trigger();
    out.wait_for("hs.exe", &agent);
    scene.trigger();
    agent.stop();
    let all = out.finish();
    let target = scene.target.to_str().unwrap();
    let ours: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .filter(|f: &serde_json::Value| {
            f["type"] == TYPE
                && f["service"]["runtimeDetails"]["context"]["releaseAgentPath"] == target
        })
        .collect();
    assert_eq!(ours.len(), 2, "{all}");
    assert_eq!(ours[0]["service"]["count"], 1);
    assert_eq!(ours[1]["service"]["count"], 2);
    assert!(
        !all.contains('\u{1b}') && !all.contains('\u{9b}'),
        "{all:?}"
    );
}

#[test]
fn format_json_on_a_terminal_is_json_lines() {
    // JSON escapes the directory's name its own way: \u001b, \u202e.
    let (lines, all) = run_on_pty(&[], &["--format", "json"], r"hs.exe\u009b31m");
    assert_eq!(lines.len(), 2, "{all}");
    for l in &lines {
        let f: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(f["type"], TYPE);
    }
    assert!(!all.contains('\u{1b}'), "{all:?}");
}

#[test]
fn events_are_json_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_peregrine-agent"))
        .args(["standalone", "--events", "--format", "text"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--events prints JSON lines"), "{err}");
}
