//! New-binary tracking: was an executable created or modified inside its container after the
//! container started? (GuardDuty's NewBinaryExecuted and NewLibraryLoaded.)
//!
//! Two kinds of evidence, strongest first:
//! - overlayfs: the kernel reports the executable's overlay inode has an upper dentry. A
//!   container's upper layer starts empty, so anything there was written since it started.
//! - observed writes: the agent saw a process of the same container open the file for writing,
//!   or rename or link it into place. This covers rootfs layouts without overlayfs, and names
//!   the modifying process.
//!
//! Both indexes are bounded by count and by bytes (paths are up to 4 KiB, and a process that
//! writes many files under long names must not grow the agent); each has half the byte budget.

use node_agent_common::{IN_UPPER_LAYER, Kind};
use peregrine_event::{Ancestor, NewBinary, NewBinaryEvidence, Timestamp};

use crate::{
    bounded::{BoundedLru, CacheStats, Evictions, HeapBytes},
    decode::RawFile,
};

/// The default byte budget of both indexes together: 16384 writes under ordinary paths fit in
/// each index, far fewer under 4 KiB paths.
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

#[derive(Clone, Debug)]
struct Written {
    container_id: String,
    by: Ancestor,
    at: Timestamp,
}

impl HeapBytes for Written {
    fn heap_bytes(&self) -> usize {
        self.container_id.heap_bytes() + self.by.heap_bytes()
    }
}

pub struct NewBinaryTracker {
    by_inode: BoundedLru<(u32, u64), Written>,
    by_path: BoundedLru<(u32, String), Written>,
}

const O_ACCMODE: u32 = 0o3;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;

/// An open that can change the file's contents.
pub fn opens_for_write(flags: u32) -> bool {
    flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0
}

