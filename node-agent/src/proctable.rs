//! The process table: who every event's process is, and its ancestors.
//!
//! Seeded from `/proc` at start, then kept current from fork, exec and exit events. A process
//! is keyed by (tgid, start time in clock ticks), the pair `/proc/<pid>/stat` also exposes, so
//! a reused pid is a different process. Its uuid hashes the boot id into that key, so it is
//! stable across agent restarts on the same boot and unique across nodes.
//! The table is bounded by count (least recently used goes first); exited processes stay a
//! while so that their children's lineage still resolves.

use std::{
    fs,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;
use node_agent_common::EventHeader;
use peregrine_event::{Ancestor, Process, Timestamp};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::decode::{RawExec, comm};

/// Converts kernel boot-time nanoseconds to wall-clock time and to `/proc` clock ticks.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, in ns.
    offset_ns: i64,
    ns_per_tick: u64,
}

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl Clock {
    pub fn now() -> Self {
        // SAFETY: sysconf has no memory effects.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let tck = if tck > 0 { tck as u64 } else { 100 };
        Clock {
            offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME),
            ns_per_tick: 1_000_000_000 / tck,
        }
    }

    /// Follows wall-clock adjustments (NTP steps).
    pub fn refresh(&mut self) {
        *self = Clock::now();
    }

    pub fn wall(&self, boot_ns: u64) -> Timestamp {
        Timestamp::from_unix_nanos(self.offset_ns.saturating_add(boot_ns as i64))
    }

    pub fn ticks(&self, boot_ns: u64) -> u64 {
        boot_ns / self.ns_per_tick
    }

    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ticks * self.ns_per_tick
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcKey {
    pub tgid: u32,
    pub start_ticks: u64,
}

/// Identity of an executable file's contents, for the hash cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExeId {
    pub dev: u32,
    pub ino: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
}

#[derive(Clone, Debug)]
pub struct ProcEntry {
    pub key: ProcKey,
    pub uuid: Uuid,
    pub parent: Option<ProcKey>,
    pub parent_uuid: Uuid,
    pub ppid: u32,
    pub start_ns: u64,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: String,
    pub argv: Arc<[String]>,
    pub argv_truncated: bool,
    pub cwd: String,
    pub exe_id: Option<ExeId>,
    pub sha256: Option<Arc<str>>,
    pub ld_preload: Option<String>,
    pub ld_library_path: Option<String>,
    pub cgroup_id: u64,
    pub mnt_ns: u32,
    pub exited_at: Option<Instant>,
    /// The event model's view of this process, valid while the table's generation is unchanged.
    snapshot: Option<(u64, Arc<Process>)>,
}

pub struct ProcessTable {
    map: LruCache<ProcKey, ProcEntry>,
    boot_id: [u8; 16],
    pub clock: Clock,
    lineage_depth: usize,
    exited_ttl: Duration,
    proc_root: PathBuf,
    /// Bumped by anything that can change a process's snapshot or an ancestor's lineage entry
    /// (exec, comm or credential changes, reparenting, eviction); snapshots from an older
    /// generation are rebuilt. Between such changes, every event shares one snapshot.
    generation: u64,
}

/// Reads the boot id, which makes process uuids unique across boots and nodes.
pub fn boot_id() -> [u8; 16] {
    let s = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    Uuid::parse_str(s.trim())
        .map(|u| *u.as_bytes())
        .unwrap_or([0; 16])
}

impl ProcessTable {
    pub fn new(capacity: usize, lineage_depth: usize) -> Self {
        Self::with_proc_root(capacity, lineage_depth, PathBuf::from("/proc"))
    }

