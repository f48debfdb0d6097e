//! Syscalls that slip past the per-syscall tracepoints: io_uring (its operations never pass
//! them; creating the ring does) and 32-bit syscalls (only `raw_syscalls` sees them), made by
//! a real program on the host and in a real container. The program, tests/helpers/bypass.c, is
//! built here with `cc`, static and without libc, as a 64-bit program (`int 0x80` from 64-bit
//! code) and as a 32-bit one. Needs root, cc, containerd, runc and busybox-static, and a kernel
//! with 32-bit emulation and io_uring.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use common::{Agent, Containerd, busybox_rootfs, pod, run_in_kubelet_cgroup, unique};
use peregrine_detect::{Catalog, Engine};
use peregrine_event::{Event, Kind};

/// i386 syscall numbers the helper makes.
const WRITE: u32 = 4;
const OPEN: u32 = 5;
const GETPID: u32 = 20;
const EXIT_GROUP: u32 = 252;
const IO_URING_SETUP: u32 = 425;

struct Helpers {
    bin64: PathBuf,
    bin32: PathBuf,
    _dir: tempfile::TempDir,
}

/// Builds tests/helpers/bypass.c, 64- and 32-bit.
fn helpers() -> Helpers {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/bypass.c");
    let build = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let o = Command::new("cc")
            .args(extra)
            .args(["-static", "-nostdlib", "-fno-pie", "-no-pie", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .output()
            .expect("cc must be installed (it is Rust's linker too)");
        assert!(
            o.status.success(),
            "building {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    Helpers {
        bin64: build("bypass64", &[]),
        bin32: build("bypass32", &["-m32"]),
        _dir: dir,
    }
}

/// What the helper printed.
#[derive(Debug)]
struct Results {
    io_uring: i64,
    getpid: i64,
    open: i64,
}

fn parse(stdout: &str) -> Results {
    let v: BTreeMap<&str, i64> = stdout
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    Results {
        io_uring: v["io_uring"],
        getpid: v["getpid"],
        open: v["open"],
    }
}

/// Runs a helper on the host: its pid and what it printed.
fn run(bin: &Path, path: &Path) -> (u32, Results) {
    let child = Command::new(bin)
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed ({}): {stdout}; a killed helper means the kernel refused int 0x80 (32-bit emulation off: ia32_emulation=0)",
        bin.display(),
        out.status
    );
    (pid, parse(&stdout))
}

/// The compat_syscall events of a process, by syscall number; each number at most once.
fn compat_events(events: &[Event], pid: u32) -> BTreeMap<u32, Event> {
    let mut out = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.kind == Kind::CompatSyscall && e.process.pid == pid)
    {
        let nr = e.compat_syscall().unwrap().nr;
        assert!(
            out.insert(nr, e.clone()).is_none(),
            "syscall {nr} of process {pid} was reported twice: repeats must be folded"
        );
    }
    out
}

/// Waits for the exit of process `pid`: every event it caused is in the output by then.
fn wait_exit(agent: &Agent, pid: u32, what: &str) {
    agent.wait_for(&format!("exit of {what}"), |e| {
        e.kind == Kind::Exit && e.process.pid == pid
    });
}

/// The default catalog: these rules must fire without opting in to anything.
fn rules() -> Engine {
    Engine::new([Catalog::builtin().unwrap()])
}

/// The ids of the default built-in rules that `ev` fires.
fn fired(engine: &Engine, ev: &Event) -> Vec<String> {
    let mut m = Vec::new();
    engine.evaluate(ev, &mut m);
    m.into_iter().map(|m| m.rule_id).collect()
}

