//! What every family's programs share: load-time configuration access, kernel reads, the
//! per-CPU scratch area records are assembled in, the common header, and path resolution.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
        bpf_probe_read_user_str, bpf_ringbuf_output,
    },
};
use node_agent_common::{
    COMM_LEN, DATA_MASK, DROP_NO_SCRATCH, DROP_RINGBUF_FULL, EventHeader, IN_UPPER_LAYER, Kind,
    ON_OVERLAY, PATH_CAP, SCRATCH_SIZE,
};

use crate::{DROPS, EVENTS, PATHBUF, SCRATCH};

// ---------------------------------------------------------------------------------------------
// Load-time configuration.

/// A field of `crate::OFFSETS`, as a `usize`.
macro_rules! off {
    ($field:ident) => {
        // SAFETY: reading a field of a static; volatile so the loader's value is used.
        (unsafe { core::ptr::read_volatile(&raw const crate::OFFSETS.$field) } as usize)
    };
}
pub(crate) use off;

/// A field of `crate::CONFIG`.
macro_rules! config {
    ($field:ident) => {
        (unsafe { core::ptr::read_volatile(&raw const crate::CONFIG.$field) })
    };
}
pub(crate) use config;

// ---------------------------------------------------------------------------------------------
// Kernel memory access.

#[inline(always)]
pub(crate) unsafe fn read_u64(p: usize) -> u64 {
    let mut v: u64 = 0;
    if p == 0 {
        return 0;
    }
    bpf_probe_read_kernel((&raw mut v).cast(), 8, p as *const c_void);
    v
}

#[inline(always)]
pub(crate) unsafe fn read_u32(p: usize) -> u32 {
    let mut v: u32 = 0;
    if p == 0 {
        return 0;
    }
    bpf_probe_read_kernel((&raw mut v).cast(), 4, p as *const c_void);
    v
}

#[inline(always)]
pub(crate) unsafe fn read_ptr(p: usize) -> usize {
    read_u64(p) as usize
}

#[inline(always)]
fn count_drop(slot: u32) {
    if let Some(c) = DROPS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot; no other writer on this CPU while we run.
        unsafe { *c += 1 };
    }
}

#[repr(C)]
pub(crate) struct Scratch {
    buf: [u8; SCRATCH_SIZE],
}