    pub fn with_proc_root(capacity: usize, lineage_depth: usize, proc_root: PathBuf) -> Self {
        ProcessTable {
            map: LruCache::new(NonZeroUsize::new(capacity.max(16)).unwrap_or(NonZeroUsize::MIN)),
            boot_id: boot_id(),
            clock: Clock::now(),
            lineage_depth,
            exited_ttl: Duration::from_secs(300),
            proc_root,
            generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.map.cap().get()
    }

    pub fn uuid(&self, key: ProcKey) -> Uuid {
        let mut h = Sha256::new();
        h.update(self.boot_id);
        h.update(key.tgid.to_le_bytes());
        h.update(key.start_ticks.to_le_bytes());
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        uuid::Builder::from_custom_bytes(b).into_uuid()
    }

    pub fn key(&self, tgid: u32, start_boottime_ns: u64) -> ProcKey {
        ProcKey {
            tgid,
            start_ticks: self.clock.ticks(start_boottime_ns),
        }
    }

    /// Loads every process in `/proc`. Returns how many were added.
    pub fn seed(&mut self) -> usize {
        let Ok(dir) = fs::read_dir(&self.proc_root) else {
            return 0;
        };
        let mut added = 0;
        for ent in dir.flatten() {
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(e) = self.read_proc(pid) {
                self.map.put(e.key, e);
                added += 1;
            }
        }
        added
    }

    /// Builds an entry from `/proc/<pid>`; `None` if the process is gone.
    fn read_proc(&self, pid: u32) -> Option<ProcEntry> {
        let dir = self.proc_root.join(pid.to_string());
        let stat = ProcStat::read(&dir)?;
        let key = ProcKey {
            tgid: pid,
            start_ticks: stat.start_ticks,
        };
        let parent = ProcStat::read(&self.proc_root.join(stat.ppid.to_string())).map(|p| ProcKey {
            tgid: stat.ppid,
            start_ticks: p.start_ticks,
        });
        let (uid, euid) = status_ids(&dir, "Uid:").unwrap_or((0, 0));
        let (gid, _) = status_ids(&dir, "Gid:").unwrap_or((0, 0));
        let root = readlink(&dir.join("root"));
        let in_root = |p: String| strip_root(&root, p);
        let argv: Vec<String> = fs::read(dir.join("cmdline"))
            .map(|b| {
                let b = b.strip_suffix(b"\0").unwrap_or(&b).to_vec();
                if b.is_empty() {
                    Vec::new()
                } else {
                    b.split(|&c| c == 0)
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                }
            })
            .unwrap_or_default();
        let exe_id = fs::metadata(dir.join("exe")).ok().map(|m| exe_id_of(&m));
        Some(ProcEntry {
            key,
            uuid: self.uuid(key),
            parent,
            parent_uuid: parent.map(|p| self.uuid(p)).unwrap_or_default(),
            ppid: stat.ppid,
            start_ns: self.clock.ticks_to_ns(stat.start_ticks),
            uid,
            euid,
            gid,
            comm: stat.comm,
            exe: in_root(readlink(&dir.join("exe"))),
            argv: argv.into(),
            argv_truncated: false,
            cwd: in_root(readlink(&dir.join("cwd"))),
            exe_id,
            sha256: None,
            ld_preload: None,
            ld_library_path: None,
            cgroup_id: 0,
            mnt_ns: ns_inode(&dir.join("ns/mnt")),
            exited_at: None,
            snapshot: None,
        })
    }

    /// Finds or creates the entry for the process in `h`, refreshing what every event tells us
    /// (credentials change with setuid, comm with prctl).
    pub fn observe(&mut self, h: &EventHeader) -> ProcKey {
        let key = self.key(h.tgid, h.start_boottime_ns);
        let parent = self.key(h.ppid, h.parent_start_boottime_ns);
        if !self.map.contains(&key) {
            let e = self
                .read_proc(h.tgid)
                .filter(|e| e.key == key)
                .unwrap_or_else(|| ProcEntry {
                    key,
                    uuid: self.uuid(key),
                    parent: Some(parent),
                    parent_uuid: self.uuid(parent),
                    ppid: h.ppid,
                    start_ns: h.start_boottime_ns,
                    uid: h.uid,
                    euid: h.euid,
                    gid: h.gid,
                    comm: comm(h),
                    exe: String::new(),
                    argv: Arc::from(Vec::new()),
                    argv_truncated: false,
                    cwd: String::new(),
                    exe_id: None,
                    sha256: None,
                    ld_preload: None,
                    ld_library_path: None,
                    cgroup_id: h.cgroup_id,
                    mnt_ns: h.mnt_ns,
                    exited_at: None,
                    snapshot: None,
                });
            self.map.put(key, e);
        }
        let parent_uuid = self.uuid(parent);
        let mut changed = false;
        if let Some(e) = self.map.get_mut(&key) {
            if (e.uid, e.euid, e.gid, e.cgroup_id, e.mnt_ns, e.start_ns)
                != (
                    h.uid,
                    h.euid,
                    h.gid,
                    h.cgroup_id,
                    h.mnt_ns,
                    h.start_boottime_ns,
                )
            {
                e.uid = h.uid;
                e.euid = h.euid;
                e.gid = h.gid;
                e.cgroup_id = h.cgroup_id;
                e.mnt_ns = h.mnt_ns;
                e.start_ns = h.start_boottime_ns;
                changed = true;
            }
            // Reparenting (the parent exited) changes ppid.
            if e.ppid != h.ppid {
                e.ppid = h.ppid;
                e.parent = Some(parent);
                e.parent_uuid = parent_uuid;
                changed = true;
            }
            let kc = &h.comm[..h.comm.iter().position(|&c| c == 0).unwrap_or(h.comm.len())];
            if e.comm.as_bytes() != kc {
                e.comm = comm(h);
                changed = true;
            }
        }
        if changed {
            self.generation += 1;
        }
        key
    }

    /// A new process: it starts as a copy of its parent.
    pub fn on_fork(&mut self, parent: ProcKey, child_tgid: u32, child_start_ns: u64) -> ProcKey {
        let key = self.key(child_tgid, child_start_ns);
        let uuid = self.uuid(key);
        let parent_uuid = self.uuid(parent);
        let child = match self.map.peek(&parent) {
            Some(p) => ProcEntry {
                key,
                uuid,
                parent: Some(parent),
                parent_uuid,
                ppid: parent.tgid,
                start_ns: child_start_ns,
                exited_at: None,
                snapshot: None,
                ..p.clone()
            },
            None => ProcEntry {
                key,
                uuid,
                parent: Some(parent),
                parent_uuid,
                ppid: parent.tgid,
                start_ns: child_start_ns,
                uid: 0,
                euid: 0,
                gid: 0,
                comm: String::new(),
                exe: String::new(),
                argv: Arc::from(Vec::new()),
                argv_truncated: false,
                cwd: String::new(),
                exe_id: None,
                sha256: None,
                ld_preload: None,
                ld_library_path: None,
                cgroup_id: 0,
                mnt_ns: 0,
                exited_at: None,
                snapshot: None,
            },
        };
        self.map.put(key, child);
        key
    }

    pub fn on_exec(&mut self, key: ProcKey, x: &RawExec, argv_truncated: bool) {
        if let Some(e) = self.map.get_mut(&key) {
            e.exe = x.exe.clone();
            e.argv = Arc::from(x.argv.clone());
            e.argv_truncated = argv_truncated;
            e.cwd = x.cwd.clone();
            e.ld_preload = x.ld_preload.clone();
            e.ld_library_path = x.ld_library_path.clone();
            let id = ExeId {
                dev: x.exe_dev,
                ino: x.exe_ino,
                mtime_sec: x.exe_mtime_sec,
                mtime_nsec: x.exe_mtime_nsec,
            };
            if e.exe_id != Some(id) {
                e.sha256 = None;
            }
            e.exe_id = Some(id);
        }
        self.generation += 1;
    }

    pub fn set_sha256(&mut self, key: ProcKey, sha: Option<Arc<str>>) {
        if let Some(e) = self.map.peek_mut(&key) {
            e.sha256 = sha;
            // Lineage entries do not show hashes: only this snapshot is stale.
            e.snapshot = None;
        }
    }

    pub fn on_exit(&mut self, key: ProcKey) {
        if let Some(e) = self.map.peek_mut(&key) {
            e.exited_at = Some(Instant::now());
        }
    }

    /// Drops exited processes older than the grace period.
    pub fn sweep(&mut self) -> usize {
        let ttl = self.exited_ttl;
        let old: Vec<ProcKey> = self
            .map
            .iter()
            .filter(|(_, e)| e.exited_at.is_some_and(|t| t.elapsed() > ttl))
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            self.map.pop(k);
        }
        if !old.is_empty() {
            self.generation += 1;
        }
        self.clock.refresh();
        old.len()
    }