#[test]
fn io_uring_and_32bit_syscalls_on_the_host_are_reported_once_with_their_results() {
    let h = helpers();
    let agent = Agent::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (path64, path32) = (
        tmp.path().join(unique("int80")),
        tmp.path().join(unique("ia32")),
    );

    // 64-bit code: io_uring_setup as a 64-bit syscall, then getpid (three times) and an open
    // for writing through int 0x80.
    let (pid, r) = run(&h.bin64, &path64);
    assert!(r.io_uring >= 0, "io_uring_setup failed: {r:?}");
    assert_eq!(r.getpid, i64::from(pid));
    assert!(r.open >= 0 && path64.exists(), "{r:?}");
    wait_exit(&agent, pid, "the 64-bit helper");
    let events = agent.events();

    let ring = events
        .iter()
        .find(|e| e.kind == Kind::IoUring && e.process.pid == pid)
        .unwrap_or_else(|| panic!("no io_uring event of {pid}\n{}", agent.log()));
    let u = ring.io_uring().unwrap();
    assert_eq!((u.entries, u.flags, u.result), (8, 0, r.io_uring));
    assert!(ring.container.is_none());
    assert_eq!(ring.process.exe, h.bin64.to_string_lossy());

    let compat = compat_events(&events, pid);
    assert_eq!(
        compat.keys().copied().collect::<Vec<_>>(),
        [OPEN, GETPID],
        "only the int 0x80 syscalls are 32-bit ones (exit_group and io_uring_setup are 64-bit)"
    );
    let getpid = compat[&GETPID].compat_syscall().unwrap();
    assert_eq!(getpid.name.as_deref(), Some("getpid"));
    assert_eq!(getpid.result, Some(i64::from(pid)));
    assert!(getpid.from_64bit, "int 0x80 from 64-bit code");
    let open = compat[&OPEN].compat_syscall().unwrap();
    assert_eq!(open.name.as_deref(), Some("open"));
    assert_eq!(open.result, Some(r.open));
    assert!(open.from_64bit);
    // The open tracepoints never saw that open for writing: only the compat event did.
    let path64 = path64.to_string_lossy();
    assert!(
        !events
            .iter()
            .any(|e| e.kind == Kind::Open && e.file().is_some_and(|f| f.path == path64)),
        "a 32-bit open reached the open tracepoints?"
    );

    // A 32-bit program: every syscall it makes is a 32-bit one, io_uring_setup included.
    let (pid, r) = run(&h.bin32, &path32);
    assert!(r.io_uring >= 0 && r.open >= 0, "{r:?}");
    wait_exit(&agent, pid, "the 32-bit helper");
    let events = agent.events();
    let compat = compat_events(&events, pid);
    assert_eq!(
        compat.keys().copied().collect::<Vec<_>>(),
        [WRITE, OPEN, GETPID, EXIT_GROUP, IO_URING_SETUP],
        "{compat:#?}"
    );
    for (nr, e) in &compat {
        let c = e.compat_syscall().unwrap();
        assert!(!c.from_64bit, "{nr}: a 32-bit program");
        assert_eq!(e.process.exe, h.bin32.to_string_lossy());
    }
    let c = |nr: u32| compat[&nr].compat_syscall().unwrap().clone();
    assert_eq!(c(GETPID).result, Some(i64::from(pid)));
    assert_eq!(c(OPEN).result, Some(r.open));
    assert_eq!(c(IO_URING_SETUP).name.as_deref(), Some("io_uring_setup"));
    assert_eq!(c(IO_URING_SETUP).result, Some(r.io_uring));
    // exit_group never returns: reported at entry, without a result.
    assert_eq!(c(EXIT_GROUP).name.as_deref(), Some("exit_group"));
    assert_eq!(c(EXIT_GROUP).result, None);
    assert!(
        !events
            .iter()
            .any(|e| e.kind == Kind::IoUring && e.process.pid == pid),
        "a 32-bit io_uring_setup passes only the raw tracepoints"
    );

    // Two repeated getpids per program were folded, and counted.
    agent.wait_metric("peregrine_compat_syscalls_folded_total", 4.0);

    // On the host, none of the container rules fire.
    let engine = rules();
    for e in events
        .iter()
        .filter(|e| matches!(e.kind, Kind::IoUring | Kind::CompatSyscall) && e.container.is_none())
    {
        assert_eq!(fired(&engine, e), Vec::<String>::new(), "{e:?}");
    }
}

