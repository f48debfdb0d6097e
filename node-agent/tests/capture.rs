//! Kernel capture on this machine: exec, file changes and connects, checked field by field
//! against what the test itself did. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    collections::HashSet,
    net::{TcpListener, TcpStream},
    os::unix::{
        fs::{PermissionsExt, symlink},
        net::{UnixListener, UnixStream},
        process::CommandExt,
    },
    process::Command,
    time::{Duration, Instant},
};

use common::{Agent, sha256_of, unique};
use peregrine_event::{Event, Family, Kind};

fn canonical(p: &str) -> String {
    std::fs::canonicalize(p)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn exec_reports_identity_argv_cwd_hash_env_and_lineage() {
    let agent = Agent::start(&[]);
    let marker = unique("exec");
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 3", &marker])
        .current_dir("/tmp")
        .env("LD_LIBRARY_PATH", "/opt/pg-libs")
        .env("LD_PRELOAD", "/nonexistent/pg-preload.so")
        .uid(65534)
        .gid(65534)
        // ld.so complains about the missing preload on stderr; that is expected.
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(child.wait().unwrap().code(), Some(3));

    let ev = agent.wait_for("exec with the marker", |e| {
        e.kind == Kind::Exec && e.process.argv.contains(&marker)
    });
    let p = &ev.process;
    assert_eq!(p.pid, pid);
    assert_eq!(ev.tid, pid);
    assert_eq!(p.ppid, std::process::id());
    assert_eq!((p.uid, p.euid, p.gid), (65534, 65534, 65534));
    let exe = canonical("/bin/sh");
    assert_eq!(p.exe, exe);
    assert_eq!(
        p.argv,
        vec![
            "/bin/sh".to_string(),
            "-c".into(),
            "exit 3".into(),
            marker.clone()
        ]
    );
    assert!(!p.argv_truncated);
    assert_eq!(p.cwd, "/tmp");
    // The exec event never waits for a hash: it has it only if already known.
    let want = sha256_of(&exe);
    if let Some(h) = &p.sha256 {
        assert_eq!(h, &want);
    }
    assert_eq!(p.ld_library_path.as_deref(), Some("/opt/pg-libs"));
    assert_eq!(p.ld_preload.as_deref(), Some("/nonexistent/pg-preload.so"));
    assert!(ev.container.is_none(), "a host process has no container");
    assert_eq!(ev.exec().unwrap().filename, "/bin/sh");

    // Lineage reaches this test process, by uuid.
    let me = std::process::id();
    assert_eq!(p.lineage[0].pid, me);
    assert_eq!(p.lineage[0].uuid, p.parent_uuid);
    assert_eq!(p.lineage[0].exe, canonical("/proc/self/exe"));

    // The fork that created it names the same uuid, and the exit carries the code.
    let fork = agent.wait_for("fork of the child", |e| {
        e.kind == Kind::Fork && e.fork().unwrap().child_pid == pid
    });
    assert_eq!(fork.process.pid, me);
    assert_eq!(fork.fork().unwrap().child_uuid, p.uuid);
    let exit = agent.wait_for("exit of the child", |e| {
        e.kind == Kind::Exit && e.process.pid == pid
    });
    assert_eq!(exit.process.uuid, p.uuid);
    assert_eq!(exit.exit().unwrap().code, Some(3));
}

/// The hash follows the exec: once computed in the background, later execs of the same file
/// carry it.
#[test]
fn exec_hash_follows_on_later_events() {
    let agent = Agent::start(&[]);
    let exe = canonical("/bin/sh");
    let want = sha256_of(&exe);
    let deadline = Instant::now() + common::WAIT;
    loop {
        let marker = unique("rehash");
        let status = Command::new("/bin/sh")
            .args(["-c", "exit 0", &marker])
            .status()
            .unwrap();
        assert!(status.success());
        let ev = agent.wait_for("exec with the marker", |e| {
            e.kind == Kind::Exec && e.process.argv.contains(&marker)
        });
        if let Some(h) = &ev.process.sha256 {
            assert_eq!(h, &want);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exec of {exe} ever carried its hash"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An attacker's executables that leave a FIFO at their path once they have run (a hasher
/// that opens it blocks forever) neither stall the exec events that follow nor keep the agent
/// from stopping. Counts, never times: every exec of 100 fresh binaries must arrive.
#[test]
fn fifos_left_at_executable_paths_stall_neither_events_nor_shutdown() {
    let mut agent = Agent::start(&[]);
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let dir = canonical(tmp.path().to_str().unwrap());
    let true_bin = canonical("/bin/true");

    // Each runs and exits; then its path becomes a FIFO with no writer (the test does the swap
    // right after the exit, as the binary itself would, so that the process is already gone
    // when the hasher looks: only the path is left to try).
    let traps: Vec<String> = (0..4).map(|i| format!("{dir}/trap-{i}")).collect();
    for t in &traps {
        std::fs::copy(&true_bin, t).unwrap();
        assert!(Command::new(t).status().unwrap().success());
        std::fs::remove_file(t).unwrap();
        let c = std::ffi::CString::new(t.as_str()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o755) }, 0);
    }
    for t in &traps {
        agent.wait_for("exec of a trap", |e| {
            e.kind == Kind::Exec && &e.process.exe == t
        });
    }

    // 100 distinct new executables (each its own inode, so each its own hash job).
    let fresh: Vec<String> = (0..100).map(|i| format!("{dir}/fresh-{i}")).collect();
    for f in &fresh {
        std::fs::copy(&true_bin, f).unwrap();
    }
    for f in &fresh {
        assert!(Command::new(f).status().unwrap().success());
    }
    let want: HashSet<&str> = fresh.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen: HashSet<String> = agent
            .events()
            .into_iter()
            .filter(|e| e.kind == Kind::Exec && want.contains(e.process.exe.as_str()))
            .map(|e| e.process.exe.clone())
            .collect();
        if seen.len() == want.len() || Instant::now() >= deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        seen.len(),
        100,
        "exec events of only {} of 100 fresh binaries arrived\nmetrics:\n{}\nlog:\n{}",
        seen.len(),
        agent.metrics(),
        agent.log()
    );
    // The traps were refused as FIFOs, not hashed (and not merely missed).
    agent.wait_metric(
        "peregrine_exe_hash_skipped_total{reason=\"not_regular\"}",
        1.0,
    );

    // Liveness, not a benchmark: the drain timeout (5 s) plus a generous margin for detaching
    // the probes (2-3 s) on a busy machine.
    let limit = Duration::from_secs(5 + 25);
    let status = agent.interrupt(limit);
    assert!(
        status.is_some(),
        "the agent did not stop within {limit:?} of SIGINT"
    );
    assert!(status.unwrap().success(), "agent exited with {status:?}");
}

#[test]
fn long_argv_is_bounded_and_says_so() {
    let agent = Agent::start(&[]);
    let marker = unique("argv");
    let long = "A".repeat(20_000);
    let status = Command::new("/bin/sh")
        .args(["-c", "exit 0", &marker, &long])
        .status()
        .unwrap();
    assert!(status.success());
    let ev = agent.wait_for("exec with long argv", |e| {
        e.kind == Kind::Exec && e.process.argv.contains(&marker)
    });
    assert!(ev.process.argv_truncated);
    let total: usize = ev.process.argv.iter().map(|a| a.len() + 1).sum();
    assert!(
        total <= node_agent_common::ARGV_CAP,
        "argv kept {total} bytes"
    );
    assert!(ev.process.argv[4].starts_with("AAAA"));
}

fn file_events(agent: &Agent, dir: &str) -> Vec<Event> {
    agent
        .events()
        .into_iter()
        .filter(|e| {
            e.file().is_some_and(|f| {
                f.path.starts_with(dir) || f.new_path.as_deref().is_some_and(|n| n.starts_with(dir))
            })
        })
        .collect()
}

fn wait_file(agent: &Agent, what: &str, kind: Kind, path: &str) -> Event {
    agent.wait_for(what, |e| {
        e.kind == kind && e.file().is_some_and(|f| f.path == path)
    })
}

#[test]
fn file_changes_are_reported_and_plain_reads_are_not() {
    let agent = Agent::start(&[]);
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let dir = canonical(tmp.path().to_str().unwrap());
    let (a, b, c, d) = (
        format!("{dir}/a"),
        format!("{dir}/b"),
        format!("{dir}/c"),
        format!("{dir}/d"),
    );
    let me = std::process::id();

    // From this process: Rust's std uses openat, rename, linkat, symlink, unlink and chmod.
    std::fs::write(&a, b"payload").unwrap();
    std::fs::rename(&a, &b).unwrap();
    std::fs::hard_link(&b, &c).unwrap();
    symlink(&b, &d).unwrap();
    std::fs::remove_file(&d).unwrap();
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(std::fs::read(&b).unwrap(), b"payload");

    let open = wait_file(&agent, "write of a", Kind::Open, &a);
    let f = open.file().unwrap();
    assert_eq!(open.process.pid, me);
    assert!(f.resolved, "a successful open is resolved by the kernel");
    assert!(f.result >= 0);
    assert_eq!(f.flags & 0o3, 0o1, "O_WRONLY");
    assert_ne!(f.flags & 0o100, 0, "O_CREAT");
    assert_ne!(f.flags & 0o1000, 0, "O_TRUNC");
    assert_eq!(f.mode & 0o777, 0o666);
    assert_ne!(f.ino, 0);

    let rename = wait_file(&agent, "rename a -> b", Kind::Rename, &a);
    assert_eq!(rename.file().unwrap().new_path.as_deref(), Some(b.as_str()));
    assert_eq!(rename.file().unwrap().result, 0);
    let link = wait_file(&agent, "link b -> c", Kind::Link, &b);
    assert_eq!(link.file().unwrap().new_path.as_deref(), Some(c.as_str()));
    let sym = wait_file(&agent, "symlink d -> b", Kind::Symlink, &b);
    assert_eq!(sym.file().unwrap().new_path.as_deref(), Some(d.as_str()));
    wait_file(&agent, "unlink d", Kind::Unlink, &d);
    let chmod = wait_file(&agent, "chmod u+s b", Kind::Chmod, &b);
    let f = chmod.file().unwrap();
    assert_eq!(f.mode, 0o4755);
    assert_eq!(f.mode_octal, "4755");
    assert_ne!(f.mode & 0o4000, 0, "the setuid bit is visible");

    // Relative paths through the *at syscalls (coreutils) come back absolute.
    let script = "mv b e && ln e f && ln -s e g && rm g && chmod u+s f";
    let status = Command::new("/bin/sh")
        .args(["-c", script])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let e = format!("{dir}/e");
    let mv = wait_file(&agent, "mv b e", Kind::Rename, &b);
    assert_eq!(mv.file().unwrap().new_path.as_deref(), Some(e.as_str()));
    assert_eq!(mv.process.exe, canonical("/usr/bin/mv"));
    let ln = wait_file(&agent, "ln e f", Kind::Link, &e);
    assert_eq!(
        ln.file().unwrap().new_path.as_deref(),
        Some(format!("{dir}/f").as_str())
    );
    // A symlink's target is stored as written; the link's own path is resolved.
    let lns = agent.wait_for("ln -s e g", |ev| {
        ev.kind == Kind::Symlink && ev.file().is_some_and(|f| f.path == "e")
    });
    assert_eq!(
        lns.file().unwrap().new_path.as_deref(),
        Some(format!("{dir}/g").as_str())
    );
    wait_file(&agent, "rm g", Kind::Unlink, &format!("{dir}/g"));
    let chm = wait_file(&agent, "chmod u+s f", Kind::Chmod, &format!("{dir}/f"));
    assert_ne!(chm.file().unwrap().mode & 0o4000, 0);

    // The plain read of b above produced nothing.
    let reads: Vec<Event> = file_events(&agent, &dir)
        .into_iter()
        .filter(|e| {
            e.kind == Kind::Open
                && e.file().unwrap().flags & 0o3 == 0
                && e.file().unwrap().flags & 0o1100 == 0
        })
        .collect();
    assert!(
        reads.is_empty(),
        "read-only opens reached user space: {reads:?}"
    );
}

#[test]
fn connects_report_address_port_path_and_result() {
    let agent = Agent::start(&[]);
    let me = std::process::id();

    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v4_port = v4.local_addr().unwrap().port();
    let _s4 = TcpStream::connect(("127.0.0.1", v4_port)).unwrap();

    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let v6_port = v6.local_addr().unwrap().port();
    let _s6 = TcpStream::connect(("::1", v6_port)).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("pg.sock");
    let _ul = UnixListener::bind(&sock).unwrap();
    let _us = UnixStream::connect(&sock).unwrap();

    let refused_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(TcpStream::connect(("127.0.0.1", refused_port)).is_err());

    let port_is = |port: u16| {
        move |e: &Event| {
            e.kind == Kind::Connect && e.process.pid == me && e.net().unwrap().port == Some(port)
        }
    };
    let ev = agent.wait_for("IPv4 connect", port_is(v4_port));
    let n = ev.net().unwrap();
    assert_eq!(n.family, Family::Inet);
    assert_eq!(n.address, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(n.result, 0);

    let ev = agent.wait_for("IPv6 connect", port_is(v6_port));
    let n = ev.net().unwrap();
    assert_eq!(n.family, Family::Inet6);
    assert_eq!(n.address, Some("::1".parse().unwrap()));
    assert_eq!(n.result, 0);

    let path = sock.to_string_lossy().into_owned();
    let ev = agent.wait_for("unix connect", |e| {
        e.kind == Kind::Connect && e.net().unwrap().path.as_deref() == Some(path.as_str())
    });
    let n = ev.net().unwrap();
    assert_eq!(n.family, Family::Unix);
    assert_eq!(n.result, 0);
    assert_eq!(n.address, None);

    let ev = agent.wait_for("refused connect", port_is(refused_port));
    assert_eq!(ev.net().unwrap().result, -111, "ECONNREFUSED");
}
