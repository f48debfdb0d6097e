//! The process table: who every event's process is, and its ancestors.
//!
//! Seeded from `/proc` at start, then kept current from fork, exec and exit events. A process
//! is keyed by (tgid, start time in clock ticks), the pair `/proc/<pid>/stat` also exposes, so
//! a reused pid is a different process. Its uuid hashes the boot id into that key, so it is
//! stable across agent restarts on the same boot and unique across nodes.
//! The table is bounded by count and by bytes (least recently used goes first, whichever bound
//! is reached): an entry's strings (exe, cwd, argv, `LD_*` values, its snapshot) are chosen by
//! whoever runs the process and can be many KiB each. Exited processes stay a while so that
//! their children's lineage still resolves.

mod clock;
pub mod procfs;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use node_agent_common::EventHeader;
use peregrine_event::{Ancestor, Process};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use self::{clock::Clock, procfs::own_mnt_ns};
use crate::{
    bounded::{BoundedLru, CacheStats, Evictions, HeapBytes},
    decode::{RawExec, comm},
    exehash::ExeId,
};

/// The default byte budget: 32768 ordinary processes (about 1 KiB each with their snapshot)
/// fit several times over, while processes with 4 KiB cwds, exes and `LD_*` values and 8 KiB
/// argvs are limited to a few thousand.
pub const DEFAULT_MAX_BYTES: usize = 48 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcKey {
    pub tgid: u32,
    pub start_ticks: u64,
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

impl ProcEntry {
    /// A process known only by its identity and parent.
    fn blank(
        key: ProcKey,
        uuid: Uuid,
        parent: Option<ProcKey>,
        parent_uuid: Uuid,
        ppid: u32,
        start_ns: u64,
    ) -> ProcEntry {
        ProcEntry {
            key,
            uuid,
            parent,
            parent_uuid,
            ppid,
            start_ns,
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
        }
    }
}

impl HeapBytes for ProcKey {
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl HeapBytes for ProcEntry {
    fn heap_bytes(&self) -> usize {
        self.comm.heap_bytes()
            + self.exe.heap_bytes()
            + self.argv.heap_bytes()
            + self.cwd.heap_bytes()
            + self.sha256.heap_bytes()
            + self.ld_preload.heap_bytes()
            + self.ld_library_path.heap_bytes()
            + self.snapshot.as_ref().map_or(0, |(_, p)| p.heap_bytes())
    }
}

impl HeapBytes for Ancestor {
    fn heap_bytes(&self) -> usize {
        self.exe.heap_bytes() + self.comm.heap_bytes()
    }
}

impl HeapBytes for Process {
    fn heap_bytes(&self) -> usize {
        self.comm.heap_bytes()
            + self.exe.heap_bytes()
            + self.argv.heap_bytes()
            + self.cwd.heap_bytes()
            + self.sha256.heap_bytes()
            + self.ld_preload.heap_bytes()
            + self.ld_library_path.heap_bytes()
            + self.lineage.heap_bytes()
    }
}

pub struct ProcessTable {
    map: BoundedLru<ProcKey, ProcEntry>,
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

impl ProcessTable {
    pub fn new(capacity: usize, max_bytes: usize, lineage_depth: usize) -> Self {
        Self::with_proc_root(capacity, max_bytes, lineage_depth, PathBuf::from("/proc"))
    }

    pub fn with_proc_root(
        capacity: usize,
        max_bytes: usize,
        lineage_depth: usize,
        proc_root: PathBuf,
    ) -> Self {
        ProcessTable {
            map: BoundedLru::new(capacity.max(16), max_bytes),
            boot_id: procfs::boot_id(),
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
        self.map.capacity()
    }

    /// What the entries weigh now (kept current on every change, never recounted).
    pub fn bytes(&self) -> usize {
        self.map.bytes()
    }

    pub fn max_bytes(&self) -> usize {
        self.map.max_bytes()
    }

    pub fn evictions(&self) -> Evictions {
        self.map.evictions()
    }

    pub fn stats(&self) -> CacheStats {
        self.map.stats()
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
        let mut added = 0;
        for pid in procfs::pids(&self.proc_root) {
            if let Some(e) = self.read_proc(pid) {
                self.map.put(e.key, e);
                added += 1;
            }
        }
        added
    }

    /// Builds an entry from `/proc/<pid>`; `None` if the process is gone.
    fn read_proc(&self, pid: u32) -> Option<ProcEntry> {
        let p = procfs::read_process(&self.proc_root, pid)?;
        let key = ProcKey {
            tgid: pid,
            start_ticks: p.start_ticks,
        };
        let parent = p.parent_start_ticks.map(|start_ticks| ProcKey {
            tgid: p.ppid,
            start_ticks,
        });
        Some(ProcEntry {
            uid: p.uid,
            euid: p.euid,
            gid: p.gid,
            comm: p.comm,
            exe: p.exe,
            argv: p.argv.into(),
            cwd: p.cwd,
            exe_id: p.exe_id,
            mnt_ns: p.mnt_ns,
            ..ProcEntry::blank(
                key,
                self.uuid(key),
                parent,
                parent.map(|k| self.uuid(k)).unwrap_or_default(),
                p.ppid,
                self.clock.ticks_to_ns(p.start_ticks),
            )
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
                    uid: h.uid,
                    euid: h.euid,
                    gid: h.gid,
                    comm: comm(h),
                    cgroup_id: h.cgroup_id,
                    mnt_ns: h.mnt_ns,
                    ..ProcEntry::blank(
                        key,
                        self.uuid(key),
                        Some(parent),
                        self.uuid(parent),
                        h.ppid,
                        h.start_boottime_ns,
                    )
                });
            self.map.put(key, e);
        }
        let parent_uuid = self.uuid(parent);
        let changed = self.map.update(&key, true, |e| {
            let mut changed = false;
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
            changed
        });
        if changed == Some(true) {
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
            None => ProcEntry::blank(
                key,
                uuid,
                Some(parent),
                parent_uuid,
                parent.tgid,
                child_start_ns,
            ),
        };
        self.map.put(key, child);
        key
    }

    pub fn on_exec(&mut self, key: ProcKey, x: &RawExec, argv_truncated: bool) {
        self.map.update(&key, true, |e| {
            e.exe = x.exe.clone();
            e.argv = Arc::from(x.argv.clone());
            e.argv_truncated = argv_truncated;
            e.cwd = x.cwd.clone();
            e.ld_preload = x.ld_preload.clone();
            e.ld_library_path = x.ld_library_path.clone();
            let id = ExeId::of_exec(x);
            if e.exe_id != Some(id) {
                e.sha256 = None;
            }
            e.exe_id = Some(id);
        });
        self.generation += 1;
    }

    pub fn set_sha256(&mut self, key: ProcKey, sha: Option<Arc<str>>) {
        self.map.update(&key, false, |e| {
            e.sha256 = sha;
            // Lineage entries do not show hashes: only this snapshot is stale.
            e.snapshot = None;
        });
    }

    pub fn on_exit(&mut self, key: ProcKey) {
        self.map.update(&key, false, |e| {
            e.exited_at = Some(Instant::now());
        });
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
        let cached = self.map.update(key, false, |e| {
            let exited = e.exited_at.is_some();
            match e.snapshot.take() {
                Some((g, p)) if g == generation => {
                    if !exited {
                        e.snapshot = Some((g, p.clone()));
                    }
                    (exited, Some(p))
                }
                _ => (exited, None),
            }
        });
        let exited = match cached {
            Some((_, Some(p))) => return p,
            Some((exited, None)) => exited,
            None => false,
        };
        let p = Arc::new(self.build_process(key));
        if !exited {
            self.map.update(key, false, |e| {
                e.snapshot = Some((generation, p.clone()));
            });
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

#[cfg(test)]
mod tests {
    use std::fs;

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
        ProcessTable::with_proc_root(64, DEFAULT_MAX_BYTES, 4, dir)
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
        assert_eq!(t.evictions().count, 200 - 64);
        assert_eq!(t.evictions().bytes, 0);
        assert_eq!(t.bytes(), t.map.recount());
    }

    fn big_exec(i: u32) -> RawExec {
        let deep = format!("/{}", "d".repeat(255)).repeat(16);
        RawExec {
            exe: format!("/usr/bin/tool{i}"),
            argv: vec![format!("tool{i}"), "a".repeat(8192)],
            cwd: format!("{deep}/{i}"),
            ld_library_path: Some(format!("{deep}/lib{i}")),
            ld_preload: Some("p".repeat(4096)),
            ..RawExec::default()
        }
    }

    #[test]
    fn large_strings_evict_by_bytes_and_the_count_matches_the_contents() {
        let dir = std::env::temp_dir().join(format!("pg-empty-proc-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let budget = 256 << 10;
        let mut t = ProcessTable::with_proc_root(4096, budget, 4, dir);
        let parent = t.observe(&header(100, 1_000_000_000, 1, 0));
        for i in 0..100u32 {
            let child = t.on_fork(parent, 1000 + i, 2_000_000_000 + u64::from(i));
            t.on_exec(child, &big_exec(i), false);
            // A snapshot counts too.
            let p = t.process(&child);
            assert_eq!(p.cwd, big_exec(i).cwd);
            assert_eq!(t.bytes(), t.map.recount(), "after exec {i}");
            if i % 3 == 0 {
                t.on_exit(child);
                t.process(&child);
                assert_eq!(t.bytes(), t.map.recount(), "after exit {i}");
            }
        }
        assert!(t.bytes() <= budget, "{} > {budget}", t.bytes());
        assert!(t.len() < 50, "{} entries of ~28 KiB in 256 KiB", t.len());
        assert!(t.evictions().bytes > 50, "{:?}", t.evictions());
        assert_eq!(t.evictions().count, 0);
        // The newest process is still there with its strings.
        let last = t.key(1099, 2_000_000_099);
        assert_eq!(t.get(&last).unwrap().cwd, big_exec(99).cwd);
        // Removing entries keeps the count exact, down to nothing.
        let keys: Vec<ProcKey> = t.map.iter().map(|(k, _)| *k).collect();
        for k in &keys {
            t.map.pop(k);
        }
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn seeds_from_real_proc_including_ourselves() {
        let mut t = ProcessTable::new(65536, DEFAULT_MAX_BYTES, 8);
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
}