/// `--compat-syscalls entry` leaves the raw `sys_exit` program out: the same syscalls are
/// reported, at entry, without their results.
#[test]
fn without_the_exit_program_32bit_syscalls_are_reported_at_entry() {
    let h = helpers();
    let agent = Agent::start(&["--compat-syscalls", "entry"]);
    let tmp = tempfile::tempdir().unwrap();
    let (pid, _) = run(&h.bin64, &tmp.path().join(unique("int80")));
    wait_exit(&agent, pid, "the 64-bit helper");
    let compat = compat_events(&agent.events(), pid);
    assert_eq!(compat.keys().copied().collect::<Vec<_>>(), [OPEN, GETPID]);
    for e in compat.values() {
        let c = e.compat_syscall().unwrap();
        assert_eq!(c.result, None, "{c:?}");
        assert!(c.from_64bit);
    }
    let body = agent.get("/healthz").unwrap();
    assert!(
        body.contains("compat_sys_enter") && !body.contains("compat_sys_exit"),
        "{body}"
    );
}

#[test]
fn io_uring_and_32bit_syscalls_in_a_container_fire_the_rules() {
    let h = helpers();
    let cd = Containerd::start();
    let agent = Agent::start(&["--containerd-socket", cd.socket.to_str().unwrap()]);
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    std::fs::copy(&h.bin64, rootfs.join("bin/bypass64")).unwrap();
    std::fs::copy(&h.bin32, rootfs.join("bin/bypass32")).unwrap();
    let p = pod();
    let marker = unique("bypass");
    let script = format!(
        "/bin/bypass64 /tmp/{marker}-64 && /bin/bypass32 /tmp/{marker}-32 && echo {marker}"
    );
    let _cleanup = run_in_kubelet_cgroup(&cd, &rootfs, &p, &script);

    let in_pod = |e: &Event| e.container.as_ref().is_some_and(|c| c.id == p.cid);
    let ring = agent.wait_for("io_uring in the container", |e| {
        e.kind == Kind::IoUring && in_pod(e)
    });
    let int80 = agent.wait_for("int 0x80 open in the container", |e| {
        e.kind == Kind::CompatSyscall
            && in_pod(e)
            && e.compat_syscall()
                .is_some_and(|c| c.nr == OPEN && c.from_64bit)
    });
    let ia32 = agent.wait_for("32-bit open in the container", |e| {
        e.kind == Kind::CompatSyscall
            && in_pod(e)
            && e.compat_syscall()
                .is_some_and(|c| c.nr == OPEN && !c.from_64bit)
    });
    for e in [&ring, &int80, &ia32] {
        let c = e.container.as_ref().unwrap();
        assert_eq!(c.pod_name.as_deref(), Some(p.name.as_str()), "{e:?}");
        assert_eq!(c.pod_namespace.as_deref(), Some(p.namespace.as_str()));
    }
    assert_eq!(ring.process.exe, "/bin/bypass64");
    assert!(ring.io_uring().unwrap().result >= 0, "{ring:?}");
    assert_eq!(int80.process.exe, "/bin/bypass64");
    assert_eq!(ia32.process.exe, "/bin/bypass32");
    assert!(
        int80
            .compat_syscall()
            .unwrap()
            .result
            .is_some_and(|r| r >= 0)
    );

    let engine = rules();
    assert_eq!(fired(&engine, &ring), ["io-uring-in-container"]);
    assert_eq!(
        fired(&engine, &int80),
        ["int80-syscall-from-64bit-code-in-container"]
    );
    assert_eq!(fired(&engine, &ia32), ["compat-syscall-in-container"]);
    let mut m = Vec::new();
    engine.evaluate(&int80, &mut m);
    assert_eq!(
        m[0].finding_type,
        "DefenseEvasion:Runtime/PeregrineCompatSyscallInContainer"
    );
    engine.evaluate(&ring, &mut m);
    assert_eq!(
        m[1].finding_type,
        "DefenseEvasion:Runtime/PeregrineIoUringInContainer"
    );
}
