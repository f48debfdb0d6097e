//! SHA-256 of executables, computed on first need and cached by file identity
//! (device, inode, mtime), so that an exec storm of one binary hashes it once.

use std::{
    fs::File,
    io::Read,
    num::NonZeroUsize,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::proctable::{ExeId, exe_id_of};

pub struct HashCache {
    map: LruCache<ExeId, Arc<str>>,
    max_bytes: u64,
    deadline: Duration,
    proc_root: PathBuf,
}

impl HashCache {
    pub fn new(capacity: usize, max_bytes: u64, deadline: Duration) -> Self {
        HashCache {
            map: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            max_bytes,
            deadline,
            proc_root: PathBuf::from("/proc"),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The hash of the executable `id` that process `pid` runs as `exe`. `None` when the file is
    /// gone, too large, or hashing overran the deadline.
    ///
    /// `/proc/<pid>/exe` is the very file the process runs. A short-lived process is often gone
    /// by now, so the same path is then tried inside the root of `peer` (a live process in the
    /// same mount namespace), or on the host when `on_host`, each checked against the identity
    /// the kernel reported.
    pub async fn get(&mut self, id: ExeId, pid: u32, exe: &str, peer: Option<u32>, on_host: bool) -> Option<Arc<str>> {
        if let Some(h) = self.map.get(&id) {
            return Some(h.clone());
        }
        let rel = exe.trim_start_matches('/');
        let mut candidates = vec![
            (self.proc_root.join(format!("{pid}/exe")), false),
            (self.proc_root.join(format!("{pid}/root")).join(rel), true),
        ];
        if let Some(peer) = peer.filter(|p| *p != pid) {
            candidates.push((self.proc_root.join(format!("{peer}/root")).join(rel), true));
        }
        if on_host && exe.starts_with('/') {
            candidates.push((PathBuf::from(exe), true));
        }
        let max = self.max_bytes;
        let job = tokio::task::spawn_blocking(move || {
            candidates.into_iter().find_map(|(path, verify)| hash_file(&path, verify.then_some(id), max))
        });
        let hash: Arc<str> = match tokio::time::timeout(self.deadline, job).await {
            Ok(Ok(Some(h))) => h.into(),
            _ => return None,
        };
        self.map.put(id, hash.clone());
        Some(hash)
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

    #[tokio::test]
    async fn hashes_our_own_executable_once() {
        let me = std::process::id();
        let meta = std::fs::metadata("/proc/self/exe").unwrap();
        let id = exe_id_of(&meta);
        let mut c = HashCache::new(4, 1 << 30, Duration::from_secs(10));
        let h = c.get(id, me, "/ignored", None, false).await.unwrap();
        let want = hex::encode(Sha256::digest(std::fs::read("/proc/self/exe").unwrap()));
        assert_eq!(&*h, want);
        assert_eq!(c.len(), 1);
        // Cached: a pid that does not exist still gets the answer.
        assert_eq!(c.get(id, u32::MAX, "/nope", None, false).await.as_deref(), Some(want.as_str()));
    }

    #[tokio::test]
    async fn falls_back_to_the_path_when_the_process_is_gone() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let id = exe_id_of(&std::fs::metadata(&exe).unwrap());
        let mut c = HashCache::new(4, 1 << 30, Duration::from_secs(10));
        // No such pid, and no peer: only the host path can answer.
        assert!(c.get(id, u32::MAX, exe.to_str().unwrap(), None, false).await.is_none());
        let h = c.get(id, u32::MAX, exe.to_str().unwrap(), None, true).await.unwrap();
        assert_eq!(h.len(), 64);
        // A live peer in the same mount namespace works too.
        let mut c = HashCache::new(4, 1 << 30, Duration::from_secs(10));
        let h2 = c.get(id, u32::MAX, exe.to_str().unwrap(), Some(std::process::id()), false).await.unwrap();
        assert_eq!(h, h2);
    }

    #[test]
    fn refuses_a_file_whose_identity_changed_and_oversized_files() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"hello").unwrap();
        let id = exe_id_of(&f.as_file().metadata().unwrap());
        assert!(hash_file(f.path(), Some(id), 1024).is_some());
        let stale = ExeId { mtime_sec: id.mtime_sec - 10, ..id };
        assert!(hash_file(f.path(), Some(stale), 1024).is_none());
        assert!(hash_file(f.path(), None, 2).is_none());
    }
}
