//! SHA-256 of executables, computed in the background and cached by file identity (device,
//! inode, mtime), so that an exec storm of one binary hashes it once.
//!
//! Nothing here waits on a file: [`HashCache::lookup`] answers from the cache or queues a job
//! and returns at once (the exec event goes on with `sha256: null` and the process's later
//! events carry the hash). Jobs run on a few dedicated threads that nobody joins, so a read
//! stuck in the kernel (a hung network or FUSE mount) costs one thread and never stalls
//! enrichment or shutdown. The queue is bounded; a job that does not fit is dropped and counted.
//!
//! The file an attacker controls is opened without side effects and only hashed if it is the
//! regular file the kernel ran: it is first opened `O_PATH | O_NOFOLLOW` (no open of a device
//! node or FIFO ever happens; a symlink is seen as itself), `fstat`ed and checked against the
//! exec's identity, then reopened through `/proc/self/fd` with `O_RDONLY | O_NONBLOCK`, which
//! names that very inode.

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::Read,
    num::NonZeroUsize,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
};

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::decode::RawExec;

/// Identity of an executable file's contents, for the hash cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExeId {
    pub dev: u32,
    pub ino: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
}

impl ExeId {
    /// The executable an exec event reports (the kernel's `mm->exe_file`).
    pub fn of_exec(x: &RawExec) -> ExeId {
        ExeId {
            dev: x.exe_dev,
            ino: x.exe_ino,
            mtime_sec: x.exe_mtime_sec,
            mtime_nsec: x.exe_mtime_nsec,
        }
    }
}

/// The identity of the file `m` describes, in the kernel's encoding.
pub fn exe_id_of(m: &std::fs::Metadata) -> ExeId {
    ExeId {
        dev: kernel_dev(m.dev()),
        ino: m.ino(),
        mtime_sec: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
    }
}

/// The kernel's `dev_t` encoding (major << 20 | minor) of a userspace `st_dev`.
fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

/// Hashes run on at most this many threads, so a burst of new binaries cannot monopolise the
/// node's CPUs.
pub const HASH_THREADS: usize = 2;
/// Jobs waiting for a hash thread; beyond this a job is dropped (and counted).
pub const HASH_QUEUE: usize = 256;

/// Why an executable got no hash. Each is counted (`peregrine_exe_hash_skipped_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[repr(usize)]
pub enum Skip {
    /// Every path tried was gone or could not be opened or read.
    #[error("unreadable")]
    Unreadable = 0,
    /// The path named something other than a regular file: a FIFO, a directory, a device node,
    /// a socket or a symlink (an attacker swapped it after the exec).
    #[error("not a regular file")]
    NotRegular = 1,
    /// A regular file, but not the one the kernel ran (other inode or mtime).
    #[error("another file than the one executed")]
    Replaced = 2,
    /// Larger than the configured cap.
    #[error("larger than the size cap")]
    TooLarge = 3,
    /// The job queue was full: dropped without trying.
    #[error("hash queue full")]
    QueueFull = 4,
}

impl Skip {
    pub const ALL: [Skip; 5] = [
        Skip::Unreadable,
        Skip::NotRegular,
        Skip::Replaced,
        Skip::TooLarge,
        Skip::QueueFull,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Skip::Unreadable => "unreadable",
            Skip::NotRegular => "not_regular",
            Skip::Replaced => "replaced",
            Skip::TooLarge => "too_large",
            Skip::QueueFull => "queue_full",
        }
    }
}

/// Cheap to clone; clones share the cache and its threads.
#[derive(Clone)]
pub struct HashCache {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    jobs: SyncSender<Job>,
    /// Kept so that the queue stays open even if no thread could start (jobs then wait and,
    /// once it is full, are dropped and counted like any other overflow).
    _queue: Arc<Mutex<Receiver<Job>>>,
    proc_root: PathBuf,
    capacity: usize,
    skipped: [AtomicU64; Skip::ALL.len()],
}

struct State {
    done: LruCache<ExeId, Arc<str>>,
    /// Queued or running; at most `HASH_QUEUE + HASH_THREADS` entries.
    inflight: HashSet<ExeId>,
}

struct Job {
    id: ExeId,
    /// Paths to try in order, and whether the last component may be a (magic) link to follow.
    candidates: Vec<(PathBuf, Follow)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follow {
    /// `/proc/<pid>/exe`: a magic link to the very file the process runs.
    MagicLink,
    /// A path an attacker may have changed since the exec: never follow its last component.
    No,
}

impl HashCache {
    pub fn new(capacity: usize, max_bytes: u64) -> Self {
        Self::with_limits(capacity, max_bytes, HASH_THREADS, HASH_QUEUE)
    }