    /// The live process with this pid, if any (a linear scan: for rare callers only).
    pub fn get_by_pid(&self, pid: u32) -> Option<ProcKey> {
        self.map
            .iter()
            .find(|(k, e)| k.tgid == pid && e.exited_at.is_none())
            .map(|(k, _)| *k)
    }

    pub fn get(&self, key: &ProcKey) -> Option<&ProcEntry> {
        self.map.peek(key)
    }

    pub fn ancestor(&self, e: &ProcEntry) -> Ancestor {
        Ancestor {
            uuid: e.uuid,
            parent_uuid: e.parent_uuid,
            pid: e.key.tgid,
            exe: e.exe.clone(),
            comm: e.comm.clone(),
            uid: e.uid,
            euid: e.euid,
            start_time: self.clock.wall(e.start_ns),
        }
    }

    /// Ancestors of `key`, nearest first, up to the configured depth.
    pub fn lineage(&self, key: &ProcKey) -> Vec<Ancestor> {
        let mut out = Vec::new();
        let mut cur = self.map.peek(key).and_then(|e| e.parent);
        while let Some(k) = cur {
            if out.len() >= self.lineage_depth {
                break;
            }
            let Some(e) = self.map.peek(&k) else { break };
            out.push(self.ancestor(e));
            if e.parent == Some(k) {
                break;
            }
            cur = e.parent;
        }
        out
    }