/// This CPU's event-assembly area (`crate::SCRATCH`).
#[inline(always)]
pub(crate) fn scratch() -> Option<*mut u8> {
    // SAFETY: helper call without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    match SCRATCH.get_ptr_mut(cpu) {
        Some(s) => Some(s.cast::<u8>()),
        None => {
            count_drop(DROP_NO_SCRATCH);
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Event assembly.

/// Appends variable-length fields after a record's fixed part. Offsets are masked so that the
/// verifier can bound every write; the caps in node-agent-common guarantee the mask never bites.
pub(crate) struct Builder {
    base: *mut u8,
    fixed: usize,
    cursor: usize,
}

impl Builder {
    #[inline(always)]
    pub(crate) fn new(base: *mut u8, fixed: usize) -> Self {
        Builder {
            base,
            fixed,
            cursor: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn dst(&self) -> *mut u8 {
        // SAFETY: fixed <= 256 and the masked cursor plus any field cap stay inside the scratch.
        unsafe { self.base.add(self.fixed + (self.cursor & DATA_MASK)) }
    }

    /// Copies a NUL-terminated user string of at most `cap - 1` bytes. Returns (len, truncated).
    #[inline(always)]
    pub(crate) unsafe fn user_str(&mut self, src: usize, cap: usize) -> (u16, bool) {
        if src == 0 {
            return (0, false);
        }
        let r = bpf_probe_read_user_str(self.dst().cast(), cap as u32, src as *const c_void);
        self.commit_str(r, cap)
    }

    #[inline(always)]
    pub(crate) unsafe fn kernel_str(&mut self, src: usize, cap: usize) -> (u16, bool) {
        if src == 0 {
            return (0, false);
        }
        let r = bpf_probe_read_kernel_str(self.dst().cast(), cap as u32, src as *const c_void);
        self.commit_str(r, cap)
    }

    #[inline(always)]
    fn commit_str(&mut self, r: i64, cap: usize) -> (u16, bool) {
        if r <= 0 {
            return (0, false);
        }
        // r counts the terminating NUL, which the next field overwrites.
        let len = (r as usize - 1) & (cap - 1);
        self.cursor += len;
        (len as u16, r as usize >= cap)
    }

    /// Copies `len` raw bytes of user memory, capped at `cap - 1`. Returns (len, truncated).
    #[inline(always)]
    pub(crate) unsafe fn user_bytes(&mut self, src: usize, len: usize, cap: usize) -> (u16, bool) {
        if src == 0 || len == 0 {
            return (0, false);
        }
        let truncated = len > cap - 1;
        let n = if truncated { cap - 1 } else { len } & (cap - 1);
        if bpf_probe_read_user(self.dst().cast(), n as u32, src as *const c_void) != 0 {
            return (0, false);
        }
        self.cursor += n;
        (n as u16, truncated)
    }

    /// Copies the path assembled by `walk_path` out of the per-CPU path buffer.
    #[inline(always)]
    pub(crate) unsafe fn path(&mut self, walked: Walked) -> (u16, bool) {
        let Some(pb) = PATHBUF.get_ptr_mut(0) else {
            return (0, false);
        };
        let start = walked.start & (PATH_CAP - 1);
        let len = (PATH_CAP - 1 - start) & (PATH_CAP - 1);
        if len == 0 {
            return (0, walked.truncated);
        }
        let src = (&raw const (*pb).buf).cast::<u8>().add(start);
        if bpf_probe_read_kernel(self.dst().cast(), len as u32, src as *const c_void) != 0 {
            return (0, false);
        }
        self.cursor += len;
        (len as u16, walked.truncated)
    }

    #[inline(always)]
    fn total(&self) -> usize {
        self.fixed + (self.cursor & DATA_MASK)
    }

    /// Sets `data_len` and copies the record into the ring buffer.
    #[inline(always)]
    pub(crate) unsafe fn submit(self) {
        let hdr = self.base.cast::<EventHeader>();
        (*hdr).data_len = (self.cursor & DATA_MASK) as u32;
        let len = self.total();
        let flags =
            if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= u64::from(config!(wakeup_bytes)) {
                u64::from(BPF_RB_FORCE_WAKEUP)
            } else {
                u64::from(BPF_RB_NO_WAKEUP)
            };
        if bpf_ringbuf_output(
            (&raw const EVENTS).cast_mut().cast(),
            self.base.cast(),
            len as u64,
            flags,
        ) != 0
        {
            count_drop(DROP_RINGBUF_FULL);
        }
    }
}

/// Fills the common header from the current task.
#[inline(always)]
pub(crate) unsafe fn fill_header(h: *mut EventHeader, kind: Kind, task: usize) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let leader = read_ptr(task + off!(task_group_leader));
    let parent = read_ptr(task + off!(task_real_parent));
    let parent_leader = read_ptr(parent + off!(task_group_leader));
    let cred = read_ptr(task + off!(task_real_cred));
    let nsproxy = read_ptr(task + off!(task_nsproxy));
    let mnt_ns = read_ptr(nsproxy + off!(nsproxy_mnt_ns));

    (*h).kind = kind as u32;
    (*h).flags = 0;
    (*h).ktime_ns = bpf_ktime_get_boot_ns();
    (*h).start_boottime_ns = read_u64(leader + off!(task_start_boottime));
    (*h).parent_start_boottime_ns = read_u64(parent_leader + off!(task_start_boottime));
    (*h).cgroup_id = bpf_get_current_cgroup_id();
    (*h).tgid = (pid_tgid >> 32) as u32;
    (*h).tid = pid_tgid as u32;
    (*h).ppid = read_u32(parent + off!(task_tgid));
    (*h).uid = uid_gid as u32;
    (*h).gid = (uid_gid >> 32) as u32;
    (*h).euid = read_u32(cred + off!(cred_euid));
    (*h).mnt_ns = if mnt_ns == 0 {
        0
    } else {
        read_u32(mnt_ns + off!(mnt_ns_inum))
    };
    (*h).data_len = 0;
    bpf_get_current_comm((&raw mut (*h).comm).cast(), COMM_LEN as u32);
}

/// The current task belongs to the agent itself, whose events are never captured.
#[inline(always)]
pub(crate) fn is_self() -> bool {
    // SAFETY: helper call without arguments.
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    tgid == config!(self_tgid)
}

// ---------------------------------------------------------------------------------------------
// Paths.

/// Path components are written right to left into [0, PATH_CAP - 1); one name (<= 255 bytes)
/// plus its slash may overhang the masked position.
const PATHBUF_SIZE: usize = PATH_CAP + 256;

#[repr(C)]
pub(crate) struct PathBuf {
    pos: usize,
    truncated: u64,
    dentry: usize,
    vfsmnt: usize,
    buf: [u8; PATHBUF_SIZE],
}

pub(crate) struct Walked {
    start: usize,
    truncated: bool,
}

const MAX_PATH_DEPTH: u32 = 48;

macro_rules! ld {
    ($p:expr) => {
        ptr::read_volatile(&raw const $p)
    };
}
macro_rules! st {
    ($p:expr, $v:expr) => {
        ptr::write_volatile(&raw mut $p, $v)
    };
}

/// Builds the absolute path of `path_ptr` (a `struct path *`) as seen from the task's root, by
/// walking dentries up to the root and crossing mount points, writing names right to left.
/// Mirrors the kernel's `prepend_path()` (fs/d_path.c) without its locking: a concurrent rename
/// can yield a stale name, never an unsafe read.
///
/// Every loop-carried value lives in the per-CPU map value, not in registers: the verifier then
/// sees the same state after the loop whichever iteration left it, prunes, and verifies the rest
/// of the program once instead of once per exit (which exceeds the 1M-instruction budget).
#[inline(always)]
pub(crate) unsafe fn walk_path(path_ptr: usize, task: usize) -> Walked {
    let dentry = read_ptr(path_ptr + off!(path_dentry));
    let vfsmnt = read_ptr(path_ptr + off!(path_mnt));
    walk_dentry(dentry, vfsmnt, task)
}

/// [`walk_path`] of the `struct path` { `vfsmnt`, `dentry` }, read by the caller (who may need
/// the same values for something else: a second read of a `struct path` another thread can
/// change, such as the cwd, may give another directory).
#[inline(always)]
pub(crate) unsafe fn walk_dentry(dentry: usize, vfsmnt: usize, task: usize) -> Walked {
    let mut out = Walked {
        start: PATH_CAP - 1,
        truncated: false,
    };
    let Some(pb) = PATHBUF.get_ptr_mut(0) else {
        return out;
    };
    let fs = read_ptr(task + off!(task_fs));
    let root_mnt = read_ptr(fs + off!(fs_root) + off!(path_mnt));
    let root_dentry = read_ptr(fs + off!(fs_root) + off!(path_dentry));
    if dentry == 0 || vfsmnt == 0 {
        return out;
    }
    st!((*pb).dentry, dentry);
    st!((*pb).vfsmnt, vfsmnt);
    st!((*pb).pos, PATH_CAP - 1);
    // Stays 1 if the depth limit ends the walk.
    st!((*pb).truncated, 1);
    for _ in 0..MAX_PATH_DEPTH {
        let dentry = ld!((*pb).dentry);
        let vfsmnt = ld!((*pb).vfsmnt);
        if dentry == root_dentry && vfsmnt == root_mnt {
            st!((*pb).truncated, 0);
            break;
        }
        let mnt = vfsmnt - off!(mount_mnt);
        if dentry == read_ptr(vfsmnt + off!(vfsmount_mnt_root)) {
            let parent = read_ptr(mnt + off!(mount_mnt_parent));
            if parent == mnt || parent == 0 {
                st!((*pb).truncated, 0);
                break;
            }
            st!((*pb).dentry, read_ptr(mnt + off!(mount_mnt_mountpoint)));
            st!((*pb).vfsmnt, parent + off!(mount_mnt));
            continue;
        }
        let d_parent = read_ptr(dentry + off!(dentry_d_parent));
        if d_parent == dentry || d_parent == 0 {
            st!((*pb).truncated, 0);
            break;
        }
        let name = read_ptr(dentry + off!(dentry_d_name) + off!(qstr_name));
        let len = (read_u32(dentry + off!(dentry_d_name) + off!(qstr_len)) & 0xff) as usize;
        let pos = ld!((*pb).pos) & (PATH_CAP - 1);
        if len + 1 > pos {
            break;
        }
        let at = (pos - len - 1) & (PATH_CAP - 1);
        let buf = (&raw mut (*pb).buf).cast::<u8>();
        *buf.add(at) = b'/';
        bpf_probe_read_kernel(buf.add(at + 1).cast(), len as u32, name as *const c_void);
        st!((*pb).pos, at);
        st!((*pb).dentry, d_parent);
    }
    let mut pos = ld!((*pb).pos) & (PATH_CAP - 1);
    if pos == PATH_CAP - 1 {
        // The root itself.
        pos -= 1;
        *(&raw mut (*pb).buf).cast::<u8>().add(pos) = b'/';
    }
    out.start = pos;
    out.truncated = ld!((*pb).truncated) != 0;
    out
}

/// `struct file *` for descriptor `fd` of `task`, or 0.
#[inline(always)]
pub(crate) unsafe fn fd_file(task: usize, fd: i64) -> usize {
    if fd < 0 {
        return 0;
    }
    let files = read_ptr(task + off!(task_files));
    let fdt = read_ptr(files + off!(files_fdt));
    let max = read_u32(fdt + off!(fdtable_max_fds)) as i64;
    if fd >= max {
        return 0;
    }
    let arr = read_ptr(fdt + off!(fdtable_fd));
    read_ptr(arr + (fd as usize) * 8)
}

/// Inode identity and overlay state of a `struct file *`.
pub(crate) struct InodeInfo {
    pub(crate) ino: u64,
    pub(crate) dev: u32,
    pub(crate) mtime_sec: i64,
    pub(crate) mtime_nsec: u32,
    pub(crate) flags: u32,
}

const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

#[inline(always)]
pub(crate) unsafe fn inode_info(file: usize) -> InodeInfo {
    let inode = read_ptr(file + off!(file_f_inode));
    let sb = read_ptr(inode + off!(inode_i_sb));
    let mut info = InodeInfo {
        ino: read_u64(inode + off!(inode_i_ino)),
        dev: read_u32(sb + off!(sb_s_dev)),
        mtime_sec: read_u64(inode + off!(inode_i_mtime_sec)) as i64,
        mtime_nsec: read_u32(inode + off!(inode_i_mtime_nsec)),
        flags: 0,
    };
    if config_has_ovl() && read_u64(sb + off!(sb_s_magic)) == OVERLAYFS_SUPER_MAGIC {
        info.flags |= ON_OVERLAY;
        // container_of(inode, struct ovl_inode, vfs_inode)->__upperdentry
        let ovl = inode - off!(ovl_inode_vfs_inode);
        if read_ptr(ovl + off!(ovl_inode_upperdentry)) != 0 {
            info.flags |= IN_UPPER_LAYER;
        }
    }
    info
}

#[inline(always)]
fn config_has_ovl() -> bool {
    off!(has_ovl) != 0
}