    /// `threads` hashing threads and room for `queue` waiting jobs.
    pub fn with_limits(capacity: usize, max_bytes: u64, threads: usize, queue: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        let (tx, rx) = sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                done: LruCache::new(cap),
                inflight: HashSet::new(),
            }),
            jobs: tx,
            _queue: rx.clone(),
            proc_root: PathBuf::from("/proc"),
            capacity: cap.get(),
            skipped: Default::default(),
        });
        for i in 0..threads {
            let (rx, weak) = (rx.clone(), Arc::downgrade(&shared));
            // Detached: shutdown never waits for a read stuck in the kernel. The threads end
            // when the last clone of the cache is dropped (the queue closes).
            if let Err(e) = std::thread::Builder::new()
                .name(format!("exe-hash-{i}"))
                .spawn(move || worker(&rx, &weak, max_bytes))
            {
                tracing::warn!(error = %e, "cannot start an executable-hashing thread");
            }
        }
        HashCache { shared }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state()
    }

    pub fn len(&self) -> usize {
        self.state().done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Jobs queued or running.
    pub fn in_flight(&self) -> usize {
        self.state().inflight.len()
    }

    /// How many executables got no hash, by reason, since start.
    pub fn skipped(&self) -> [(Skip, u64); Skip::ALL.len()] {
        Skip::ALL.map(|s| (s, self.shared.skipped[s as usize].load(Ordering::Relaxed)))
    }

    /// The hash if it is already known; never waits.
    pub fn cached(&self, id: ExeId) -> Option<Arc<str>> {
        self.state().done.get(&id).cloned()
    }

    /// The hash of the executable `id` that process `pid` runs as `exe` if it is known;
    /// otherwise queues it (unless already queued) and returns `None` at once. Never waits.
    ///
    /// `/proc/<pid>/exe` is the very file the process runs. A short-lived process is often gone
    /// by the time the job runs, so the same path is then tried inside the root of `peer` (a
    /// live process in the same mount namespace), or on the host when `on_host`, each checked
    /// against the identity the kernel reported.
    pub fn lookup(
        &self,
        id: ExeId,
        pid: u32,
        exe: &str,
        peer: Option<u32>,
        on_host: bool,
    ) -> Option<Arc<str>> {
        let mut st = self.state();
        if let Some(h) = st.done.get(&id) {
            return Some(h.clone());
        }
        if st.inflight.contains(&id) {
            return None;
        }
        let job = Job {
            id,
            candidates: self.candidates(pid, exe, peer, on_host),
        };
        match self.shared.jobs.try_send(job) {
            Ok(()) => {
                st.inflight.insert(id);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.count(Skip::QueueFull);
            }
        }
        None
    }

    fn candidates(
        &self,
        pid: u32,
        exe: &str,
        peer: Option<u32>,
        on_host: bool,
    ) -> Vec<(PathBuf, Follow)> {
        let root = &self.shared.proc_root;
        let rel = exe.trim_start_matches('/');
        let mut c = vec![
            (root.join(format!("{pid}/exe")), Follow::MagicLink),
            (root.join(format!("{pid}/root")).join(rel), Follow::No),
        ];
        if let Some(peer) = peer.filter(|p| *p != pid) {
            c.push((root.join(format!("{peer}/root")).join(rel), Follow::No));
        }
        if on_host && exe.starts_with('/') {
            c.push((PathBuf::from(exe), Follow::No));
        }
        c
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, why: Skip) {
        self.skipped[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, shared: &Weak<Shared>, max_bytes: u64) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result = hash_candidates(&job, max_bytes);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(why) = &result {
            shared.count(*why);
        }
        let mut st = shared.state();
        st.inflight.remove(&job.id);
        if let Ok(h) = result {
            st.done.put(job.id, Arc::from(h));
        }
    }
}

/// The first candidate that hashes; otherwise the most telling reason any of them failed.
fn hash_candidates(job: &Job, max: u64) -> Result<String, Skip> {
    let mut why = Skip::Unreadable;
    for (path, follow) in &job.candidates {
        match hash_file(path, *follow, Some(job.id), max) {
            Ok(h) => return Ok(h),
            Err(Skip::Unreadable) => {}
            Err(e) if why == Skip::Unreadable || e == Skip::NotRegular => why = e,
            Err(_) => {}
        }
    }
    Err(why)
}