    /// The event model's view of process `key`: a shared snapshot, rebuilt only when something
    /// it shows may have changed. A live process keeps it for its next events; an exited one
    /// gives it up, since it emits nothing more and stays only as an ancestor (until the sweep),
    /// so the table does not hold thousands of dead snapshots under exec churn.
    pub fn process(&mut self, key: &ProcKey) -> Arc<Process> {
        let generation = self.generation;
        let mut exited = false;
        if let Some(e) = self.map.peek_mut(key) {
            exited = e.exited_at.is_some();
            if let Some((g, p)) = e.snapshot.take()
                && g == generation
            {
                if !exited {
                    e.snapshot = Some((g, p.clone()));
                }
                return p;
            }
        }
        let p = Arc::new(self.build_process(key));
        if !exited && let Some(e) = self.map.peek_mut(key) {
            e.snapshot = Some((generation, p.clone()));
        }
        p
    }

    fn build_process(&self, key: &ProcKey) -> Process {
        let Some(e) = self.map.peek(key) else {
            return Process {
                pid: key.tgid,
                uuid: self.uuid(*key),
                ..Process::default()
            };
        };
        Process {
            pid: e.key.tgid,
            ppid: e.ppid,
            uid: e.uid,
            euid: e.euid,
            gid: e.gid,
            comm: e.comm.clone(),
            exe: e.exe.clone(),
            argv: e.argv.to_vec(),
            argv_truncated: e.argv_truncated,
            cwd: e.cwd.clone(),
            uuid: e.uuid,
            parent_uuid: e.parent_uuid,
            start_time: self.clock.wall(e.start_ns),
            sha256: e.sha256.as_deref().map(str::to_owned),
            cgroup_id: e.cgroup_id,
            mnt_ns: e.mnt_ns,
            ld_preload: e.ld_preload.clone(),
            ld_library_path: e.ld_library_path.clone(),
            lineage: self.lineage(key),
        }
    }
}

/// The fields of `/proc/<pid>/stat` we need.
struct ProcStat {
    comm: String,
    ppid: u32,
    start_ticks: u64,
}

impl ProcStat {
    fn read(dir: &Path) -> Option<ProcStat> {
        let s = fs::read_to_string(dir.join("stat")).ok()?;
        // comm is wrapped in parentheses and may itself contain ") ".
        let open = s.find('(')?;
        let close = s.rfind(')')?;
        let comm = s.get(open + 1..close)?.to_owned();
        let rest: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
        // rest[0] is field 3 (state): field N is rest[N - 3].
        Some(ProcStat {
            comm,
            ppid: rest.get(1)?.parse().ok()?,
            start_ticks: rest.get(19)?.parse().ok()?,
        })
    }
}