impl NewBinaryTracker {
    /// `capacity` entries in each index, `max_bytes` for both together.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        NewBinaryTracker {
            by_inode: BoundedLru::new(capacity, max_bytes / 2),
            by_path: BoundedLru::new(capacity, max_bytes - max_bytes / 2),
        }
    }

    pub fn len(&self) -> usize {
        self.by_inode.len() + self.by_path.len()
    }

    pub fn capacity(&self) -> usize {
        self.by_inode.capacity() + self.by_path.capacity()
    }

    pub fn bytes(&self) -> usize {
        self.by_inode.bytes() + self.by_path.bytes()
    }

    pub fn max_bytes(&self) -> usize {
        self.by_inode.max_bytes() + self.by_path.max_bytes()
    }

    pub fn evictions(&self) -> Evictions {
        self.by_inode.evictions() + self.by_path.evictions()
    }

    /// Both indexes together.
    pub fn stats(&self) -> CacheStats {
        self.by_inode.stats() + self.by_path.stats()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a successful write-like file event by a process inside `container_id`.
    pub fn on_file(
        &mut self,
        kind: Kind,
        f: &RawFile,
        container_id: &str,
        mnt_ns: u32,
        by: Ancestor,
        at: Timestamp,
    ) {
        if f.result < 0 {
            return;
        }
        let w = Written {
            container_id: container_id.to_owned(),
            by,
            at,
        };
        match kind {
            Kind::Open if opens_for_write(f.flags) => {
                if f.ino != 0 {
                    self.by_inode.put((f.dev, f.ino), w.clone());
                }
                self.by_path.put((mnt_ns, f.path.clone()), w);
            }
            Kind::Rename | Kind::Link => {
                if let Some(new) = &f.new_path {
                    self.by_path.put((mnt_ns, new.clone()), w);
                }
            }
            _ => {}
        }
    }

    /// Whether the executable of an exec in `container_id` is new.
    pub fn check_exec(
        &mut self,
        container_id: &str,
        mnt_ns: u32,
        exe: &str,
        dev: u32,
        ino: u64,
        exec_flags: u32,
    ) -> Option<NewBinary> {
        let seen = self
            .by_inode
            .get(&(dev, ino))
            .filter(|w| w.container_id == container_id)
            .cloned()
            .or_else(|| {
                self.by_path
                    .get(&(mnt_ns, exe.to_owned()))
                    .filter(|w| w.container_id == container_id)
                    .cloned()
            });
        let evidence = if exec_flags & IN_UPPER_LAYER != 0 {
            NewBinaryEvidence::OverlayUpper
        } else if seen.is_some() {
            NewBinaryEvidence::ObservedWrite
        } else {
            return None;
        };
        Some(NewBinary {
            evidence,
            modified_by: seen.as_ref().map(|w| w.by.clone()),
            modified_at: seen.map(|w| w.at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &str, ino: u64, flags: u32, result: i64) -> RawFile {
        RawFile {
            path: path.into(),
            ino,
            dev: 7,
            flags,
            result,
            ..RawFile::default()
        }
    }

    #[test]
    fn written_then_executed_in_the_same_container_is_new() {
        let mut t = NewBinaryTracker::new(16, DEFAULT_MAX_BYTES);
        let by = Ancestor {
            pid: 5,
            exe: "/bin/cp".into(),
            ..Ancestor::default()
        };
        t.on_file(
            Kind::Open,
            &write("/tmp/x", 42, 0o1101, 3),
            "c1",
            9,
            by.clone(),
            Timestamp::from_unix_nanos(1),
        );
        let nb = t.check_exec("c1", 9, "/tmp/x", 7, 42, 0).unwrap();
        assert_eq!(nb.evidence, NewBinaryEvidence::ObservedWrite);
        assert_eq!(nb.modified_by.unwrap().exe, "/bin/cp");
        // Another container's write does not count, nor does an untouched file.
        assert!(t.check_exec("c2", 9, "/tmp/x", 7, 42, 0).is_none());
        assert!(t.check_exec("c1", 9, "/bin/sh", 7, 1, 0).is_none());
    }

    #[test]
    fn failed_and_read_only_opens_do_not_count() {
        let mut t = NewBinaryTracker::new(16, DEFAULT_MAX_BYTES);
        t.on_file(
            Kind::Open,
            &write("/tmp/x", 42, 0o1101, -13),
            "c1",
            9,
            Ancestor::default(),
            Timestamp::default(),
        );
        t.on_file(
            Kind::Open,
            &write("/tmp/y", 43, 0, 3),
            "c1",
            9,
            Ancestor::default(),
            Timestamp::default(),
        );
        assert!(t.check_exec("c1", 9, "/tmp/x", 7, 42, 0).is_none());
        assert!(t.check_exec("c1", 9, "/tmp/y", 7, 43, 0).is_none());
    }

    #[test]
    fn long_paths_evict_by_bytes_and_the_count_matches_the_contents() {
        let budget = 128 << 10;
        let mut t = NewBinaryTracker::new(16384, budget);
        let by = Ancestor {
            exe: "/usr/bin/".to_owned() + &"e".repeat(4000),
            comm: "writer".into(),
            ..Ancestor::default()
        };
        let long = |i: u64| format!("/{}/{i}", "p".repeat(4000));
        for i in 0..200 {
            t.on_file(
                Kind::Open,
                &write(&long(i), 1000 + i, 0o1101, 3),
                "c1",
                9,
                by.clone(),
                Timestamp::default(),
            );
            assert_eq!(
                t.bytes(),
                t.by_inode.recount() + t.by_path.recount(),
                "after write {i}"
            );
        }
        assert!(t.bytes() <= budget, "{} > {budget}", t.bytes());
        assert!(t.evictions().bytes > 300, "{:?}", t.evictions());
        assert_eq!(t.evictions().count, 0);
        // The newest write is remembered, the oldest is not.
        let nb = t.check_exec("c1", 9, &long(199), 0, 0, 0).unwrap();
        assert_eq!(nb.evidence, NewBinaryEvidence::ObservedWrite);
        assert!(t.check_exec("c1", 9, &long(0), 0, 0, 0).is_none());
    }

    #[test]
    fn renamed_into_place_counts_and_overlay_upper_wins() {
        let mut t = NewBinaryTracker::new(16, DEFAULT_MAX_BYTES);
        let f = RawFile {
            path: "/tmp/a".into(),
            new_path: Some("/usr/bin/b".into()),
            ..RawFile::default()
        };
        t.on_file(
            Kind::Rename,
            &f,
            "c1",
            9,
            Ancestor::default(),
            Timestamp::default(),
        );
        assert_eq!(
            t.check_exec("c1", 9, "/usr/bin/b", 7, 99, 0)
                .unwrap()
                .evidence,
            NewBinaryEvidence::ObservedWrite
        );
        let nb = t
            .check_exec("c1", 9, "/usr/bin/zzz", 7, 100, IN_UPPER_LAYER)
            .unwrap();
        assert_eq!(nb.evidence, NewBinaryEvidence::OverlayUpper);
        assert!(nb.modified_by.is_none());
    }
}