/// Whether `got` may be the file `want` names. overlayfs may report another st_dev/st_ino
/// than its inode's; mtime is faithful there.
fn same_file(got: ExeId, want: ExeId) -> bool {
    (got.mtime_sec, got.mtime_nsec) == (want.mtime_sec, want.mtime_nsec)
        && !(got.dev == want.dev && got.ino != want.ino)
}

/// Hashes `path` if it is a regular file (and, with `expect`, the one the kernel ran) of at
/// most `max` bytes. Never blocks on a FIFO or device and never opens one for reading.
fn hash_file(path: &Path, follow: Follow, expect: Option<ExeId>, max: u64) -> Result<String, Skip> {
    // O_PATH: a lookup, not an open of the file itself (no FIFO or device open, no side
    // effects). O_NOFOLLOW with O_PATH yields the symlink itself, rejected below.
    let mut o = OpenOptions::new();
    o.read(true);
    let nofollow = match follow {
        Follow::MagicLink => 0,
        Follow::No => libc::O_NOFOLLOW,
    };
    o.custom_flags(libc::O_PATH | libc::O_CLOEXEC | nofollow);
    let handle = o.open(path).map_err(|_| Skip::Unreadable)?;
    let meta = handle.metadata().map_err(|_| Skip::Unreadable)?;
    check(&meta, expect, max)?;
    // Reopen that very inode for reading through its descriptor. O_NONBLOCK (and the check
    // again on the new descriptor) so that nothing but this regular file is ever read.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&handle);
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{fd}"))
        .map_err(|_| Skip::Unreadable)?;
    let meta2 = f.metadata().map_err(|_| Skip::Unreadable)?;
    check(&meta2, expect, max)?;
    if (meta2.dev(), meta2.ino()) != (meta.dev(), meta.ino()) {
        return Err(Skip::Replaced);
    }
    drop(handle);
    read_hash(&mut f, max)
}

fn check(meta: &std::fs::Metadata, expect: Option<ExeId>, max: u64) -> Result<(), Skip> {
    // Only a regular file: a FIFO, device node, socket, directory or symlink is refused.
    if !meta.file_type().is_file() {
        return Err(Skip::NotRegular);
    }
    if meta.len() > max {
        return Err(Skip::TooLarge);
    }
    match expect {
        Some(want) if !same_file(exe_id_of(meta), want) => Err(Skip::Replaced),
        _ => Ok(()),
    }
}