fn status_ids(dir: &Path, label: &str) -> Option<(u32, u32)> {
    let s = fs::read_to_string(dir.join("status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(label))?;
    let mut it = line[label.len()..]
        .split_whitespace()
        .filter_map(|v| v.parse().ok());
    Some((it.next()?, it.next()?))
}

fn readlink(p: &Path) -> String {
    fs::read_link(p)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `/proc/<pid>/{exe,cwd}` read from outside a container include the container's root; the
/// kernel probes report paths inside it, so strip the root for consistency.
fn strip_root(root: &str, p: String) -> String {
    if root.is_empty() || root == "/" {
        return p;
    }
    match p.strip_prefix(root) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('/') => rest.into(),
        _ => p,
    }
}

/// The agent's own mount namespace.
pub fn own_mnt_ns() -> u32 {
    ns_inode(Path::new("/proc/self/ns/mnt"))
}

/// `mnt:[4026531841]` → 4026531841.
fn ns_inode(p: &Path) -> u32 {
    let s = readlink(p);
    s.rsplit('[')
        .next()
        .and_then(|v| v.trim_end_matches(']').parse().ok())
        .unwrap_or(0)
}

/// The kernel's `dev_t` encoding (major << 20 | minor) of a userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

pub fn exe_id_of(m: &fs::Metadata) -> ExeId {
    use std::os::unix::fs::MetadataExt;
    ExeId {
        dev: kernel_dev(m.dev()),
        ino: m.ino(),
        mtime_sec: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tgid: u32, start: u64, ppid: u32, pstart: u64) -> EventHeader {
        EventHeader {
            kind: 0x0100,
            flags: 0,
            ktime_ns: start + 1,
            start_boottime_ns: start,
            parent_start_boottime_ns: pstart,
            cgroup_id: 1,
            tgid,
            tid: tgid,
            ppid,
            uid: 1000,
            euid: 0,
            gid: 1000,
            mnt_ns: 7,
            data_len: 0,
            comm: *b"bash\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    fn empty_table() -> ProcessTable {
        // A proc root with nothing in it: everything comes from events.
        let dir = std::env::temp_dir().join(format!("pg-empty-proc-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        ProcessTable::with_proc_root(64, 4, dir)
    }

    #[test]
    fn pid_reuse_gives_a_new_uuid() {
        let mut t = empty_table();
        let a = t.observe(&header(4000, 10_000_000_000, 1, 0));
        let b = t.observe(&header(4000, 20_000_000_000, 1, 0));
        assert_ne!(a, b);
        assert_ne!(t.get(&a).unwrap().uuid, t.get(&b).unwrap().uuid);
        // ... and the same process always maps to the same uuid.
        assert_eq!(t.uuid(a), t.get(&a).unwrap().uuid);
    }

    #[test]
    fn fork_and_exec_build_lineage_bounded_by_depth() {
        let mut t = empty_table();
        let mut parent = t.observe(&header(100, 1_000_000_000, 1, 0));
        let mut keys = vec![parent];
        for i in 0..6u32 {
            let start = 2_000_000_000 + u64::from(i) * 1_000_000_000;
            let child = t.on_fork(parent, 200 + i, start);
            t.on_exec(
                child,
                &RawExec {
                    exe: format!("/bin/p{i}"),
                    argv: vec![format!("p{i}")],
                    ..RawExec::default()
                },
                false,
            );
            keys.push(child);
            parent = child;
        }
        let last = *keys.last().unwrap();
        let lineage = t.lineage(&last);
        assert_eq!(lineage.len(), 4, "depth bound");
        assert_eq!(lineage[0].pid, 204);
        assert_eq!(lineage[0].exe, "/bin/p4");
        assert_eq!(lineage[0].uuid, t.get(&keys[5]).unwrap().uuid);
        let p = t.process(&last);
        assert_eq!(p.parent_uuid, lineage[0].uuid);
        assert_eq!(p.argv, vec!["p5"]);
    }

    #[test]
    fn live_processes_share_a_snapshot_and_exited_ones_let_it_go() {
        let mut t = empty_table();
        let parent = t.observe(&header(100, 1_000_000_000, 1, 0));
        let child = t.on_fork(parent, 101, 2_000_000_000);
        let a = t.process(&child);
        assert!(Arc::ptr_eq(&a, &t.process(&child)), "shared while live");
        t.on_exit(child);
        // The exit event still gets the current view ...
        let at_exit = t.process(&child);
        assert!(Arc::ptr_eq(&a, &at_exit));
        // ... and the table keeps no snapshot of the dead process afterwards,
        assert!(t.get(&child).unwrap().snapshot.is_none());
        // while it still serves as an ancestor.
        let grandchild = t.on_fork(child, 102, 3_000_000_000);
        assert_eq!(t.lineage(&grandchild)[0].pid, 101);
    }

    #[test]
    fn bounded_by_count() {
        let mut t = empty_table();
        for i in 0..200 {
            t.observe(&header(10_000 + i, 1_000_000_000, 1, 0));
        }
        assert_eq!(t.len(), 64);
    }

    #[test]
    fn seeds_from_real_proc_including_ourselves() {
        let mut t = ProcessTable::new(65536, 8);
        assert!(t.seed() > 0);
        let me = std::process::id();
        let e = t
            .map
            .iter()
            .find(|(k, _)| k.tgid == me)
            .map(|(_, e)| e.clone())
            .unwrap();
        assert_eq!(
            e.exe,
            fs::read_link("/proc/self/exe").unwrap().to_string_lossy()
        );
        assert_eq!(e.ppid, std::os::unix::process::parent_id());
        assert!(!t.lineage(&e.key).is_empty());
    }

    #[test]
    fn strips_container_roots() {
        assert_eq!(
            strip_root("/run/c/rootfs", "/run/c/rootfs/bin/sh".into()),
            "/bin/sh"
        );
        assert_eq!(strip_root("/run/c/rootfs", "/run/c/rootfs".into()), "/");
        assert_eq!(strip_root("/", "/bin/sh".into()), "/bin/sh");
        assert_eq!(
            strip_root("/run/c/rootfs", "/run/c/rootfs2/x".into()),
            "/run/c/rootfs2/x"
        );
    }
}
