//! SHA-256 of executables, computed on first need and cached by file identity
//! (device, inode, mtime), so that an exec storm of one binary hashes it once.

use std::{
    collections::HashMap,
    fs::File,
    io::Read,
    num::NonZeroUsize,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};

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
    use std::os::unix::fs::MetadataExt;
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

/// Hashes run in the background on at most this many threads, so a burst of new binaries
/// cannot monopolise the node's CPUs.
const HASH_THREADS: usize = 2;

type Answer = Option<Option<Arc<str>>>;

/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct HashCache {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    max_bytes: u64,
    wait: Duration,
    proc_root: PathBuf,
    permits: Semaphore,
    capacity: usize,
}

struct State {
    done: LruCache<ExeId, Arc<str>>,
    inflight: HashMap<ExeId, watch::Receiver<Answer>>,
}

impl HashCache {
    /// `wait` bounds how long an exec event waits for its hash; a slower hash still completes
    /// and is picked up by the process's later events.
    pub fn new(capacity: usize, max_bytes: u64, wait: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        HashCache {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    done: LruCache::new(cap),
                    inflight: HashMap::new(),
                }),
                max_bytes,
                wait,
                proc_root: PathBuf::from("/proc"),
                permits: Semaphore::new(HASH_THREADS),
                capacity: cap.get(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// The hash if it is already known; never waits.
    pub fn cached(&self, id: ExeId) -> Option<Arc<str>> {
        self.state().done.get(&id).cloned()
    }

    /// The hash of the executable `id` that process `pid` runs as `exe`, waiting at most the
    /// configured budget. `None` when the file is gone, too large, or still being hashed.
    ///
    /// `/proc/<pid>/exe` is the very file the process runs. A short-lived process is often gone
    /// by now, so the same path is then tried inside the root of `peer` (a live process in the
    /// same mount namespace), or on the host when `on_host`, each checked against the identity
    /// the kernel reported.
    pub async fn get(
        &self,
        id: ExeId,
        pid: u32,
        exe: &str,
        peer: Option<u32>,
        on_host: bool,
    ) -> Option<Arc<str>> {
        let mut rx = {
            let mut st = self.state();
            if let Some(h) = st.done.get(&id) {
                return Some(h.clone());
            }
            match st.inflight.get(&id) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    st.inflight.insert(id, rx.clone());
                    self.start(id, self.candidates(pid, exe, peer, on_host), tx);
                    rx
                }
            }
        };
        match tokio::time::timeout(self.shared.wait, rx.wait_for(Option::is_some)).await {
            Ok(Ok(answer)) => answer.clone().flatten(),
            _ => None,
        }
    }

    fn candidates(
        &self,
        pid: u32,
        exe: &str,
        peer: Option<u32>,
        on_host: bool,
    ) -> Vec<(PathBuf, bool)> {
        let root = &self.shared.proc_root;
        let rel = exe.trim_start_matches('/');
        let mut c = vec![
            (root.join(format!("{pid}/exe")), false),
            (root.join(format!("{pid}/root")).join(rel), true),
        ];
        if let Some(peer) = peer.filter(|p| *p != pid) {
            c.push((root.join(format!("{peer}/root")).join(rel), true));
        }
        if on_host && exe.starts_with('/') {
            c.push((PathBuf::from(exe), true));
        }
        c
    }

    fn start(&self, id: ExeId, candidates: Vec<(PathBuf, bool)>, tx: watch::Sender<Answer>) {
        let me = self.clone();
        tokio::spawn(async move {
            let max = me.shared.max_bytes;
            let hash = match me.shared.permits.acquire().await {
                Ok(_permit) => tokio::task::spawn_blocking(move || {
                    candidates
                        .into_iter()
                        .find_map(|(path, verify)| hash_file(&path, verify.then_some(id), max))
                })
                .await
                .ok()
                .flatten()
                .map(Arc::<str>::from),
                Err(_) => None,
            };
            let mut st = me.state();
            st.inflight.remove(&id);
            if let Some(h) = &hash {
                st.done.put(id, h.clone());
            }
            drop(st);
            let _ = tx.send(Some(hash));
        });
    }
}

fn hash_file(path: &std::path::Path, expect: Option<ExeId>, max: u64) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    if meta.len() > max {
        return None;
    }
    if let Some(want) = expect {
        let got = exe_id_of(&meta);
        // overlayfs may report another st_dev/st_ino than its inode's; mtime is faithful there.
        if (got.mtime_sec, got.mtime_nsec) != (want.mtime_sec, want.mtime_nsec)
            || (got.dev == want.dev && got.ino != want.ino)
        {
            return None;
        }
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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

    #[tokio::test]
    async fn hashes_a_running_executable_once() {
        let (sleeper, exe, id) = Sleeper::start();
        let c = HashCache::new(4, 1 << 30, Duration::from_secs(10));
        let h = c
            .get(id, sleeper.pid(), "/ignored", None, false)
            .await
            .unwrap();
        let want = hex::encode(Sha256::digest(std::fs::read(&exe).unwrap()));
        assert_eq!(&*h, want);
        assert_eq!(c.len(), 1);
        // Cached: a pid that does not exist still gets the answer.
        assert_eq!(
            c.get(id, u32::MAX, "/nope", None, false).await.as_deref(),
            Some(want.as_str())
        );
    }

    #[tokio::test]
    async fn falls_back_to_the_path_when_the_process_is_gone() {
        let (_sleeper, exe, id) = Sleeper::start();
        let exe = exe.to_str().unwrap();
        let c = HashCache::new(4, 1 << 30, Duration::from_secs(10));
        // No such pid, and no peer: only the host path can answer.
        assert!(c.get(id, u32::MAX, exe, None, false).await.is_none());
        let h = c.get(id, u32::MAX, exe, None, true).await.unwrap();
        assert_eq!(h.len(), 64);
        // A live peer in the same mount namespace works too.
        let c = HashCache::new(4, 1 << 30, Duration::from_secs(10));
        let h2 = c
            .get(id, u32::MAX, exe, Some(std::process::id()), false)
            .await
            .unwrap();
        assert_eq!(h, h2);
    }

    #[test]
    fn refuses_a_file_whose_identity_changed_and_oversized_files() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"hello").unwrap();
        let id = exe_id_of(&f.as_file().metadata().unwrap());
        assert!(hash_file(f.path(), Some(id), 1024).is_some());
        let stale = ExeId {
            mtime_sec: id.mtime_sec - 10,
            ..id
        };
        assert!(hash_file(f.path(), Some(stale), 1024).is_none());
        assert!(hash_file(f.path(), None, 2).is_none());
    }
}