/// SHA-256 of what `f` holds, reading at most `max` bytes (the file may grow while read).
fn read_hash(f: &mut File, max: u64) -> Result<String, Skip> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Skip::Unreadable),
        };
        total += n as u64;
        if total > max {
            return Err(Skip::TooLarge);
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write, time::Duration};

    /// A small running executable (this test binary is hundreds of MB in debug builds).
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start() -> (Sleeper, PathBuf, ExeId) {
            let child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap();
            // spawn returns once exec has succeeded, so the link already names the binary.
            let link = format!("/proc/{}/exe", child.id());
            let exe = std::fs::read_link(&link).unwrap();
            assert_eq!(exe.file_name().unwrap(), "sleep");
            let id = exe_id_of(&std::fs::metadata(&link).unwrap());
            (Sleeper(child), exe, id)
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Asks until the background job has answered (or failed), for at most 30 s.
    fn settle(c: &HashCache, id: ExeId) -> Option<Arc<str>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.in_flight() > 0 {
            assert!(std::time::Instant::now() < deadline, "hash job never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        c.cached(id)
    }

    #[test]
    fn hashes_a_running_executable_in_the_background_once() {
        let (sleeper, exe, id) = Sleeper::start();
        let c = HashCache::new(4, 1 << 30);
        // The first ask never waits: it queues the job.
        assert!(
            c.lookup(id, sleeper.pid(), "/ignored", None, false)
                .is_none()
        );
        let h = settle(&c, id).unwrap();
        let want = hex::encode(Sha256::digest(std::fs::read(&exe).unwrap()));
        assert_eq!(&*h, want);
        assert_eq!(c.len(), 1);
        // Cached: a pid that does not exist still gets the answer, at once.
        assert_eq!(
            c.lookup(id, u32::MAX, "/nope", None, false).as_deref(),
            Some(want.as_str())
        );
        assert!(c.skipped().iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn falls_back_to_the_path_when_the_process_is_gone() {
        let (_sleeper, exe, id) = Sleeper::start();
        let exe = exe.to_str().unwrap();
        let c = HashCache::new(4, 1 << 30);
        // No such pid, and no peer: only the host path can answer.
        assert!(c.lookup(id, u32::MAX, exe, None, false).is_none());
        assert!(settle(&c, id).is_none());
        assert_eq!(c.skipped()[Skip::Unreadable as usize].1, 1);
        assert!(c.lookup(id, u32::MAX, exe, None, true).is_none());
        let h = settle(&c, id).unwrap();
        assert_eq!(h.len(), 64);
        // A live peer in the same mount namespace works too.
        let c = HashCache::new(4, 1 << 30);
        c.lookup(id, u32::MAX, exe, Some(std::process::id()), false);
        assert_eq!(settle(&c, id).unwrap(), h);
    }

    #[test]
    fn refuses_a_file_whose_identity_changed_and_oversized_files() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"hello").unwrap();
        let id = exe_id_of(&f.as_file().metadata().unwrap());
        assert!(hash_file(f.path(), Follow::No, Some(id), 1024).is_ok());
        let stale = ExeId {
            mtime_sec: id.mtime_sec - 10,
            ..id
        };
        assert_eq!(
            hash_file(f.path(), Follow::No, Some(stale), 1024),
            Err(Skip::Replaced)
        );
        let other = ExeId {
            ino: id.ino + 1,
            ..id
        };
        assert_eq!(
            hash_file(f.path(), Follow::No, Some(other), 1024),
            Err(Skip::Replaced)
        );
        assert_eq!(
            hash_file(f.path(), Follow::No, None, 2),
            Err(Skip::TooLarge)
        );
    }

    /// Runs `hash_file` on a thread and fails loudly if it has not returned within 10 s
    /// (the thread is then left blocked: that is the bug this guards against).
    fn hash_or_hang(path: &Path) -> Result<String, Skip> {
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(hash_file(&p, Follow::No, None, 1 << 30));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("hashing {} blocked", path.display()))
    }

    fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
        assert_eq!(
            rc,
            0,
            "mknod {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }

    /// What an attacker can leave at an executable's path once it has run: none is hashed,
    /// none blocks (a FIFO without a writer blocks a plain open; a device like /dev/zero never
    /// ends a read), and each is counted as `not_regular`.
    #[test]
    fn fifo_directory_device_and_symlink_are_not_hashed_and_do_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mknod(&fifo, libc::S_IFIFO | 0o755, 0);
        let sub = dir.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        // A character device like /dev/zero (1, 5): endless, and it reports size 0.
        let zero = dir.path().join("zero");
        mknod(&zero, libc::S_IFCHR | 0o755, libc::makedev(1, 5));
        // A symlink to a regular file is refused too: the path is the attacker's to change.
        let target = dir.path().join("target");
        std::fs::write(&target, b"#!/bin/true\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // And a symlink to the FIFO.
        let link_fifo = dir.path().join("link-fifo");
        std::os::unix::fs::symlink(&fifo, &link_fifo).unwrap();

        for p in [&fifo, &sub, &zero, &link, &link_fifo] {
            assert_eq!(hash_or_hang(p), Err(Skip::NotRegular), "{}", p.display());
        }
        assert!(hash_or_hang(&target).is_ok());

        // Through the cache: the jobs end, nothing is cached, each is counted.
        let c = HashCache::new(16, 1 << 30);
        for (i, p) in [&fifo, &sub, &zero, &link].into_iter().enumerate() {
            let id = ExeId {
                dev: 0,
                ino: i as u64,
                mtime_sec: 0,
                mtime_nsec: 0,
            };
            assert!(
                c.lookup(id, u32::MAX, p.to_str().unwrap(), None, true)
                    .is_none()
            );
            assert!(settle(&c, id).is_none());
        }
        assert_eq!(c.skipped()[Skip::NotRegular as usize].1, 4);
        assert!(c.is_empty());
    }

    /// With no thread free (none at all here) the queue fills; the next job is dropped and
    /// counted, and asking never blocks.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let c = HashCache::with_limits(16, 1 << 30, 0, 2);
        let id = |ino| ExeId {
            dev: 1,
            ino,
            mtime_sec: 0,
            mtime_nsec: 0,
        };
        for ino in 0..5 {
            assert!(
                c.lookup(id(ino), u32::MAX, "/bin/true", None, true)
                    .is_none()
            );
        }
        // Asking again for a queued one does not queue it twice.
        assert!(c.lookup(id(0), u32::MAX, "/bin/true", None, true).is_none());
        assert_eq!(c.in_flight(), 2);
        assert_eq!(c.skipped()[Skip::QueueFull as usize].1, 3);
    }
}
