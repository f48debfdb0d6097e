//! Reading processes from `/proc`: what the process table is seeded with, and how it fills in
//! a process it first meets through an event.

use std::{fs, path::Path};

use uuid::Uuid;

use crate::exehash::{ExeId, exe_id_of};

/// What `/proc/<pid>` says about a process, with `exe` and `cwd` as seen inside its own root.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    /// The parent's start time, while the parent is still there.
    pub parent_start_ticks: Option<u64>,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub exe_id: Option<ExeId>,
    pub mnt_ns: u32,
}

/// The pids listed under `proc_root` (none if it cannot be read).
pub fn pids(proc_root: &Path) -> impl Iterator<Item = u32> {
    fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|ent| ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
}

/// Reads `/proc/<pid>`; `None` if the process is gone.
pub fn read_process(proc_root: &Path, pid: u32) -> Option<ProcInfo> {
    let dir = proc_root.join(pid.to_string());
    let stat = ProcStat::read(&dir)?;
    let parent_start_ticks =
        ProcStat::read(&proc_root.join(stat.ppid.to_string())).map(|p| p.start_ticks);
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
    Some(ProcInfo {
        pid,
        ppid: stat.ppid,
        start_ticks: stat.start_ticks,
        parent_start_ticks,
        uid,
        euid,
        gid,
        comm: stat.comm,
        exe: in_root(readlink(&dir.join("exe"))),
        argv,
        cwd: in_root(readlink(&dir.join("cwd"))),
        exe_id: fs::metadata(dir.join("exe")).ok().map(|m| exe_id_of(&m)),
        mnt_ns: ns_inode(&dir.join("ns/mnt")),
    })
}

/// Reads the boot id, which makes process uuids unique across boots and nodes.
pub fn boot_id() -> [u8; 16] {
    let s = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    Uuid::parse_str(s.trim())
        .map(|u| *u.as_bytes())
        .unwrap_or([0; 16])
}

/// This node's host name.
pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

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
