//! Path arguments rewritten while the syscall runs (the "Phantom attack" on syscall tracing):
//! the kernel copies a path at the start of the syscall, the agent at its end, and a second
//! thread swaps the caller's buffer in between so that the event names a decoy. The agent cannot
//! see the kernel's copy, so it must flag the event (`file.path_changed`). Each test learns
//! which file the kernel really used from the file system, never from the agent.
//! Needs root (eBPF).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    collections::HashMap,
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Agent, WAIT};
use peregrine_event::{Event, FileInfo, Kind};

/// A NUL-terminated path in memory two threads share: the syscall reads it while the other
/// thread rewrites its last byte (a byte store is atomic, so the kernel sees one name or the
/// other, never a torn mix).
struct SharedPath {
    bytes: Box<[AtomicU8]>,
    len: AtomicUsize,
}

impl SharedPath {
    fn new() -> Self {
        SharedPath {
            bytes: (0..4096).map(|_| AtomicU8::new(0)).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn set(&self, path: &Path) {
        let b = path.as_os_str().as_bytes();
        assert!(b.len() < self.bytes.len());
        for (slot, &v) in self.bytes.iter().zip(b) {
            slot.store(v, Ordering::SeqCst);
        }
        self.bytes[b.len()].store(0, Ordering::SeqCst);
        self.len.store(b.len(), Ordering::SeqCst);
    }

    /// Sets the last byte of the name.
    fn set_last(&self, v: u8) {
        self.bytes[self.len.load(Ordering::SeqCst) - 1].store(v, Ordering::SeqCst);
    }

    fn ptr(&self) -> *const libc::c_char {
        // AtomicU8 has u8's layout: the kernel reads plain bytes.
        self.bytes.as_ptr().cast()
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Creates an empty regular file with mknod(2), which the agent does not trace, so that the
/// only events on these names are the operations under test.
fn mknod(p: &Path) {
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::mknod(c(p).as_ptr(), libc::S_IFREG | 0o644, 0) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn chdir(p: &Path) {
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::chdir(c(p).as_ptr()) };
    assert_eq!(
        r,
        0,
        "chdir {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Restores the process's working directory.
struct Cwd(PathBuf);

impl Drop for Cwd {
    fn drop(&mut self) {
        chdir(&self.0);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Unlink,
    Rename,
    Chmod,
    /// unlink of a relative name, in a working directory another thread changes with chdir.
    UnlinkInCwd,
}

const OPS: [Op; 4] = [Op::Unlink, Op::Rename, Op::Chmod, Op::UnlinkInCwd];

impl Op {
    fn kind(self) -> Kind {
        match self {
            Op::Unlink | Op::UnlinkInCwd => Kind::Unlink,
            Op::Rename => Kind::Rename,
            Op::Chmod => Kind::Chmod,
        }
    }

    fn tag(self) -> char {
        match self {
            Op::Unlink => 'u',
            Op::Rename => 'r',
            Op::Chmod => 'c',
            Op::UnlinkInCwd => 'w',
        }
    }

    /// The second thread's one change: the buffer's last byte, or the working directory.
    fn flip(self, dir: &Path, buf: &SharedPath) {
        match self {
            Op::UnlinkInCwd => chdir(&dir.join("wb")),
            _ => buf.set_last(b'b'),
        }
    }
}

/// Iteration `i` of `op` works on two files whose names differ in one byte: `<dir>/<tag><i>-a`
/// and `-b`, or `<dir>/wa/d<i>` and `<dir>/wb/d<i>`, the same name in two directories.
fn pair(dir: &Path, op: Op, i: u64) -> (PathBuf, PathBuf) {
    if op == Op::UnlinkInCwd {
        let name = format!("d{i:07}");
        return (dir.join("wa").join(&name), dir.join("wb").join(&name));
    }
    let stem = format!("{}{i:07}-", op.tag());
    (dir.join(format!("{stem}a")), dir.join(format!("{stem}b")))
}

/// The iteration of a reported path of `op`.
fn iteration_of(dir: &Path, op: Op, path: &str) -> Option<u64> {
    let rest = path.strip_prefix(&format!("{}/{}", dir.display(), op.tag()))?;
    let digits = if op == Op::UnlinkInCwd {
        rest.strip_prefix("a/d")
            .or_else(|| rest.strip_prefix("b/d"))?
    } else {
        rest
    };
    digits.get(..7)?.parse().ok()
}

/// Sets up iteration `i`: both files exist (mode 0644), the buffer and the working directory
/// name `a`.
fn prepare(dir: &Path, op: Op, i: u64, buf: &SharedPath) {
    let (a, b) = pair(dir, op, i);
    mknod(&a);
    mknod(&b);
    if op == Op::UnlinkInCwd {
        chdir(&dir.join("wa"));
        buf.set(Path::new(a.file_name().unwrap()));
    } else {
        buf.set(&a);
    }
}

/// Runs `op` on the path in `buf`.
fn run(dir: &Path, op: Op, i: u64, buf: &SharedPath) -> i32 {
    // SAFETY: `buf` holds a NUL-terminated path; the others are valid C strings.
    unsafe {
        match op {
            Op::Unlink | Op::UnlinkInCwd => libc::unlink(buf.ptr()),
            Op::Rename => {
                let to = c(&dir.join(format!("r{i:07}-dst")));
                libc::rename(buf.ptr(), to.as_ptr())
            }
            Op::Chmod => libc::chmod(buf.ptr(), 0o600),
        }
    }
}

/// Which of the pair the kernel acted on, from the file system.
fn truth(dir: &Path, op: Op, i: u64) -> PathBuf {
    let (a, b) = pair(dir, op, i);
    let acted = |p: &Path| match op {
        Op::Unlink | Op::UnlinkInCwd | Op::Rename => !p.exists(),
        Op::Chmod => std::fs::metadata(p).unwrap().permissions().mode() & 0o777 == 0o600,
    };
    match (acted(&a), acted(&b)) {
        (true, false) => a,
        (false, true) => b,
        other => panic!("{op:?} #{i}: acted on (a, b) = {other:?}"),
    }
}

/// The events of `op` on the pairs of `dir`, by iteration.
fn events_by_iteration(events: &[Event], dir: &Path, op: Op) -> HashMap<u64, FileInfo> {
    let mut out = HashMap::new();
    for e in events {
        if e.kind != op.kind() {
            continue;
        }
        let Some(f) = e.file() else { continue };
        let Some(i) = iteration_of(dir, op, &f.path) else {
            continue;
        };
        assert!(
            out.insert(i, f.clone()).is_none(),
            "two {op:?} events for #{i}"
        );
    }
    out
}

/// Waits until the agent has written the event of `op` for iteration `last`.
fn wait_for_iteration(agent: &Agent, dir: &Path, op: Op, last: u64) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = agent.events();
        if events_by_iteration(&events, dir, op).contains_key(&last) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no {op:?} event for #{last}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mismatches (the event names the file the kernel did not touch) each operation must see
/// before the test believes the race was run at all.
const MIN_MISMATCHES: usize = 10;
const MAX_ITERATIONS: u64 = 40_000;

/// A thread runs unlink, rename and chmod on a shared buffer naming file `a` while a second
/// thread rewrites the buffer to name `b`, once per call, after a delay that sweeps the whole
/// call; and unlink of a relative name while the second thread changes the working directory
/// from the one holding `a` to the one holding `b`. Whenever the event names the file the
/// kernel did not act on, it must say so. A normal call, with no second thread, is not flagged.
///
/// One rewrite per call is the attack: the name the kernel copies is the real target and the
/// name left in memory the decoy. A rewrite undone within the same call can go unseen (the
/// agent reads the buffer at entry and at exit only; docs/events.md says so), so the other
/// thread never rewrites twice in one call.
#[test]
fn a_path_rewritten_during_the_syscall_is_flagged() {
    let agent = Agent::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::create_dir(dir.join("wa")).unwrap();
    std::fs::create_dir(dir.join("wb")).unwrap();
    let _cwd = Cwd(std::env::current_dir().unwrap());
    let buf = SharedPath::new();

    // Unraced: the same buffer and calls, no second thread.
    let mut durations = Vec::new();
    for op in OPS {
        for i in 0..50 {
            prepare(&dir, op, i, &buf);
            let t = Instant::now();
            let r = run(&dir, op, i, &buf);
            durations.push(t.elapsed());
            assert_eq!(r, 0, "{op:?}: {}", std::io::Error::last_os_error());
        }
    }
    for op in OPS {
        let events = wait_for_iteration(&agent, &dir, op, 49);
        let by_i = events_by_iteration(&events, &dir, op);
        for i in 0..50 {
            let f = &by_i[&i];
            let (a, _) = pair(&dir, op, i);
            assert_eq!(f.path, a.to_string_lossy(), "{op:?} #{i}");
            assert!(
                !f.path_changed && !f.path_unverified,
                "an unraced {op:?} is flagged: {f:?}"
            );
        }
    }
    // The rewrite lands anywhere from before the call to after it: delays up to three times the
    // usual call (a calibration, not an assertion).
    durations.sort();
    let span = durations[durations.len() / 2] * 3 + Duration::from_micros(2);

    // Raced.
    let mut report = Vec::new();
    for op in OPS {
        let go = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let first = 1_000;
        let (mut checked, mut mismatches, mut flagged) = (0, 0, 0);
        std::thread::scope(|s| {
            // Stops the rewriting thread however this scope ends, a failed assertion included.
            let _stop = Stop(&go);
            // The rewriting thread: once `go` names a new iteration, waits a delay that steps
            // through [0, span), rewrites the last byte once and says so in `done`.
            s.spawn(|| {
                let mut seen = 0;
                let mut step: u32 = 0;
                loop {
                    let n = go.load(Ordering::SeqCst);
                    if n == STOP {
                        return;
                    }
                    if n == seen {
                        std::hint::spin_loop();
                        continue;
                    }
                    seen = n;
                    step = step.wrapping_add(1);
                    let delay = span * (step.wrapping_mul(37) % 64) / 64;
                    let t = Instant::now();
                    while t.elapsed() < delay {
                        std::hint::spin_loop();
                    }
                    op.flip(&dir, &buf);
                    done.store(n, Ordering::SeqCst);
                }
            });
            let mut i = first;
            let mut last = first;
            loop {
                prepare(&dir, op, i, &buf);
                go.store(i, Ordering::SeqCst);
                let r = run(&dir, op, i, &buf);
                assert_eq!(r, 0, "{op:?} #{i}: {}", std::io::Error::last_os_error());
                while done.load(Ordering::SeqCst) != i {
                    std::hint::spin_loop();
                }
                i += 1;
                if (i - first) % 500 != 0 {
                    continue;
                }
                // Check the batch just run against what the kernel did.
                let events = wait_for_iteration(&agent, &dir, op, i - 1);
                let by_i = events_by_iteration(&events, &dir, op);
                for n in last..i {
                    let f = by_i
                        .get(&n)
                        .unwrap_or_else(|| panic!("no {op:?} event for #{n}"));
                    let kernel = truth(&dir, op, n);
                    let (a, b) = pair(&dir, op, n);
                    assert!(
                        f.path == a.to_string_lossy() || f.path == b.to_string_lossy(),
                        "{f:?}"
                    );
                    assert!(!f.path_unverified, "{op:?} #{n}: {f:?}");
                    checked += 1;
                    flagged += usize::from(f.path_changed);
                    if f.path != kernel.to_string_lossy() {
                        mismatches += 1;
                        assert!(
                            f.path_changed,
                            "{op:?} #{n}: the kernel acted on {} but the event names {} and is not flagged: {f:?}",
                            kernel.display(),
                            f.path
                        );
                    }
                }
                last = i;
                if mismatches >= MIN_MISMATCHES || i - first >= MAX_ITERATIONS {
                    break;
                }
            }
        });
        report.push(format!(
            "{op:?}: {checked} calls, {mismatches} named the file the kernel did not touch (all flagged), {flagged} flagged"
        ));
        assert!(
            mismatches >= MIN_MISMATCHES,
            "{op:?}: only {mismatches} of {checked} events named the file the kernel did not touch; the race was not run (span {span:?})"
        );
    }
    eprintln!("{}", report.join("\n"));
}

const STOP: u64 = u64::MAX;

struct Stop<'a>(&'a AtomicU64);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(STOP, Ordering::SeqCst);
    }
}

/// An open of `<dir>/pg-fifo-a`, a FIFO, blocks once the kernel has copied the path and found
/// the FIFO; the buffer is then rewritten to name `<dir>/pg-fifo-b`, which does not exist, and
/// the open is interrupted by a signal. Returns the opening thread's id and the decoy.
fn interrupted_fifo_open(dir: &Path) -> (libc::pid_t, PathBuf) {
    extern "C" fn on_signal(_: libc::c_int) {}

    let fifo = dir.join("pg-fifo-a");
    let decoy = dir.join("pg-fifo-b");
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c(&fifo).as_ptr(), 0o600) }, 0);
    // No SA_RESTART: the signal ends the blocked open with EINTR.
    // SAFETY: installing a handler that does nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }

    let buf = Arc::new(SharedPath::new());
    buf.set(&fifo);
    let (tx, rx) = std::sync::mpsc::channel();
    let opener = {
        let buf = Arc::clone(&buf);
        std::thread::spawn(move || {
            // SAFETY: gettid and pthread_self have no preconditions.
            tx.send((unsafe { libc::gettid() }, unsafe { libc::pthread_self() }))
                .unwrap();
            // SAFETY: `buf` holds a NUL-terminated path.
            let fd = unsafe { libc::open(buf.ptr(), libc::O_WRONLY) };
            (fd, std::io::Error::last_os_error().raw_os_error())
        })
    };
    let (tid, thread) = rx.recv().unwrap();
    // Blocked in openat on the FIFO: the kernel has resolved the real name.
    let syscall = format!("/proc/self/task/{tid}/syscall");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&syscall)
        .unwrap_or_default()
        .starts_with(&format!("{} ", libc::SYS_openat))
    {
        assert!(Instant::now() < deadline, "the open never blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    buf.set_last(b'b');
    // SAFETY: the thread is alive (blocked in open) and SIGUSR1 has a handler.
    assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
    let (fd, errno) = opener.join().unwrap();
    assert_eq!((fd, errno), (-1, Some(libc::EINTR)));
    (tid, decoy)
}

/// A failed open reports the caller's buffer too (a successful one reports the kernel's own
/// file). The open interrupted after its path was rewritten names the decoy and is flagged.
#[test]
fn a_failed_open_whose_path_was_rewritten_is_flagged() {
    let agent = Agent::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let (tid, decoy) = interrupted_fifo_open(&dir);

    let ev = agent.wait_for("the interrupted open", |e| {
        e.kind == Kind::Open && e.tid == tid as u32
    });
    let f = ev.file().unwrap();
    assert_eq!(f.path, decoy.to_string_lossy(), "{f:?}");
    // The exit tracepoint sees -ERESTARTSYS (512); signal delivery turns it into EINTR.
    assert_eq!(f.result, -512);
    assert!(!f.resolved);
    assert!(f.path_changed, "the decoy is reported unflagged: {f:?}");
}

/// The standalone agent with its default rules reports the same open as a finding whose
/// description warns that the path it names may be the decoy.
#[test]
fn the_rewrite_is_a_finding_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let findings = dir.join("findings.jsonl");
    let args: Vec<String> = vec![
        "standalone".into(),
        "--output".into(),
        findings.to_string_lossy().into_owned(),
    ];
    let agent = Agent::start_with(&args, &[]);
    let (_, decoy) = interrupted_fifo_open(&dir);

    let decoy = decoy.to_string_lossy().into_owned();
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&findings).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(decoy.as_str())) {
            let f: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                f["type"], "DefenseEvasion:Runtime/SensitiveFileModified",
                "{f}"
            );
            let context = &f["service"]["runtimeDetails"]["context"];
            assert_eq!(context["filePath"], decoy.as_str(), "{f}");
            assert_eq!(context["fileOperation"], "Write", "{f}");
            let description = f["description"].as_str().unwrap();
            assert!(description.contains("may be the decoy"), "{description}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no finding naming {decoy}\nfindings:\n{text}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
